import CFuse3
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// A FUSE mount made with mount(2) directly, for `pyzfs run`: the process that mounts (inside
/// a private mount namespace) is not the one that serves (outside it), so the mount disappears
/// with the namespace, and the /dev/fuse descriptor is handed to the server.
public enum KernelMount {
    /// What mount(2) is given for a list of libfuse `-o` options: the same words `pyzfs mount`
    /// hands libfuse, translated as libfuse's mount.c does, so every mode makes the same mount.
    public struct Request: Equatable, Sendable {
        public var source: String
        public var type = "fuse"
        public var flags: UInt = 0
        /// Kernel options other than `fd=`, `rootmode=`, `user_id=` and `group_id=`.
        public var data: [String] = []
    }

    static let flagWords: [String: (set: Bool, flag: UInt)] = [
        "ro": (true, UInt(MS_RDONLY)), "rw": (false, UInt(MS_RDONLY)),
        "nosuid": (true, UInt(MS_NOSUID)), "suid": (false, UInt(MS_NOSUID)),
        "nodev": (true, UInt(MS_NODEV)), "dev": (false, UInt(MS_NODEV)),
        "noexec": (true, UInt(MS_NOEXEC)), "exec": (false, UInt(MS_NOEXEC)),
        "sync": (true, UInt(MS_SYNCHRONOUS)), "async": (false, UInt(MS_SYNCHRONOUS)),
        "noatime": (true, UInt(MS_NOATIME)), "atime": (false, UInt(MS_NOATIME)),
        "dirsync": (true, UInt(MS_DIRSYNC)),
    ]
    /// Options the kernel takes in mount(2)'s data, as they are.
    static let kernelWords: Set<String> = ["allow_other", "default_permissions"]
    static let kernelValued: Set<String> = ["max_read", "context", "fscontext", "defcontext", "rootcontext"]
    /// Options of the libfuse session, which the server applies (allow_root also needs the
    /// kernel's allow_other), or that mean nothing for a mount made by mount(2).
    static let sessionWords: Set<String> = ["allow_root", "auto_unmount"]

    /// Translates libfuse `-o` words (backslash-escaped commas, as libfuse reads them).
    /// - Throws: `.unsupportedOption` for an option that needs a block device (`blkdev`,
    ///   `blksize=`) or that libfuse would not accept either.
    public static func request(source: String, options: [String]) throws(MountFailure) -> Request {
        var r = Request(source: source)
        for option in options {
            let (key, value) = split(option)
            if value == nil, let f = flagWords[key] {
                if f.set { r.flags |= f.flag } else { r.flags &= ~f.flag }
            } else if value == nil && kernelWords.contains(key) {
                if !r.data.contains(key) { r.data.append(key) }
            } else if value == nil && key == "allow_root" {
                if !r.data.contains("allow_other") { r.data.append("allow_other") }
            } else if let value, key == "fsname" {
                r.source = unescape(value)
            } else if let value, key == "subtype" {
                r.type = "fuse." + unescape(value)
            } else if value != nil && kernelValued.contains(key) {
                r.data.append(option)
            } else if sessionWords.contains(key) {
                continue
            } else {
                throw .unsupportedOption(option)
            }
        }
        return r
    }

    private static func split(_ option: String) -> (String, String?) {
        guard let eq = option.firstIndex(of: "=") else { return (option, nil) }
        return (String(option[..<eq]), String(option[option.index(after: eq)...]))
    }

    private static func unescape(_ s: String) -> String {
        var out = ""
        var escaped = false
        for c in s {
            if !escaped && c == "\\" { escaped = true; continue }
            out.append(c)
            escaped = false
        }
        return out
    }

    /// Opens /dev/fuse and mounts it on `mountpoint` as `request` says, owned by `uid`/`gid`
    /// (the kernel's `user_id`/`group_id`: who mounted, as libfuse sets them).
    /// - Returns: the /dev/fuse descriptor (close-on-exec) that serves the mount.
    public static func mount(_ request: Request, on mountpoint: String, uid: UInt32, gid: UInt32) throws(MountFailure) -> Int32 {
        if access("/dev/fuse", F_OK) != 0 { throw .noDevice }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd < 0 { throw .deviceDenied(errnoText(errno)) }
        let options = (["fd=\(fd)", "rootmode=40000", "user_id=\(uid)", "group_id=\(gid)"] + request.data).joined(separator: ",")
        if Glibc.mount(request.source, mountpoint, request.type, request.flags, options) != 0 {
            let e = errno
            close(fd)
            if e == EPERM || e == EACCES { throw .mountDenied(errnoText(e)) }
            throw .failed("mount(2) on \(mountpoint): \(errnoText(e))")
        }
        return fd
    }
}
