#if canImport(Glibc)
import Glibc
#endif

/// A child's wait status as waitpid(2) gives it, decoded in this one place.
public struct WaitStatus: Equatable, Sendable, CustomStringConvertible {
    public let raw: Int32
    public init(raw: Int32) { self.raw = raw }

    /// The exit code; nil when a signal ended the child.
    public var exitCode: Int32? { raw & 0x7f == 0 ? (raw >> 8) & 0xff : nil }
    /// The signal that ended the child; nil when it exited.
    public var signal: Int32? { raw & 0x7f == 0 ? nil : raw & 0x7f }
    /// As a shell shows it: the exit code, or 128 + the signal.
    public var shellCode: Int32 { exitCode ?? 128 + (raw & 0x7f) }

    public var description: String { exitCode.map { "exited with \($0)" } ?? "was killed by signal \(raw & 0x7f)" }

    /// Waits for child `pid` (through EINTR); nil when it is not a child of this process.
    public static func wait(for pid: pid_t) -> WaitStatus? {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return nil }
        }
        return WaitStatus(raw: status)
    }
}

/// A program started with posix_spawn: stdin inherited, stdout captured or inherited, stderr
/// inherited or sent to /dev/null. The one way pyzfs starts helpers (fusermount3, a Python
/// interpreter asked about itself).
public struct Subprocess {
    public let pid: pid_t
    /// The read end of its stdout, when captured.
    let output: Int32

    /// Starts `argv` (`argv[0]` a path, or a name looked up on PATH as execvp does).
    /// - Returns: nil when it cannot be started (errno says why).
    public static func start(_ argv: [String], captureOutput: Bool = false, quiet: Bool = false) -> Subprocess? {
        var fds: [Int32] = [-1, -1]
        if captureOutput {
            guard pipe(&fds) == 0 else { return nil }
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if captureOutput { posix_spawn_file_actions_adddup2(&actions, fds[1], 1) }
        if quiet { posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0) }
        // Default signal handling and no blocked signal: what the caller ignores or blocks (a
        // server ignores SIGTERM) is not the helper's business.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, &cArgs, environ)
        if captureOutput { close(fds[1]) }
        guard rc == 0 else {
            if captureOutput { close(fds[0]) }
            errno = rc
            return nil
        }
        return Subprocess(pid: pid, output: captureOutput ? fds[0] : -1)
    }

    /// Reads its stdout to the end (when captured) and waits for it.
    public func finish() -> (status: WaitStatus?, output: [UInt8]) {
        var out: [UInt8] = []
        if output >= 0 {
            out = readAll(output)
            close(output)
        }
        return (WaitStatus.wait(for: pid), out)
    }

    /// Runs `argv` to its end; nil when it could not be started.
    public static func run(_ argv: [String], captureOutput: Bool = false, quiet: Bool = false) -> (status: WaitStatus?, output: [UInt8])? {
        start(argv, captureOutput: captureOutput, quiet: quiet)?.finish()
    }
}

/// Replaces this process with `argv`; on failure exits 126 or 127 as env(1) does.
public func execute(_ argv: [String]) -> Never {
    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    execv(argv[0], &cArgs)
    let e = errno
    writeAll(2, "pyzfs: cannot execute \(argv[0]): \(errnoText(e))\n")
    _exit(e == ENOENT ? Exit.notFound : Exit.cannotExecute)
}

/// `getenv` as a String.
public func readEnvironment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    return string(fromCString: v)
}

/// Runs a program found on PATH and returns its exit status as a shell shows it (127: it
/// could not be started).
public func runProgram(_ argv: [String]) -> Int32 {
    Subprocess.run(argv)?.status?.shellCode ?? 127
}
