import CFuse3
#if canImport(Glibc)
import Glibc
#endif

/// A FUSE mount made with mount(2) directly, for `pyzfs run`: the process that mounts (inside
/// a private mount namespace) is not the one that serves (outside it), so the mount disappears
/// with the namespace, and the /dev/fuse descriptor is handed to the server.
public enum KernelMount {
    /// Why a mount cannot be made here, classified for the message the user gets.
    public enum Refusal: Error, Equatable, Sendable {
        /// /dev/fuse does not exist.
        case noDevice
        /// /dev/fuse exists but cannot be opened (permissions, a device cgroup).
        case deviceDenied(Int32)
        /// mount(2) refused (no CAP_SYS_ADMIN, seccomp, AppArmor, a user namespace without FUSE).
        case mountDenied(Int32)
        /// Another error.
        case failed(String)
    }

    /// Opens /dev/fuse and mounts it on `mountpoint` as `fuse.pyzfs`.
    /// - Returns: the /dev/fuse descriptor (close-on-exec) that serves the mount.
    public static func mount(source: String, on mountpoint: String, readOnly: Bool, uid: UInt32, gid: UInt32,
                             allowOther: Bool) throws(Refusal) -> Int32 {
        if access("/dev/fuse", F_OK) != 0 { throw .noDevice }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd < 0 { throw .deviceDenied(errno) }
        var options = "fd=\(fd),rootmode=40000,user_id=\(uid),group_id=\(gid),default_permissions"
        if allowOther { options += ",allow_other" }
        var flags = UInt(MS_NOSUID) | UInt(MS_NODEV)
        if readOnly { flags |= UInt(MS_RDONLY) }
        if Glibc.mount(source, mountpoint, "fuse.pyzfs", flags, options) != 0 {
            let e = errno
            close(fd)
            if e == EPERM || e == EACCES { throw .mountDenied(e) }
            throw .failed("mount(2) on \(mountpoint): \(String(cString: strerror(e)))")
        }
        return fd
    }
}
