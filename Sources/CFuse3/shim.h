#ifndef PYZFS_CFUSE3_SHIM_H
#define PYZFS_CFUSE3_SHIM_H

// 3.12 selects the loop-config API; libfuse >= 3.12 is therefore needed at run time.
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/xattr.h>

// fuse_session_loop_mt is a macro over versioned symbols, which Swift cannot call.
// Can go when Swift imports function-like macros.
static inline int pyzfs_fuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

// fuse_session_new becomes a macro in libfuse 3.18; wrapping it keeps one call site for every version.
static inline struct fuse_session *pyzfs_fuse_session_new(struct fuse_args *args,
        const struct fuse_lowlevel_ops *op, size_t op_size, void *userdata) {
    return fuse_session_new(args, op, op_size, userdata);
}

// fuse_file_info's flags are C bitfields; these setters keep their layout out of Swift.
// Can go if a Swift version imports bitfield setters reliably on every supported libfuse.
static inline void pyzfs_fuse_fi_set_cache(struct fuse_file_info *fi, int keep_cache, int cache_readdir) {
    fi->keep_cache = keep_cache ? 1 : 0;
    fi->cache_readdir = cache_readdir ? 1 : 0;
    fi->noflush = 1;
    fi->direct_io = 0;
}
#endif
