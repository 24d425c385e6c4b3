#ifndef PYZFS_CZLIB_SHIM_H
#define PYZFS_CZLIB_SHIM_H
#include <zlib.h>

// inflateInit2 is a macro over inflateInit2_ (it passes the header's version and struct size),
// which Swift cannot call. Can go when Swift imports function-like macros.
static inline int pyzfs_zlib_inflate_init2(z_stream *strm, int window_bits) {
    return inflateInit2(strm, window_bits);
}
#endif
