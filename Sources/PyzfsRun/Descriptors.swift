import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// Turns a forked child into a background server: only `keeping` stays open (the log file
/// too), a new session without a terminal, `/` as working directory, stdio on /dev/null, and
/// logs to `logFD` (or syslog when it is -1).
func detachFromCaller(keeping: Set<Int32>, logFD: Int32) {
    closeDescriptors(except: keeping.union([logFD]))
    setsid()
    _ = chdir("/")
    let devnull = open("/dev/null", O_RDWR)
    if devnull >= 0 {
        dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2)
        if devnull > 2 { close(devnull) }
    }
    LogSink.shared.set(logFD >= 0 ? .file(logFD) : .syslog)
}

/// Closes every descriptor of this process except `keep` and 0, 1, 2.
/// A daemon must not hold what its caller gave it: a pipe of a test runner, ssh or CI job stays
/// open as long as any holder lives, and the caller would wait for it forever.
func closeDescriptors(except keep: Set<Int32>) {
    // The listing's own descriptor is among the names, closed already: close() says EBADF.
    let open = directoryNames("/proc/self/fd")?.compactMap { Int32($0) } ?? Array(0..<1024)
    for fd in open where !keep.contains(fd) && fd > 2 {
        close(fd)
    }
}

/// The names in directory `path`, without `.` and `..`; nil when it cannot be listed.
func directoryNames(_ path: String) -> [String]? {
    names(in: opendir(path))
}

/// The names in the directory open as `fd` (which stays open, its offset unchanged).
func directoryNames(in fd: Int32) -> [String]? {
    let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard copy >= 0 else { return nil }
    guard let dir = fdopendir(copy) else {
        close(copy)
        return nil
    }
    return names(in: dir)
}

private func names(in dir: OpaquePointer?) -> [String]? {
    guard let dir else { return nil }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
            let bytes = raw.bindMemory(to: UInt8.self)
            return String(decoding: bytes[0..<(bytes.firstIndex(of: 0) ?? bytes.count)], as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// A pipe whose two ends are closed on exec: the ready signal of a server to its parent.
func makePipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    return true
}

/// Tells the parent waiting in `waitForReady` that the mount is usable.
func signalReady(_ fd: Int32) {
    var byte: UInt8 = 1
    _ = Glibc.write(fd, &byte, 1)
    close(fd)
}

/// Whether the server signalled readiness (false: it closed the pipe by exiting first).
func waitForReady(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    var n: Int
    repeat { n = Glibc.read(fd, &byte, 1) } while n < 0 && errno == EINTR
    return n == 1
}
