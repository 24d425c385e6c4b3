import CLinux
import PyzfsApps
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// What a server run as root gives up once its mount is made (docs/decisions/0005-privileges.md).
public enum Privileges {
    /// Capabilities a serving process may still need, by number (linux/capability.h).
    public enum Kept: UInt64 {
        /// Reopening the archive through /proc/self/fd/N (libzip's handles), which checks the
        /// file's modes again, and reaching the mount point to unmount it.
        case dacReadSearch = 2
        /// umount2(2) of the mount at exit (SIGTERM, pyzfs run's lifetime pipe).
        case sysAdmin = 21
    }

    /// Sets no_new_privs, empties the bounding, ambient and inheritable capability sets, and keeps
    /// only `keep` in the permitted and effective sets. Call it in the process that serves, after
    /// the mount is made and before the server starts any thread (capabilities are per thread;
    /// threads inherit them). Does nothing unless the server runs as root: a user's server has no
    /// capability to drop, and no_new_privs would stop libfuse's unmount through the setuid
    /// fusermount3.
    static func dropForServing(keep: Set<Kept>) {
        guard geteuid() == 0 else { return }
        let mask = keep.reduce(UInt64(0)) { $0 | (1 << $1.rawValue) }
        if pyzfs_drop_privileges(mask) != 0 {
            log.warning("cannot drop privileges: \(errnoText(errno)); serving with them")
        }
    }
}
