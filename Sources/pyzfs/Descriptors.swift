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

/// Closes every descriptor of this process except `keep` (and 0, 1, 2 when `keepStandard`).
/// A daemon must not hold what its caller gave it: a pipe of a test runner, ssh or CI job stays
/// open as long as any holder lives, and the caller would wait for it forever.
func closeDescriptors(except keep: Set<Int32>, keepStandard: Bool = true) {
    var open: [Int32] = []
    if let dir = opendir("/proc/self/fd") {
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let bytes = raw.bindMemory(to: UInt8.self)
                let end = bytes.firstIndex(of: 0) ?? bytes.count
                return String(decoding: bytes[0..<end], as: UTF8.self)
            }
            if let fd = Int32(name), fd != own { open.append(fd) }
        }
        closedir(dir)
    } else {
        open = Array(0..<1024)
    }
    for fd in open where !keep.contains(fd) && !(keepStandard && fd <= 2) {
        close(fd)
    }
}
