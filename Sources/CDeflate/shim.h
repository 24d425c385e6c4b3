#ifndef PYZFS_CDEFLATE_SHIM_H
#define PYZFS_CDEFLATE_SHIM_H
#include <libdeflate.h>
#endif
