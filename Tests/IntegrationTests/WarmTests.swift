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
    """

    /// A zipapp in a new directory that prints its mount, device, pid and `version`.
    func makeApp(_ dir: String, version: Int = 1, name: String = "app.pyz") throws -> String {
        let source = dir + "/src-\(version)"
        try FileManager.default.createDirectory(atPath: source + "/pkg", withIntermediateDirectories: true)
        try Self.main.replacingOccurrences(of: "VERSION", with: "\(version)").write(toFile: source + "/__main__.py", atomically: true, encoding: .utf8)
        try "".write(toFile: source + "/pkg/__init__.py", atomically: true, encoding: .utf8)
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
        #expect(eventually { ((try? FileManager.default.contentsOfDirectory(atPath: "/run/pyzfs")) ?? []).allSatisfy { !$0.hasSuffix(".sock") } })
        #expect(run([pyzfs, "unmount", "--warm", "/x"]).status == 64)
    }
}
