#ifndef PYZFS_CCRYPTO_SHIM_H
#define PYZFS_CCRYPTO_SHIM_H
// OpenSSL's libcrypto, for SHA-256 only, through EVP (SHA256_Init and friends are deprecated
// in OpenSSL 3). libzip4 already links libcrypto, so it costs no new package at run time.
#include <openssl/evp.h>
#endif
