import CFuse3
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// Where a handler's answer goes: libfuse's `fuse_reply_*` for a real request, a recorder in tests.
/// Every handler calls exactly one of these once.
public protocol Responder: Sendable {
    /// The user id of the process that made the request (`fuse_req_ctx`).
    var uid: UInt32 { get }
    func entry(_ e: fuse_entry_param)
    func attr(_ st: stat, timeout: Double)
    func error(_ errno: Int32)
    func none()
    func open(_ fi: UnsafeMutablePointer<fuse_file_info>?, keepCache: Bool, cacheDirectory: Bool)
    func data(_ bytes: UnsafeRawBufferPointer)
    func readlink(_ target: UnsafePointer<CChar>)
    func statfs(_ st: statvfs)
    func xattrSize(_ size: Int)
    func created(_ e: fuse_entry_param, _ fi: UnsafeMutablePointer<fuse_file_info>?)
    func written(_ count: Int)
}

/// The responder of a request from the kernel. A request may be answered from any thread, once.
struct KernelResponder: Responder, @unchecked Sendable {
    let req: fuse_req_t

    var uid: UInt32 { fuse_req_ctx(req).pointee.uid }
    func entry(_ e: fuse_entry_param) { var e = e; fuse_reply_entry(req, &e) }
    func attr(_ st: stat, timeout: Double) { var st = st; fuse_reply_attr(req, &st, timeout) }
    func error(_ errno: Int32) { fuse_reply_err(req, errno) }
    func none() { fuse_reply_none(req) }
    func open(_ fi: UnsafeMutablePointer<fuse_file_info>?, keepCache: Bool, cacheDirectory: Bool) {
        if let fi { pyzfs_fuse_fi_set_cache(fi, keepCache ? 1 : 0, cacheDirectory ? 1 : 0) }
        fuse_reply_open(req, fi)
    }
    func data(_ bytes: UnsafeRawBufferPointer) {
        fuse_reply_buf(req, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
    }
    func readlink(_ target: UnsafePointer<CChar>) { fuse_reply_readlink(req, target) }
    func statfs(_ st: statvfs) { var st = st; fuse_reply_statfs(req, &st) }
    func xattrSize(_ size: Int) { fuse_reply_xattr(req, size) }
    func created(_ e: fuse_entry_param, _ fi: UnsafeMutablePointer<fuse_file_info>?) {
        var e = e
        if let fi { pyzfs_fuse_fi_set_cache(fi, 0, 0) }
        fuse_reply_create(req, &e, fi)
    }
    func written(_ count: Int) { fuse_reply_write(req, count) }
}
