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

    /// The key of a warm server for the archive open as `fd`, `options`, the mount directory
    /// name and the interpreter; nil when the archive, this binary or the interpreter cannot
    /// be stat'ed.
    static func key(archive fd: Int32, optionGroups: [String], mountDirectoryName: String?, interpreter: String) -> String? {
        var a = stat(), exe = stat(), python = stat()
        guard fstat(fd, &a) == 0, stat("/proc/self/exe", &exe) == 0, stat(interpreter, &python) == 0 else { return nil }
        func identity(_ s: stat, times: Bool) -> String {
            "\(s.st_dev) \(s.st_ino) \(s.st_size) \(s.st_mtim.tv_sec).\(s.st_mtim.tv_nsec)"
                + (times ? " \(s.st_ctim.tv_sec).\(s.st_ctim.tv_nsec)" : "")
        }
        let lines = ["uid \(geteuid())", "archive \(identity(a, times: true))", "pyzfs \(identity(exe, times: false))",
                     "interpreter \(interpreter) \(identity(python, times: false))",
                     "name \(mountDirectoryName ?? "-")"] + optionGroups.map { "option \($0)" }
        var sha = SHA256()
        sha.update(Array(lines.joined(separator: "\n").utf8))
        return String(hex(sha.finalize()).prefix(32))
    }

    /// Whether `path` is served by a live FUSE server (not "Transport endpoint is not connected").
    static func isLiveMount(_ path: String) -> Bool {
        pyzfs_is_live_fuse(path) == 1
    }

    /// What asking a warm server gave.
    enum Attachment {
        /// Attached: the mount point.
        case attached(String)
        /// No server listens (connection refused, no socket), or it answered with a mount
        /// whose server is gone: what it left may be cleared.
        case none
        /// Something else went wrong (no descriptors, a server too slow to answer): nothing
        /// is touched, and the run mounts afresh.
        case failed
    }

    /// Attaches this process to the warm server listening on `socketPath`: sends it this
    /// process's pidfd (the run stays attached until it exits, across its exec) and stderr
    /// (for the server's warnings while it runs).
    static func attach(_ socketPath: String) -> Attachment {
        guard let s = connectedSocket(socketPath) else { return errno == ECONNREFUSED || errno == ENOENT ? .none : .failed }
        defer { close(s) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)  // a stopped server is not waited for
        _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let pidfd = pyzfs_pidfd_open(getpid())
        guard pidfd >= 0 else { return .failed }
        defer { close(pidfd) }
        guard pyzfs_send_descriptor(s, pidfd) == 0, pyzfs_send_descriptor(s, 2) == 0 else { return .failed }
        errno = 0
        let reply = readAll(s)
        switch reply.first {
        case Reply.attached:
            let mountpoint = String(decoding: reply.dropFirst(), as: UTF8.self)
            // A server whose mount was detached (pyzfs unmount) answers until its last copy goes.
            return isLiveMount(mountpoint) ? .attached(mountpoint) : .none
        case Reply.refused:
            return .failed  // alive, and out of descriptors: its names stay
        default:
            // End of file without an answer: the server ended (killed, or its session over) as
            // this run connected.
            return reply.isEmpty && errno != EAGAIN && errno != EWOULDBLOCK ? .none : .failed
        }
    }

    /// The first byte of a server's answer to an attaching run.
    enum Reply {
        /// Attached; the mount point follows.
        static let attached = UInt8(ascii: "A")
        /// Not attached (the server is out of descriptors): the run mounts afresh and leaves the
        /// server alone.
        static let refused = UInt8(ascii: "R")
    }

    /// Clears what a dead server of `key` left in `dir`: its socket, its mounts ("Transport
    /// endpoint is not connected") and its empty directories. Called holding the key's lock.
    static func clearStale(dir: String, key: String) {
        unlink(dir + "/" + key + ".sock")
        let prefix = dir + "/" + key + "-"
        for m in MountTable.current() where m.isPyzfs && m.mountPoint.hasPrefix(prefix) && isDeadMount(m.mountPoint) {
            Fusermount.detach(m.mountPoint)
            log.debug("cleared the dead warm mount on \(m.mountPoint)")
        }
        for name in directoryNames(dir) ?? [] where name.hasPrefix(key + "-") && !name.hasSuffix(aliveSuffix) {
            // A server holds `KEY-XXXXXX.alive` locked while it lives: the private namespaces of
            // its apps hold copies of its mount, which an rmdir here would take from them.
            let outer = dir + "/" + name
            let alive = open(outer + aliveSuffix, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            if alive >= 0 {
                defer { close(alive) }
                guard flock(alive, LOCK_EX | LOCK_NB) == 0 else { continue }
            }
            for inner in directoryNames(outer) ?? [] { rmdir(outer + "/" + inner) }
            if rmdir(outer) == 0 || errno == ENOENT { unlink(outer + aliveSuffix) }
        }
    }

    /// The name beside a server's mount directory that the server keeps locked.
    static let aliveSuffix = ".alive"

    /// `pyzfs unmount --warm`: detaches every warm mount of this user (each server exits once
    /// no app still running uses its mount), and clears what servers that were killed left.
    public static func endAll() throws(Failure) {
        var failure: Failure? = nil
        for point in mounts() {
            do { try unmount(point, lazy: true, quiet: true) } catch { failure = failure ?? error }
        }
        guard let dir = directory(create: false) else {
            if let failure { throw failure }
            return
        }
        // Keys with a socket, a lock or a mount directory (KEY.sock, KEY.lock, KEY-XXXXXX).
        let keys = Set((directoryNames(dir) ?? []).compactMap { name -> String? in
            let key = name.prefix(32)
            return key.count == 32 && key.allSatisfy(\.isHexDigit) ? String(key) : nil
        })
        for key in keys {
            let lockPath = dir + "/" + key + ".lock"
            guard let lock = WarmLock(lockPath, waitingAtMost: WarmLock.longestWait) else {
                failure = failure ?? Failure(Exit.busy, "cannot clear the warm server \(key): a pyzfs run has held \(lockPath) for \(Int(WarmLock.longestWait)) s (fuser -v \(lockPath) names it); retry once it is done, or end it")
                continue
            }
            if attachable(dir + "/" + key + ".sock") { continue }  // started since: not ours to end
            clearStale(dir: dir, key: key)
            unlink(lockPath)
            _ = consume lock
        }
        if let failure { throw failure }
    }

    /// Whether a server listens on `socketPath` (a connection is refused where none does).
    static func attachable(_ socketPath: String) -> Bool {
        guard let s = connectedSocket(socketPath) else { return false }
        close(s)
        return true
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

    /// How long a run waits for another run's server start: far longer than a mount of the
    /// largest archive takes, so that only a stopped or stuck holder runs it out.
    static let longestWait = 10.0

    /// Takes the lock, waiting at most `seconds` (0: tries once); nil when it cannot be had,
    /// with errno ETIMEDOUT when the wait ran out.
    init?(_ path: String, waitingAtMost seconds: Double) {
        let deadline = monotonicSeconds() + seconds
        while true {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { return nil }
            guard pyzfs_flock_within(fd, Int32(max(0, (deadline - monotonicSeconds()) * 1000))) == 0 else {
                // A wait that ran out while the lock file was being replaced is a wait run out too.
                let cause = errno == EWOULDBLOCK && seconds > 0 ? ETIMEDOUT : errno
                close(fd)
                errno = cause
                return nil
            }
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
    /// A signalfd of SIGTERM, SIGINT and SIGHUP (-1: none): once one arrives nothing is kept.
    let signals: Int32
    private let socketInode: ino_t
    /// A descriptor kept spare, closed to take a connection when the process has no other.
    private let reserve = Mutex<Int32>(open("/dev/null", O_RDONLY | O_CLOEXEC))

    init(listener: Int32, socketPath: String, lockPath: String, mountpoint: String, keep: Double, signals: Int32) {
        self.signals = signals
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
        // Each attached run holds two descriptors here (its pidfd and stderr): the soft limit
        // (1,024 by default) is raised to the hard one, as servers do; poll(2) has no FD_SETSIZE.
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let thread = WorkerPool(name: "warm", count: 1)
        thread.submit { self.serve(first: first) }
    }

    private func serve(first: (pidfd: Int32, stderr: Int32)) {
        var runs = [first]
        LogSink.shared.copyWarnings(to: first.stderr)
        var idleSince = monotonicSeconds()
        var keep = self.keep
        while true {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
                + runs.map { pollfd(fd: $0.pidfd, events: Int16(POLLIN), revents: 0) }
            let timeout: Int32 = runs.isEmpty ? Int32(max(0, min(86_400_000, (idleSince + keep - monotonicSeconds()) * 1000))) : -1
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 && errno != EINTR { log.error("cannot poll the warm server's socket: \(errnoText(errno))"); break }
            if fds[1].revents != 0 {
                var info = [UInt8](repeating: 0, count: 128)  // one struct signalfd_siginfo
                _ = Glibc.read(signals, &info, info.count)
                log.info("warm server of \(mountpoint) ends once no run is attached (signal \(info[0]))")
                keep = 0
            }
            var ended: [(pidfd: Int32, stderr: Int32)] = []
            for i in (2..<fds.count).reversed() where fds[i].revents != 0 { ended.append(runs.remove(at: i - 2)) }
            if fds[0].revents != 0, let run = accept() { runs.append(run) }
            if !ended.isEmpty || fds[0].revents != 0 || fds[1].revents != 0 {
                // Warnings go to the latest run still alive, as they would without a warm server;
                // an ended run's stderr is closed only once no warning can be written to it.
                LogSink.shared.copyWarnings(to: runs.last?.stderr ?? -1)
                for run in ended { close(run.pidfd); close(run.stderr) }
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

    /// Takes one attaching run: same user only; its pidfd and stderr, answered with the mount
    /// point. Out of descriptors, the run is told so (`Reply.refused`) and mounts afresh.
    private func accept() -> (pidfd: Int32, stderr: Int32)? {
        var c = Glibc.accept(listener, nil, nil)
        if c < 0 && (errno == EMFILE || errno == ENFILE) {
            // The connection would stay queued and poll report it at once, forever: the spare
            // descriptor makes room to take it and say no.
            reserve.withLock { spare in
                close(spare)
                c = Glibc.accept(listener, nil, nil)
                if c >= 0 { writeAll(c, [WarmServers.Reply.refused]); close(c); c = -1 }
                spare = open("/dev/null", O_RDONLY | O_CLOEXEC)
            }
            log.warning("refused a run on the warm server of \(mountpoint): out of file descriptors (ulimit -n)")
        }
        guard c >= 0 else { return nil }
        defer { close(c) }
        guard pyzfs_peer_uid(c) == Int(getuid()) else {
            log.warning("refused a run of uid \(pyzfs_peer_uid(c)) on the warm server of \(mountpoint)")
            writeAll(c, [WarmServers.Reply.refused])
            return nil
        }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)  // a stuck client is not waited for
        _ = setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let pidfd = pyzfs_receive_descriptor(c)
        let stderr = pidfd >= 0 ? pyzfs_receive_descriptor(c) : -1
        guard pidfd >= 0, stderr >= 0, writeAll(c, [WarmServers.Reply.attached] + Array(mountpoint.utf8)) else {
            if pidfd >= 0 { close(pidfd) }
            if stderr >= 0 { close(stderr) }
            writeAll(c, [WarmServers.Reply.refused])
            return nil
        }
        return (pidfd, stderr)
    }

    /// Under the lock, with no run connecting: removes the socket and the lock, so later runs
    /// start a server of their own. false: a run is attaching.
    private func stopTakingRuns() -> Bool {
        guard let lock = WarmLock(lockPath, waitingAtMost: 0) else { return false }
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
    /// Where a stuck run holds it, they stay, for the next run to clear (its connection is
    /// refused then).
    func finish() {
        if let lock = WarmLock(lockPath, waitingAtMost: WarmLock.longestWait) { removeNames(lock) }
    }
}

/// A Unix stream socket (close-on-exec) connected to `path`; nil with errno when it cannot be
/// made or connected (ENAMETOOLONG: a path too long for an address).
func connectedSocket(_ path: String) -> Int32? {
    guard var address = unixAddress(path) else { errno = ENAMETOOLONG; return nil }
    let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard s >= 0 else { return nil }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
    }
    guard connected else {
        let cause = errno
        close(s)
        errno = cause
        return nil
    }
    return s
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
