import CLinux
import PyzfsApps
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// The app's parent when pyzfs cannot simply become the app: as PID 1 in a container (a
/// minimal init, as tini is) and with `--no-namespace`. Forwards signals, reaps orphans, and
/// exits with the app's status.
public enum Supervisor {
    public static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]

    /// How the mount ends when this process is PID 1: its exit kills every process of the
    /// container, the server too, so the mount must be ended first.
    struct InitCleanup {
        /// Ends the mount (closes the server's lifetime pipe, or detaches the namespace's mount).
        public let end: () -> Void
        /// The server, this process's child as init, waited for after `end` so that it unmounts
        /// and removes its directory itself; nil when it cannot end before this process does.
        public let server: pid_t?

        /// Ends the mount and waits for the server to have unmounted.
        func run() {
            end()
            if let server {
                var ignored: Int32 = 0
                while waitpid(server, &ignored, 0) < 0 && errno == EINTR {}
            }
        }
    }

    /// - Parameters:
    ///   - waitForAll: become the parent of every orphaned descendant of the app (a subreaper) and
    ///     return only once every descendant has exited (the mount lives that long).
    ///   - asInit: what ends the mount when this process is PID 1.
    static func run(_ argv: [String], waitForAll: Bool, asInit: InitCleanup? = nil) -> Never {
        if waitForAll { _ = pyzfs_set_child_subreaper() }
        var set = sigset_t()
        sigemptyset(&set)
        for s in forwarded + [SIGCHLD] { sigaddset(&set, s) }
        var previous = sigset_t()
        sigprocmask(SIG_BLOCK, &set, &previous)
        let app = fork()
        if app == 0 {
            sigprocmask(SIG_SETMASK, &previous, nil)
            execute(argv)
        }
        if app < 0 {
            writeAll(2, "pyzfs: cannot start the app: \(errnoText(errno))\n")
            exit(125)
        }
        let isInit = getpid() == 1
        let cleanup = isInit ? asInit : nil
        var appStatus: Int32? = nil
        while true {
            var info = siginfo_t()
            let sig = sigwaitinfo(&set, &info)
            if sig < 0 { continue }
            if sig != SIGCHLD {
                // Ctrl-C and Ctrl-\ reach the app from the terminal itself; forward what a process
                // sent (docker stop, kill), and everything when init, which the kernel shields.
                if appStatus == nil && (isInit || pyzfs_siginfo_from_process(&info) != 0) { kill(app, sig) }
                continue
            }
            while true {
                var status: Int32 = 0
                let pid = waitpid(-1, &status, WNOHANG)
                if pid <= 0 { break }
                if pid == app { appStatus = status }
            }
            guard let status = appStatus else { continue }
            // As init the server is a child too, and it ends only after this process: the app's
            // other descendants are what the mount waits for.
            if waitForAll && hasChildren(except: cleanup?.server) { continue }
            cleanup?.run()
            finish(status, isInit: isInit)
        }
    }

    /// Whether this process has a child other than `server`: waitpid says whether it has any,
    /// /proc (all its threads' children) whether one is not the server. Where /proc cannot
    /// tell (not this PID namespace's /proc, as after `unshare --pid --fork` without
    /// --mount-proc; no CONFIG_PROC_CHILDREN), init does not wait for the app's leftovers:
    /// waitpid would count the server, which ends only after init, and init would never exit.
    static func hasChildren(except server: pid_t?) -> Bool {
        if let server {
            guard readlink("/proc/self") == "\(getpid())", let children = listedChildren() else { return false }
            return children.contains { $0 != server }
        }
        var probe: Int32 = 0
        return !(waitpid(-1, &probe, WNOHANG) == -1 && errno == ECHILD)
    }

    private static func readlink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let n = Glibc.readlink(path, &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    /// This process's children from /proc/self/task/*/children; nil where the kernel has no such
    /// file (CONFIG_PROC_CHILDREN) or /proc is not mounted.
    public static func listedChildren() -> [pid_t]? {
        guard let tasks = directoryNames("/proc/self/task") else { return nil }
        var children: [pid_t] = []
        for task in tasks {
            guard let text = readSmallFile("/proc/self/task/\(task)/children") else { return nil }
            children += text.split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) }
        }
        return children
    }

    /// Exits as the app did: its code, or (unless init, which cannot) the same signal.
    public static func finish(_ raw: Int32, isInit: Bool) -> Never {
        let status = WaitStatus(raw: raw)
        guard let signal = status.signal else { exit(status.exitCode ?? 0) }
        if !isInit {
            Glibc.signal(signal, SIG_DFL)
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, signal)
            sigprocmask(SIG_UNBLOCK, &set, nil)
            kill(getpid(), signal)
        }
        exit(128 + signal)
    }
}
