import CLinux
import PyzfsCore
import PyzfsDigest
import PyzfsFUSE
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Warm servers: a `pyzfs run` mount kept after its app ends, for later runs of the same
/// archive by the same user with the same options (docs/decisions/0009-warm-servers.md).
///
/// The mount is made in the caller's mount namespace under a directory only its user can
/// enter: `/run/pyzfs` as root (bind-mounted on itself and made private, so that no mount
/// under it propagates where / is shared), `$XDG_RUNTIME_DIR/pyzfs` otherwise, mode 0700.
/// Beside each mount directory `KEY-XXXXXX` are its server's socket `KEY.sock` and lock
/// `KEY.lock`; KEY hashes who runs, the archive's identity (device, inode, size, mtime, ctime),
/// the `-o` options (a `sha256=` pin among them), the mount directory's name and this pyzfs
/// binary, so a replaced archive, other options or a new pyzfs never reach an old server.
public enum WarmServers {
    /// How long an idle server stays, in seconds, unless `--keep` or `PYZFS_KEEP` says otherwise
    /// (docs/deployment.md, "Warm servers", has the measurement behind it).
    public static let defaultKeep = 300.0

    /// A keep time: seconds, or a number with the unit s, m or h ("0", "90", "90s", "10m", "1.5h").
    public static func parseKeep(_ text: String) -> Double? {
        var number = Substring(text)
        var unit = 1.0
        if let last = number.last, let u = ["s": 1.0, "m": 60.0, "h": 3600.0][String(last)] {
            unit = u
            number = number.dropLast()
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(number), value.isFinite, value * unit <= 86_400 * 365 else { return nil }
        return value * unit
    }

    /// This user's warm-server directory, made if missing; nil where none may be kept (a user
    /// without `XDG_RUNTIME_DIR`, or a directory that is not this user's alone).
    public static func directory(create: Bool = true) -> String? {
        let base: String
        if geteuid() == 0 {
            base = "/run"
        } else {
            guard let runtime = absoluteEnvironment("XDG_RUNTIME_DIR") else { return nil }
            base = runtime
        }
        let dir = base + "/pyzfs"
        if create && mkdir(dir, 0o700) != 0 && errno != EEXIST { return nil }
        var st = stat()
        guard lstat(dir, &st) == 0 else { return nil }
        guard st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid(), st.st_mode & 0o077 == 0 else {
            log.warning("keeping no warm server: \(dir) is not a directory of this user's alone (mode 0700); remove it")
            return nil
        }
        // Where / is shared (systemd), a mount under it would appear in every peer namespace:
        // the directory is a mount of its own, private (EINVAL: not a mount point yet).
        if create && geteuid() == 0 && Glibc.mount(nil, dir, nil, UInt(MS_PRIVATE), nil) != 0 {
            guard errno == EINVAL, Glibc.mount(dir, dir, nil, UInt(MS_BIND), nil) == 0 else { return nil }
            guard Glibc.mount(nil, dir, nil, UInt(MS_PRIVATE), nil) == 0 else {
                _ = umount2(dir, Int32(MNT_DETACH))
                return nil
            }
        }
        return dir
    }

    /// The key of a warm server for the archive open as `fd`, `options` and the mount
    /// directory name; nil when the archive or this binary cannot be stat'ed.
    static func key(archive fd: Int32, optionGroups: [String], mountDirectoryName: String?) -> String? {
        var a = stat(), exe = stat()
        guard fstat(fd, &a) == 0, stat("/proc/self/exe", &exe) == 0 else { return nil }
        func identity(_ s: stat, times: Bool) -> String {
            "\(s.st_dev) \(s.st_ino) \(s.st_size) \(s.st_mtim.tv_sec).\(s.st_mtim.tv_nsec)"
                + (times ? " \(s.st_ctim.tv_sec).\(s.st_ctim.tv_nsec)" : "")
        }
        let lines = ["uid \(geteuid())", "archive \(identity(a, times: true))", "pyzfs \(identity(exe, times: false))",
                     "name \(mountDirectoryName ?? "-")"] + optionGroups.map { "option \($0)" }
        var sha = SHA256()
        sha.update(Array(lines.joined(separator: "\n").utf8))
        return String(hex(sha.finalize()).prefix(32))
    }

    /// Whether `path` is served by a live FUSE server (not "Transport endpoint is not connected").
    static func isLiveMount(_ path: String) -> Bool {
        pyzfs_is_live_fuse(path) == 1
    }

    /// Attaches this process to the warm server listening on `socketPath`: sends it this
    /// process's pidfd (the run stays attached until it exits, across its exec) and stderr
    /// (for the server's warnings while it runs).
    /// - Returns: the mount point, or nil when no live server answered.
    static func attach(_ socketPath: String) -> String? {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return nil }
        defer { close(s) }
        guard connect(s, unixAddress(socketPath)) else { return nil }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)  // a stopped server is not waited for
        _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let pidfd = pyzfs_pidfd_open(getpid())
        guard pidfd >= 0 else { return nil }
        defer { close(pidfd) }
        guard pyzfs_send_descriptor(s, pidfd) == 0, pyzfs_send_descriptor(s, 2) == 0 else { return nil }
        let mountpoint = String(decoding: readAll(s), as: UTF8.self)
        guard !mountpoint.isEmpty, isLiveMount(mountpoint) else { return nil }
        return mountpoint
    }

    /// The mount points of this user's warm servers.
    public static func mounts() -> [String] {
        guard let dir = directory(create: false) else { return [] }
        return MountTable.current().filter { $0.isPyzfs && $0.mountPoint.hasPrefix(dir + "/") }.map(\.mountPoint)
    }
}

/// A `KEY.lock` taken with flock(2): held by a run while it attaches or starts a server, and by
/// a server while it stops taking runs. The file is removed by the server that ends, so a lock
/// is good only if its path still names the file locked.
struct WarmLock: ~Copyable {
    let fd: Int32

    /// Waits for the lock (`wait`), or tries it once; nil when it cannot be had.
    init?(_ path: String, wait: Bool) {
        while true {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { return nil }
            var r: Int32
            repeat { r = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) } while r != 0 && errno == EINTR
            guard r == 0 else { close(fd); return nil }
            var held = stat(), named = stat()
            if fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_ino == named.st_ino && held.st_dev == named.st_dev {
                self.fd = fd
                return
            }
            close(fd)  // removed by an ending server between open and flock: take the new one
        }
    }

    deinit { close(fd) }
}

/// The serving side of a warm server: takes attaching runs on its socket, watches their
/// pidfds, and once none has been alive for `keep` seconds stops taking runs and detaches the
/// mount; the session ends once the kernel drops the last copy of the mount (the private
/// namespace of an app still running holds one).
final class WarmKeeper: Sendable {
    let listener: Int32
    let socketPath: String
    let lockPath: String
    let mountpoint: String
    let keep: Double
    private let socketInode: ino_t

    init(listener: Int32, socketPath: String, lockPath: String, mountpoint: String, keep: Double) {
        self.listener = listener
        self.socketPath = socketPath
        self.lockPath = lockPath
        self.mountpoint = mountpoint
        self.keep = keep
        var st = stat()
        socketInode = stat(socketPath, &st) == 0 ? st.st_ino : 0
    }

    /// Serves on its own thread from now on; `first` is the run that started the server.
    func start(first: (pidfd: Int32, stderr: Int32)) {
        let thread = WorkerPool(name: "warm", count: 1)
        thread.submit { self.serve(first: first) }
    }

    private func serve(first: (pidfd: Int32, stderr: Int32)) {
        var runs = [first]
        LogSink.shared.copyWarnings(to: first.stderr)
        var idleSince = monotonicSeconds()
        while true {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
                + runs.map { pollfd(fd: $0.pidfd, events: Int16(POLLIN), revents: 0) }
            let timeout: Int32 = runs.isEmpty ? Int32(max(0, min(86_400_000, (idleSince + keep - monotonicSeconds()) * 1000))) : -1
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 && errno != EINTR { log.error("cannot poll the warm server's socket: \(errnoText(errno))"); break }
            var ended: [Int] = []
            for i in 1..<fds.count where fds[i].revents != 0 { ended.append(i - 1) }
            for i in ended.reversed() {
                close(runs[i].pidfd)
                close(runs[i].stderr)
                runs.remove(at: i)
            }
            if fds[0].revents != 0, let run = accept() { runs.append(run) }
            if !ended.isEmpty || fds[0].revents != 0 {
                // Warnings go to the latest run still alive, as they would without a warm server.
                LogSink.shared.copyWarnings(to: runs.last?.stderr ?? -1)
                if runs.isEmpty { idleSince = monotonicSeconds() }
                continue
            }
            if runs.isEmpty && monotonicSeconds() >= idleSince + keep {
                if stopTakingRuns() { break }
                // A run holds the lock: it is attaching, and poll sees its connection.
                idleSince = monotonicSeconds() - keep + 0.05
            }
        }
        log.info("warm server idle for \(keep) s: unmounting \(mountpoint)")
        Fusermount.detach(mountpoint)
    }

    /// Takes one attaching run: same user only; its pidfd and stderr, answered with the mount point.
    private func accept() -> (pidfd: Int32, stderr: Int32)? {
        let c = Glibc.accept(listener, nil, nil)
        guard c >= 0 else { return nil }
        defer { close(c) }
        guard pyzfs_peer_uid(c) == Int(getuid()) else {
            log.warning("refused a run of uid \(pyzfs_peer_uid(c)) on the warm server of \(mountpoint)")
            return nil
        }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)  // a stuck client is not waited for
        _ = setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let pidfd = pyzfs_receive_descriptor(c)
        guard pidfd >= 0 else { return nil }
        let stderr = pyzfs_receive_descriptor(c)
        guard stderr >= 0, writeAll(c, mountpoint) else {
            close(pidfd)
            if stderr >= 0 { close(stderr) }
            return nil
        }
        return (pidfd, stderr)
    }

    /// Under the lock, with no run connecting: removes the socket and the lock, so later runs
    /// start a server of their own. false: a run is attaching.
    private func stopTakingRuns() -> Bool {
        guard let lock = WarmLock(lockPath, wait: false) else { return false }
        var pending = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        if poll(&pending, 1, 0) > 0 { return false }
        removeNames(lock)
        return true
    }

    /// Removes the socket if it is still this server's, and the lock file, holding `lock`.
    func removeNames(_ lock: borrowing WarmLock) {
        var st = stat()
        if stat(socketPath, &st) == 0 && st.st_ino == socketInode { unlink(socketPath) }
        unlink(lockPath)
    }

    /// At the session's end (idle, or unmounted from outside): the names go, under the lock.
    func finish() {
        if let lock = WarmLock(lockPath, wait: true) { removeNames(lock) }
    }
}

/// connect(2) of `s` to `address`; false when there is none (a path too long) or it fails.
func connect(_ s: Int32, _ address: sockaddr_un?) -> Bool {
    guard var address else { return false }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
    }
}

/// The Unix socket address of `path`; nil when it is too long for one.
func unixAddress(_ path: String) -> sockaddr_un? {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return address
}

/// A listening Unix socket bound to `path` (close-on-exec); -1 on failure.
func listenOn(_ path: String) -> Int32 {
    guard var address = unixAddress(path) else { return -1 }
    let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard s >= 0 else { return -1 }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
    }
    guard bound, listen(s, 64) == 0 else { close(s); return -1 }
    return s
}

/// CLOCK_MONOTONIC in seconds.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
