#ifndef PYZFS_CZIP_SHIM_H
#define PYZFS_CZIP_SHIM_H
#include <zip.h>
#endif
