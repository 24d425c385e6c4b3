import Foundation
import PyzfsTestSupport
import Testing

/// Warm servers (`pyzfs run --keep`): a later run of the same archive, user and options uses
/// the same kernel mount; nobody else reaches it; a changed archive or options get a new
/// server; idle servers go; PID 1, --keep=0 and allow_other keep nothing; the app's pid, exit
/// status and signals are what they are without one. Serialized: `pyzfs unmount --warm` ends
/// every warm server of root, and no other suite keeps any (the harness sets PYZFS_KEEP=0).
@Suite("warm servers", .serialized, .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct WarmTests {
    let pyzfs = TestEnvironment.binary

    static let main = """
    import os, signal, sys, time
    m = os.environ["PYZFS_MOUNT"]
    print("mount", m, "dev", os.stat(m).st_dev, "pid", os.getpid(), "ns", os.readlink("/proc/self/ns/mnt"), "version", VERSION, flush=True)
    command = sys.argv[1:2]
    if command == ["exit"]:
        sys.exit(int(sys.argv[2]))
    if command == ["signal"]:
        os.kill(os.getpid(), signal.SIGTERM)
    if command == ["wait"]:
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.01)
    if command == ["daemon"]:
        # Leaves a daemon that, once argv[2] exists, imports from the mount and says so in argv[3].
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)  # the caller's pipes are not held
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                while not os.path.exists(sys.argv[2]):
                    time.sleep(0.01)
                try:
                    import pkg.late
                    result = "import ok %d" % pkg.late.X
                except Exception as e:
                    result = "import failed %r" % e
                open(sys.argv[3] + ".new", "w").write(result)
                os.rename(sys.argv[3] + ".new", sys.argv[3])
            os._exit(0)
        os.wait()
    """

    /// A zipapp in a new directory that prints its mount, device, pid and `version`.
    func makeApp(_ dir: String, version: Int = 1, name: String = "app.pyz") throws -> String {
        let source = dir + "/src-\(version)"
        try FileManager.default.createDirectory(atPath: source + "/pkg", withIntermediateDirectories: true)
        try Self.main.replacingOccurrences(of: "VERSION", with: "\(version)").write(toFile: source + "/__main__.py", atomically: true, encoding: .utf8)
        try "".write(toFile: source + "/pkg/__init__.py", atomically: true, encoding: .utf8)
        try "X = 42\n".write(toFile: source + "/pkg/late.py", atomically: true, encoding: .utf8)
        let archive = dir + "/" + name
        let r = run(["python3", "-m", "zipapp", source, "-p", "/usr/bin/python3", "-o", archive + ".new"])
        try #require(r.status == 0, "\(r)")
        try #require(rename(archive + ".new", archive) == 0)
        return archive
    }

    struct Start {
        var result: RunResult? = nil
        var stdout: String { result?.stdout ?? output }
        var output = ""
        var status: Int32 { result?.status ?? 0 }
        var mount: String { field("mount") }
        var dev: String { field("dev") }
        var pid: String { field("pid") }
        var version: String { field("version") }
        func field(_ name: String) -> String {
            let words = stdout.split(whereSeparator: \.isWhitespace).map(String.init)
            guard let i = words.firstIndex(of: name), i + 1 < words.count else { return "" }
            return words[i + 1]
        }
    }

    func start(_ archive: String, _ args: [String] = [], keep: String = "60", options: [String] = []) -> Start {
        Start(result: run([pyzfs, "run", "--keep=\(keep)"] + options + [archive] + args, timeout: 60))
    }

    /// The pyzfs mounts of `archive` in this namespace.
    func mounts(of archive: String) -> [String] {
        let table = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            .filter { $0.count > 2 && $0[0] == archive && $0[2] == "fuse.pyzfs" }.map { $0[1] }
    }

    /// Ends the warm servers of `archive`.
    func end(_ archive: String) {
        for m in mounts(of: archive) { run([pyzfs, "unmount", "-l", m]) }
        #expect(eventually { mounts(of: archive).isEmpty }, "warm mounts of \(archive) left")
    }

    func requests(_ mount: String) -> Int {
        let r = run([pyzfs, "stats", mount])
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("requests: ") }
        return line.flatMap { Int($0.dropFirst(10)) } ?? -1
    }

    @Test("a later start uses the same kernel mount, makes no more requests than a warm start, holds no pipe of the caller")
    func laterStartReusesTheMount() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let first = start(app), second = start(app)
        // run() reads stdout and stderr to their end: a server holding them would stall it.
        #expect(first.status == 0 && second.status == 0, "\(first.stdout) \(second.stdout)")
        #expect(first.mount.hasPrefix("/run/pyzfs/") && first.mount == second.mount && first.dev == second.dev, "\(first.stdout) \(second.stdout)")
        #expect(mounts(of: app) == [first.mount])
        let list = run([pyzfs, "list"])
        #expect(list.stdout.contains("\(app)\t\(first.mount)\trw,bytecode,warm\t"), "\(list)")
        #expect(run([pyzfs, "list", "--json"]).stdout.contains("\"warm\":true"))
        // A warm start without pyzfs run: python3 on the kept mount.
        let before = requests(first.mount)
        let direct = run(["python3", first.mount], environment: ["PYZFS_MOUNT": first.mount])
        let middle = requests(first.mount)
        let later = start(app)
        let after = requests(first.mount)
        #expect(direct.status == 0 && later.status == 0 && later.mount == first.mount)
        let stats = middle - before  // the stats read's own requests are in both differences
        // The launcher's one statfs of the mount (is its server alive?) is all it adds.
        #expect(after - middle <= stats + 1, "a later start made \(after - middle) requests, a warm start \(stats)")
    }

    @Test("an archive without pycs compiles each module once per warm server (with bytecode writing allowed), every time without")
    func bytecodeOncePerServer() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let source = dir + "/src"
        try FileManager.default.createDirectory(atPath: source + "/wpkg", withIntermediateDirectories: true)
        for i in 0..<5 { try "X = \(i)\n".write(toFile: source + "/wpkg/m\(i).py", atomically: true, encoding: .utf8) }
        try "".write(toFile: source + "/wpkg/__init__.py", atomically: true, encoding: .utf8)
        try """
        import os, sys
        mount = os.environ["PYZFS_MOUNT"]
        compiled = []
        sys.addaudithook(lambda event, args: compiled.append(args[1]) if event == "compile" and str(args[1]).startswith(mount + "/wpkg") else None)
        import wpkg.m0, wpkg.m1, wpkg.m2, wpkg.m3, wpkg.m4
        print("compiled", len(compiled))
        """.write(toFile: source + "/__main__.py", atomically: true, encoding: .utf8)
        let app = dir + "/app.pyz"
        #expect(run(["python3", "-m", "zipapp", source, "-p", "/usr/bin/python3", "-o", app]).status == 0)
        defer { end(app) }
        func compiled(writing: Bool) -> String {
            let r = run(["env"] + (writing ? ["-u", "PYTHONDONTWRITEBYTECODE"] : ["PYTHONDONTWRITEBYTECODE=1"]) + [pyzfs, "run", "--keep=60", app])
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(compiled(writing: true) == "compiled 6", "the first start compiles the package and its 5 modules")
        #expect(compiled(writing: true) == "compiled 0", "a later start loads the bytecode the first one wrote")
        #expect(compiled(writing: true) == "compiled 0")
        end(app)
        #expect(compiled(writing: false) == "compiled 6")
        #expect(compiled(writing: false) == "compiled 6", "PYTHONDONTWRITEBYTECODE: every start compiles (docs/deployment.md)")
    }

    @Test("exit status, death by signal and pid are the app's on first and later starts", arguments: [false, true])
    func statusAndSignals(noNamespace: Bool) throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let mode = noNamespace ? ["--no-namespace"] : []
        for _ in 0..<2 {
            #expect(start(app, ["exit", "7"], options: mode).status == 7)
            let signalled = run(["sh", "-c", "\"$@\"; echo status $?", "sh", pyzfs, "run", "--keep=60"] + mode + [app, "signal"])
            #expect(signalled.stdout.contains("status 143"), "\(signalled)")
        }
        if !noNamespace {
            // The app is the process pyzfs run was: exec'd, not a child.
            let flag = dir + "/go"
            let spawned = spawn([pyzfs, "run", "--keep=60", app, "wait", flag], environment: ["PYZFS_KEEP": "60"])
            #expect(eventually { spawned.stdout.contains("pid ") }, "\(spawned.stdout)")
            #expect(spawned.stdout.contains("pid \(spawned.pid) "), "\(spawned.stdout)")
            FileManager.default.createFile(atPath: flag, contents: nil)
            #expect(spawned.wait() == 0)
        }
    }

    @Test("a replaced or changed archive and other options get a new server; the old one never serves them")
    func newServerForNewIdentity() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let first = start(app)
        #expect(first.version == "1")
        _ = try makeApp(dir, version: 2)  // written beside and renamed over, as deploys do
        let replaced = start(app)
        #expect(replaced.version == "2" && replaced.mount != first.mount, "\(replaced.stdout)")
        // Changed in place: same inode, new mtime and ctime.
        let touched = run(["touch", "-d", "2001-01-01", app])
        #expect(touched.status == 0)
        let inPlace = start(app)
        #expect(inPlace.version == "2" && ![first.mount, replaced.mount].contains(inPlace.mount))
        let other = start(app, options: ["-o", "cache_size=64M"])
        #expect(other.status == 0 && ![first.mount, replaced.mount, inPlace.mount].contains(other.mount))
        #expect(start(app).mount == inPlace.mount, "the unchanged archive's server is reused")
    }

    @Test("an idle server unmounts after its keep time; one with a run attached stays")
    func idleServersGo() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let busy = try makeApp(dir, name: "busy.pyz"), clock = try makeApp(dir, name: "clock.pyz")
        defer { end(busy); end(clock) }
        let flag = dir + "/go"
        let spawned = spawn([pyzfs, "run", "--keep=1", busy, "wait", flag])
        #expect(eventually { spawned.stdout.contains("mount ") }, "\(spawned.stdout)")
        // The clock: a server whose keep time, 1 s, starts now and ends while busy's app runs.
        #expect(start(clock, keep: "1").status == 0)
        #expect(eventually(timeout: 30) { mounts(of: clock).isEmpty }, "an idle server stayed")
        #expect(mounts(of: busy).count == 1, "a server with a run attached went")
        FileManager.default.createFile(atPath: flag, contents: nil)
        #expect(spawned.wait() == 0)
        #expect(eventually(timeout: 30) { mounts(of: busy).isEmpty }, "the server stayed after its run")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/run/pyzfs")) ?? []
        let mount = Start(output: spawned.stdout).mount
        let key = String(mount.split(separator: "/").last?.prefix(32) ?? "")
        #expect(!key.isEmpty && eventually { !((try? FileManager.default.contentsOfDirectory(atPath: "/run/pyzfs")) ?? []).contains { $0.hasPrefix(key) } },
                "left in /run/pyzfs: \(names)")
    }

    @Test("a process the app left keeps its mount after the server's keep time, while later runs start a new server")
    func leftoverKeepsItsMount() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let flag = dir + "/go", result = dir + "/result"
        #expect(start(app, ["daemon", flag, result], keep: "1").status == 0)
        // The original is detached after 1 s; the daemon's namespace still holds its copy.
        #expect(eventually(timeout: 30) { mounts(of: app).isEmpty })
        let later = start(app)
        #expect(later.status == 0 && !later.mount.isEmpty)
        FileManager.default.createFile(atPath: flag, contents: nil)
        #expect(eventually { FileManager.default.fileExists(atPath: result) })
        #expect((try? String(contentsOfFile: result, encoding: .utf8)) == "import ok 42")
    }

    @Test("SIGTERM ends a warm server at once when idle, and once its run has exited when not")
    func terminationSignal() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let first = start(app)
        let idle = try #require(serverPid(first.mount))
        #expect(kill(idle, SIGTERM) == 0)
        #expect(eventually { mounts(of: app).isEmpty }, "an idle server stayed after SIGTERM")
        let flag = dir + "/go"
        let spawned = spawn([pyzfs, "run", "--keep=60", app, "wait", flag])
        #expect(eventually { spawned.stdout.contains("mount ") })
        let mount = Start(output: spawned.stdout).mount
        let busy = try #require(serverPid(mount))
        #expect(kill(busy, SIGTERM) == 0)
        // The run attached is served to its end: it imports after the signal.
        FileManager.default.createFile(atPath: flag, contents: nil)
        #expect(spawned.wait() == 0)
        #expect(eventually { mounts(of: app).isEmpty }, "the server stayed after its run and SIGTERM")
    }

    @Test("a dead warm mount (server killed) is cleared and the run mounts afresh")
    func deadServerCleared() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let first = start(app)
        let pid = try #require(serverPid(first.mount))
        #expect(kill(pid, SIGKILL) == 0)
        #expect(eventually { run(["stat", first.mount]).stderr.contains("not connected") })
        let next = start(app)
        #expect(next.status == 0 && next.mount != first.mount, "\(next.stdout)")
        #expect(mounts(of: app) == [next.mount], "the dead mount stayed: \(mounts(of: app))")
    }

    func serverPid(_ mount: String) -> pid_t? {
        let r = run([pyzfs, "list", "--json"])
        guard let line = r.stdout.split(separator: "\n").first(where: { $0.contains("\"\(mount)\"") }),
              let range = line.range(of: "\"pid\":") else { return nil }
        return pid_t(line[range.upperBound...].prefix { $0.isNumber })
    }

    @Test("nothing is kept with --keep=0, as PID 1 or with allow_other")
    func nothingKept() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        #expect(start(app, keep: "0").status == 0)
        #expect(mounts(of: app).isEmpty)
        let asInit = run(["unshare", "--pid", "--fork", pyzfs, "run", "--keep=60", app, "exit", "3"])
        #expect(asInit.status == 3, "\(asInit)")
        #expect(mounts(of: app).isEmpty, "PID 1 kept a server")
        #expect(start(app, options: ["-o", "allow_other"]).status == 0)
        #expect(mounts(of: app).isEmpty, "allow_other kept a server")
        // A pinned archive whose mount takes pycs: the overlay would outlive the run.
        let hash = run(["sha256sum", app]).stdout.prefix(64)
        #expect(start(app, options: ["-o", "sha256=\(hash)"]).status == 0)
        #expect(mounts(of: app).isEmpty, "a pinned mount with a bytecode overlay was kept")
        #expect(start(app, options: ["-o", "sha256=\(hash),pycache=off"]).status == 0)
        #expect(mounts(of: app).count == 1, "a pinned read-only mount is kept")
        end(app)
        let bad = run([pyzfs, "run", "--keep=5x", app])
        #expect(bad.status == 125 && bad.stderr.contains("bad keep time '5x'"), "\(bad)")
        let badEnv = run([pyzfs, "run", app], environment: ["PYZFS_KEEP": "-1"])
        #expect(badEnv.status == 125 && badEnv.stderr.contains("in PYZFS_KEEP"), "\(badEnv)")
    }

    @Test("another user cannot enter the warm directory, list its mount or connect to its server")
    func otherUserCannotReach() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let first = start(app)
        #expect(first.status == 0)
        var st = stat()
        #expect(stat("/run/pyzfs", &st) == 0 && st.st_mode & 0o777 == 0o700 && st.st_uid == 0)
        let probe = """
        import os, socket, sys
        for what, f in (("list", lambda: os.listdir(sys.argv[1])), ("stat", lambda: os.stat(sys.argv[1] + "/__main__.py")),
                        ("connect", lambda: socket.socket(socket.AF_UNIX).connect(sys.argv[2]))):
            try:
                f()
                print(what, "reached")
            except PermissionError:
                print(what, "denied")
        """
        let socketPath = "/run/pyzfs/" + first.mount.split(separator: "/").last!.prefix(32) + ".sock"
        #expect(FileManager.default.fileExists(atPath: socketPath))
        let r = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", probe, first.mount, socketPath])
        #expect(r.stdout == "list denied\nstat denied\nconnect denied\n", "\(r)")
    }

    @Test("two first starts at once share one server")
    func concurrentFirstStarts() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let flag = dir + "/go"
        let a = spawn([pyzfs, "run", "--keep=60", app, "wait", flag]), b = spawn([pyzfs, "run", "--keep=60", app, "wait", flag])
        #expect(eventually { a.stdout.contains("mount ") && b.stdout.contains("mount ") })
        FileManager.default.createFile(atPath: flag, contents: nil)
        #expect(a.wait() == 0 && b.wait() == 0)
        let ma = Start(output: a.stdout).mount
        #expect(!ma.isEmpty && ma == Start(output: b.stdout).mount, "\(a.stdout) \(b.stdout)")
        #expect(mounts(of: app) == [ma])
    }

    @Test("where / is shared, the warm directory is private: its mounts propagate nowhere")
    func privateAgainstPropagation() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        let script = """
        "$1" run --keep=60 "$2" >/dev/null || exit 1
        grep ' /run/pyzfs ' /proc/self/mountinfo
        "$1" unmount --warm
        """
        let r = run(["unshare", "--mount", "--propagation", "shared", "sh", "-c", script, "sh", pyzfs, app])
        #expect(r.status == 0, "\(r)")
        let line = r.stdout.split(separator: "\n").first { $0.contains(" /run/pyzfs ") } ?? ""
        #expect(!line.isEmpty && !line.contains("shared:"), "\(r.stdout)")
    }

    @Test("pyzfs unmount --warm ends every warm server; the names beside them go")
    func unmountWarm() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let one = try makeApp(dir, name: "one.pyz"), two = try makeApp(dir, name: "two.pyz")
        defer { end(one); end(two) }
        #expect(start(one).status == 0 && start(two).status == 0)
        let r = run([pyzfs, "unmount", "--warm"])
        #expect(r.status == 0, "\(r)")
        #expect(eventually { mounts(of: one).isEmpty && mounts(of: two).isEmpty })
        // Even what a killed server left (its socket, lock and directory) goes.
        let killed = start(one)
        let pid = try #require(serverPid(killed.mount))
        #expect(kill(pid, SIGKILL) == 0)
        #expect(eventually { run(["stat", killed.mount]).stderr.contains("not connected") })
        #expect(run([pyzfs, "unmount", "--warm"]).status == 0)
        #expect(eventually { ((try? FileManager.default.contentsOfDirectory(atPath: "/run/pyzfs")) ?? []).isEmpty },
                "left: \((try? FileManager.default.contentsOfDirectory(atPath: "/run/pyzfs")) ?? [])")
        #expect(run([pyzfs, "unmount", "--warm", "/x"]).status == 64)
    }

    /// The server of `mount`'s pid (from `pyzfs stats`), and its CPU ticks (utime + stime).
    func server(of mount: String) -> (pid: String, ticks: () -> Int) {
        let pid = run([pyzfs, "stats", mount]).stdout.split(separator: "\n").first { $0.hasPrefix("pid: ") }.map { String($0.dropFirst(5)) } ?? ""
        return (pid, {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            return fields.count > 13 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : -1
        })
    }

    /// `KEY.sock` beside the warm mount `mount` (/run/pyzfs/KEY-XXXXXX[/name]).
    func socketPath(of mount: String) -> String {
        let component = mount.dropFirst("/run/pyzfs/".count).prefix(32)
        return "/run/pyzfs/\(component).sock"
    }

    @Test("a server out of file descriptors refuses runs, which mount afresh; it stays, idle on its socket, for later runs",
          arguments: [40, 41])
    func outOfDescriptors(limit: Int) throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let flag = dir + "/go"
        defer { FileManager.default.createFile(atPath: flag, contents: nil) }
        // The server inherits the first run's limit (soft and hard: it raises soft to hard).
        let first = spawn(["prlimit", "--nofile=\(limit):\(limit)", pyzfs, "run", "--keep=60", app, "wait", flag])
        #expect(eventually { !Start(output: first.stdout).mount.isEmpty }, "\(first.stderr)")
        let warm = Start(output: first.stdout).mount
        try #require(warm.hasPrefix("/run/pyzfs/"), "\(first.stdout) \(first.stderr)")
        var inode = stat()
        try #require(stat(socketPath(of: warm), &inode) == 0)
        let (serverPID, ticks) = server(of: warm)
        try #require(!serverPID.isEmpty)
        // At its descriptor limit (the system's file table full, ENFILE, is the same) accept(2) itself
        // fails, and the server's spare descriptor takes the connection to refuse it.
        let open = Set(((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(serverPID)/fd")) ?? []).compactMap(Int.init))
        let lowestFree = (0...).first { !open.contains($0) }!
        #expect(run(["prlimit", "--pid", serverPID, "--nofile=\(lowestFree):\(limit)"]).status == 0)
        let idle = ticks()
        let atLimit = start(app)
        #expect(atLimit.status == 0 && !atLimit.mount.isEmpty && atLimit.mount != warm, "\(atLimit.stdout) \(atLimit.result?.stderr ?? "")")
        // A connection left queued would make the server's poll spin (hundreds of ticks while
        // the run waits out its 5 s).
        #expect(ticks() - idle < 50, "the server spun at its descriptor limit: \(ticks() - idle) ticks")
        var after = stat()
        #expect(stat(socketPath(of: warm), &after) == 0 && after.st_ino == inode.st_ino, "the run refused at the limit took the server's socket")
        #expect(run(["prlimit", "--pid", serverPID, "--nofile=\(limit):\(limit)"]).status == 0)
        // Each attached run holds two of the server's descriptors: runs until one is refused
        // (they never leave it with none at all: taking a run needs three).
        var attached: [Spawned] = [first]
        var refused: Spawned? = nil
        for _ in 0..<limit {
            let before = ticks()
            let next = spawn([pyzfs, "run", "--keep=60", app, "wait", flag])
            #expect(eventually { !Start(output: next.stdout).mount.isEmpty }, "\(next.stderr)")
            if Start(output: next.stdout).mount == warm {
                attached.append(next)
                continue
            }
            refused = next
            #expect(ticks() - before < 50, "the server spun while refusing: \(ticks() - before) ticks")
            break
        }
        try #require(refused != nil, "no run was refused with \(attached.count) attached at a limit of \(limit)")
        #expect(stat(socketPath(of: warm), &after) == 0 && after.st_ino == inode.st_ino, "the refused run took the server's socket")
        FileManager.default.createFile(atPath: flag, contents: nil)
        for run in attached + [refused!] { #expect(run.wait() == 0, "\(run.stdout) \(run.stderr)") }
        let later = start(app)
        #expect(later.status == 0 && later.mount == warm, "\(later.stdout) \(later.result?.stderr ?? "")")
        #expect(eventually { mounts(of: app) == [warm] }, "\(mounts(of: app))")
    }

    @Test("a run waits a bounded time for another run holding the key's lock, then runs on a mount of its own")
    func stuckLockHolder() throws {
        let dir = makeTemporaryDirectory("warm")
        defer { removeTree(dir) }
        let app = try makeApp(dir)
        defer { end(app) }
        let warm = start(app)
        try #require(warm.status == 0 && warm.mount.hasPrefix("/run/pyzfs/"), "\(warm.stdout)")
        let lockPath = socketPath(of: warm.mount).replacingOccurrences(of: ".sock", with: ".lock")
        // A run stopped while it held the lock (SIGSTOP, a debugger): this test holds it instead.
        let fd = open(lockPath, O_RDWR | O_CLOEXEC)
        try #require(fd >= 0 && flock(fd, LOCK_EX) == 0)
        let stuck = start(app)
        flock(fd, LOCK_UN)
        close(fd)
        let stderr = stuck.result?.stderr ?? ""
        #expect(stuck.status == 0 && !stuck.mount.isEmpty && stuck.mount != warm.mount, "\(stuck.stdout) \(stderr)")
        #expect(stderr.contains("has held \(lockPath) for 10 s"), "\(stderr)")
        let later = start(app)
        #expect(later.status == 0 && later.mount == warm.mount, "the warm server was lost: \(later.stdout)")
    }
}
