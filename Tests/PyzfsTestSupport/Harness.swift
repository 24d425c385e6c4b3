import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The output of a finished program.
public struct RunResult: Sendable, CustomStringConvertible {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

/// Facts about this machine and checkout that tests need.
public enum TestEnvironment {
    /// The repository root (three levels above this file).
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The pyzfs binary under test: $PYZFS_BINARY, else the debug build.
    public static let binary: String = ProcessInfo.processInfo.environment["PYZFS_BINARY"]
        ?? root + "/.build/debug/pyzfs"

    public static let fixturesScripts = root + "/Tests/fixtures"

    /// The python3 that tests run (the stock interpreter on PATH).
    public static let python: String = {
        let r = run(["python3", "-c", "import sys; print(sys.executable)"])
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return path.isEmpty ? "python3" : path
    }()

    /// Why real mounts cannot be made here, or nil when they can.
    public static let mountUnavailableReason: String? = {
        if access("/dev/fuse", F_OK) != 0 { return "no /dev/fuse on this machine: real-mount tests need FUSE" }
        if getuid() != 0 && access("/usr/bin/fusermount3", X_OK) != 0 {
            return "not root and no fusermount3: real-mount tests need one of them"
        }
        if access("/dev/fuse", R_OK | W_OK) != 0 && getuid() != 0 {
            return "/dev/fuse is not accessible to this user"
        }
        if access(binary, X_OK) != 0 { return "the pyzfs binary is missing at \(binary): run swift build first" }
        return nil
    }()

    public static var canMount: Bool { mountUnavailableReason == nil }
}

/// The environment programs under test get: this process's, with `PYZFS_KEEP=0` unless set,
/// so that a `pyzfs run` keeps no warm server (a test of warm servers asks for one, and ends it).
public func testEnvironment() -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    if env["PYZFS_KEEP"] == nil { env["PYZFS_KEEP"] = "0" }
    return env
}

/// Runs a program to completion (killed after `timeout` seconds) and collects its output.
/// The child gets only stdin, stdout and stderr: every other descriptor of the test process is
/// closed, so a daemon it starts cannot hold this process's pipes.
@discardableResult
public func run(_ argv: [String], environment: [String: String]? = nil, cwd: String? = nil,
                stdin: String? = nil, timeout: Double = 300) -> RunResult {
    var env = testEnvironment()
    for (k, v) in environment ?? [:] { env[k] = v }
    var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1], inPipe: [Int32] = [-1, -1]
    guard pipe(&outPipe) == 0, pipe(&errPipe) == 0, pipe(&inPipe) == 0 else {
        return RunResult(status: 127, stdout: "", stderr: "pipe: \(String(cString: strerror(errno)))")
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    let (pid, rc) = spawnProcess(argv, environment: env, cwd: cwd, actions: &actions)
    close(inPipe[0]); close(outPipe[1]); close(errPipe[1])
    if rc != 0 {
        close(inPipe[1]); close(outPipe[0]); close(errPipe[0])
        return RunResult(status: 127, stdout: "", stderr: "cannot run \(argv[0]): \(String(cString: strerror(rc)))")
    }
    if let stdin {
        var bytes = Array(stdin.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(inPipe[1], $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { break }
            done += n
        }
    }
    close(inPipe[1])
    var out: [UInt8] = [], err: [UInt8] = []
    var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0), pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
    let deadline = Date().addingTimeInterval(timeout)
    var killed = false
    var chunk = [UInt8](repeating: 0, count: 65536)
    while fds.contains(where: { $0.fd >= 0 }) {
        let left = deadline.timeIntervalSinceNow
        if left <= 0 && !killed { kill(pid, SIGKILL); killed = true }
        let n = poll(&fds, nfds_t(fds.count), killed ? 1000 : Int32(min(left, 1) * 1000) + 1)
        if n < 0 && errno != EINTR { break }
        if killed && n == 0 { break }
        for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
            let r = chunk.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
            if r > 0 {
                if i == 0 { out += chunk[0..<r] } else { err += chunk[0..<r] }
            } else if r == 0 || errno != EINTR {
                close(fds[i].fd)
                fds[i].fd = -1
            }
        }
    }
    for f in fds where f.fd >= 0 { close(f.fd) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return RunResult(status: code, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
}

/// glibc's posix_spawn extensions, which Swift's Glibc module does not export (they need _GNU_SOURCE).
enum SpawnExtensions {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias ChangeDirectory = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    static let closeFrom: CloseFrom? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: CloseFrom.self) }
    static let chdir: ChangeDirectory? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np")
        .map { unsafeBitCast($0, to: ChangeDirectory.self) }
}

/// A new empty directory in this test process's own directory under /tmp, which goes when the
/// process exits: a test that forgets its `removeTree`, or ends early, leaves nothing behind.
public func makeTemporaryDirectory(_ tag: String = "test") -> String {
    makeDirectory(in: TestScratch.root, tag: tag)
}

private func makeDirectory(in base: String, tag: String) -> String {
    var template = Array("\(base)/pyzfs-\(tag)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(p != nil, "mkdtemp in \(base) failed: \(String(cString: strerror(errno)))")
    return String(cString: p!)
}

enum TestScratch {
    /// Traversable by every uid (the tests that run pyzfs as another user need that); each
    /// directory made in it is 0700 as mkdtemp makes it.
    static let root: String = {
        let root = makeDirectory(in: "/tmp", tag: "tests-\(getpid())")
        chmod(root, 0o755)
        atexit { removeTree(TestScratch.root) }
        return root
    }()
}

/// Removes a directory tree (never across a mount: `rm --one-file-system`).
public func removeTree(_ path: String) {
    run(["rm", "-rf", "--one-file-system", path])
}

/// Whether `path` is a mount point now.
public func isMountPoint(_ path: String) -> Bool {
    let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    return info.split(separator: "\n").contains { line in
        let f = line.split(separator: " ")
        return f.count > 4 && f[4] == path
    }
}

/// Archives made by Tests/fixtures/make_archives.py, generated once per test process.
public final class Fixtures: @unchecked Sendable {
    public static let shared = Fixtures()
    public let directory: String
    private let lock = NSLock()
    private var made: Set<String> = []

    init() { directory = makeTemporaryDirectory("fixtures") }

    /// The path of fixture `name` (e.g. "deflate" gives deflate.zip), made on first use.
    public func archive(_ name: String, file: String? = nil) -> String {
        lock.lock()
        defer { lock.unlock() }
        if !made.contains(name) {
            let r = run(["python3", TestEnvironment.fixturesScripts + "/make_archives.py", directory, name])
            precondition(r.status == 0, "make_archives.py \(name) failed: \(r)")
            made.insert(name)
        }
        let candidates = [file, name + ".zip", name + ".pyz"].compactMap { $0 }
        for c in candidates where FileManager.default.fileExists(atPath: directory + "/" + c) {
            return directory + "/" + c
        }
        preconditionFailure("fixture \(name) made no file")
    }
}

/// Errors of the test harness itself.
public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Mounts `archive` with the pyzfs binary, runs `body` with the mount point, and always unmounts
/// and removes the mount point, also when `body` throws.
public func withMount<R>(_ archive: String, options: [String] = [], extraArguments: [String] = [],
                         environment: [String: String]? = nil, _ body: (String) throws -> R) throws -> R {
    let mountpoint = makeTemporaryDirectory("mnt")
    var argv = [TestEnvironment.binary, "mount", archive, mountpoint]
    if !options.isEmpty { argv += ["-o", options.joined(separator: ",")] }
    argv += extraArguments
    let r = run(argv, environment: environment, timeout: 120)
    defer { unmountAndRemove(mountpoint) }
    guard r.status == 0 else { throw HarnessError("pyzfs mount failed: \(r)") }
    return try body(mountpoint)
}

/// Unmounts whatever is on `mountpoint` (lazily if need be) and removes the directory.
public func unmountAndRemove(_ mountpoint: String) {
    if isMountPoint(mountpoint) {
        let r = run([TestEnvironment.binary, "unmount", mountpoint], timeout: 60)
        if r.status != 0 || isMountPoint(mountpoint) {
            run(["umount", "-l", mountpoint], timeout: 60)
        }
    }
    rmdir(mountpoint)
}

/// A program started in the background, its output going to files.
public final class Spawned: @unchecked Sendable {
    public let pid: pid_t
    let directory: String
    private var status: Int32?

    init(pid: pid_t, directory: String) {
        self.pid = pid
        self.directory = directory
    }

    public var stdout: String { (try? String(contentsOfFile: directory + "/out", encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: directory + "/err", encoding: .utf8)) ?? "" }

    /// Waits for the exit (killing it after `timeout`); the exit code, or 128 + the signal.
    @discardableResult
    public func wait(timeout: Double = 60) -> Int32 {
        if let status { return status }
        let deadline = Date().addingTimeInterval(timeout)
        var raw: Int32 = 0
        while true {
            let r = waitpid(pid, &raw, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { raw = 0; break }
            if Date() > deadline { kill(pid, SIGKILL) }
            usleep(10_000)
        }
        let code: Int32 = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        status = code
        return code
    }

    deinit {
        if status == nil { kill(pid, SIGKILL); _ = wait(timeout: 5) }
        removeTree(directory)
    }
}

/// Starts `argv` in the background with stdin from /dev/null and every other descriptor closed.
public func spawn(_ argv: [String], environment: [String: String]? = nil, cwd: String? = nil) -> Spawned {
    let directory = makeTemporaryDirectory("spawn")
    var env = testEnvironment()
    for (k, v) in environment ?? [:] { env[k] = v }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, directory + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, directory + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let (pid, rc) = spawnProcess(argv, environment: env, cwd: cwd, actions: &actions)
    precondition(rc == 0, "cannot spawn \(argv[0]): \(rc)")
    return Spawned(pid: pid, directory: directory)
}

/// Waits until `condition` holds (polling every 10 ms), up to `timeout` seconds.
@discardableResult
public func eventually(timeout: Double = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// The pids of processes whose command line contains `needle`.
public func processes(matching needle: String) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { name -> pid_t? in
        guard let pid = pid_t(name), pid != getpid(),
              let data = FileManager.default.contents(atPath: "/proc/\(name)/cmdline") else { return nil }
        let cmd = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        return cmd.contains(needle) ? pid : nil
    }
}

/// Spawn attributes that give the child no blocked signals and default dispositions: the test
/// runner's threads block or ignore some, and a child would inherit that (and ignore SIGTERM).
func cleanSignalAttributes() -> posix_spawnattr_t {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigmask(&attributes, &none)
    var all = sigset_t()
    sigfillset(&all)
    sigdelset(&all, SIGKILL)
    sigdelset(&all, SIGSTOP)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    return attributes
}

/// posix_spawnp with every descriptor above 2 closed, `cwd`, and clean signal state.
func spawnProcess(_ argv: [String], environment env: [String: String], cwd: String?,
                  actions: inout posix_spawn_file_actions_t) -> (pid_t, Int32) {
    _ = SpawnExtensions.closeFrom?(&actions, 3)
    if let cwd { _ = SpawnExtensions.chdir?(&actions, cwd) }
    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
    var pid: pid_t = 0
    var attributes = cleanSignalAttributes()
    defer { posix_spawnattr_destroy(&attributes) }
    let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, &cArgs, &cEnv)
    return (pid, rc)
}

/// `withMount` with the server logging to a file (`-o log=`); returns the body's result and
/// what the server logged.
public func withLoggedMount<R>(_ archive: String, options: [String] = [], _ body: (String) throws -> R) throws -> (R, String) {
    let directory = makeTemporaryDirectory("log")
    defer { removeTree(directory) }
    let result = try withMount(archive, options: options + ["log=\(directory)/server.log"], body)
    // The server writes its last lines as it unmounts; they are in the file once it is gone.
    let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
    return (result, log)
}

/// The peak resident memory (VmHWM) of process `pid`, in KiB.
public func peakResidentKiB(_ pid: Int) -> Int? {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    return status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
        .flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") }
}
