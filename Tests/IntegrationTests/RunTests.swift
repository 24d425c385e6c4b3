import Foundation
import PyzfsTestSupport
import Testing

/// `pyzfs run`: the app's own status and signals, a mount that lives exactly as long as the app
/// and everything it started, private mount namespaces, PID 1, and the fallback without FUSE.
@Suite("pyzfs run", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct RunTests {
    let pyzfs = TestEnvironment.binary
    var app: String { Fixtures.shared.archive("runapp") }

    /// The server of a run: same command line as the launcher had, and not the app (which is
    /// python now).
    func servers(_ marker: String) -> [pid_t] { processes(matching: "run \(app) -- sleep \(marker)") }

    /// Whether process `pid` ignores `signal` (SigIgn in /proc/PID/status).
    func signalIsIgnored(pid: pid_t, _ signal: Int32) -> Bool {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigIgn:") }),
              let mask = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) else { return false }
        return mask & (1 << UInt64(signal - 1)) != 0
    }

    /// A fresh file name for the app to write its pid into.
    func pidFile() -> String { makeTemporaryDirectory("pid") + "/pid" }

    func mountDirectory(in output: String) -> String? {
        output.split(separator: " ").map(String.init).first { $0.contains("pyzfs-run-") }
    }

    @Test("arguments, stdin, working directory and PYZFS_* reach the app; the directory goes after")
    func basics() throws {
        let cwd = makeTemporaryDirectory("cwd")
        defer { removeTree(cwd) }
        let r = run([pyzfs, "run", app, "--", "print", "a", "b c"], cwd: cwd, stdin: "from stdin\n")
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("args ['a', 'b c'] cwd \(cwd) archive \(app) mount "), "\(r)")
        #expect(r.stdout.contains("stdin from stdin"))
        let mount = try #require(mountDirectory(in: r.stdout))
        #expect(r.stdout.contains("file \(mount)/__main__.py"))
        #expect(eventually { !FileManager.default.fileExists(atPath: mount) }, "\(mount) was left behind")
    }

    @Test("a zipapp sees what python3 ARCHIVE gives it: argv[0] as written, sys.path[0], __file__, __spec__, __main__'s names, the traceback's frames",
          arguments: [false, true])
    func whatTheAppSees(fails: Bool) throws {
        let dir = makeTemporaryDirectory("sees")
        defer { removeTree(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/app", withIntermediateDirectories: true)
        try """
        import argparse, os, sys, zipfile
        print("root", os.environ.get("PYZFS_MOUNT") or os.path.abspath(sys.argv[0]))
        print("argv", sys.argv, argparse.ArgumentParser().prog, zipfile.is_zipfile(sys.argv[0]))
        print("path0", sys.path[0], "file", __file__, "package", repr(__package__))
        print("spec", __spec__.name, __spec__.origin, __spec__.parent)
        print("names", sorted(globals()))
        def fail():
            raise ValueError("boom")
        if "--fail" in sys.argv:
            fail()

        """.write(toFile: dir + "/app/__main__.py", atomically: true, encoding: .utf8)
        let made = run(["python3", "-m", "zipapp", "app", "-o", "app.pyz", "-p", "/usr/bin/env python3"], cwd: dir)
        try #require(made.status == 0, "\(made)")
        let arguments = ["x", fails ? "--fail" : "-v"]
        /// Output with the app's root (the archive, or the mount) as ROOT; of stderr only the
        /// traceback's frame lines and the exception.
        func seen(_ r: RunResult) -> (status: Int32, stdout: String, frames: [String]) {
            let root = r.stdout.split(separator: "\n").first.map { String($0.dropFirst("root ".count)) } ?? "?"
            let frames = r.stderr.replacingOccurrences(of: root, with: "ROOT").split(separator: "\n")
                .filter { $0.hasPrefix("  File ") || $0.hasPrefix("ValueError") }.map(String.init)
            return (r.status, r.stdout.replacingOccurrences(of: root, with: "ROOT"), frames)
        }
        let direct = seen(run(["python3", "app.pyz"] + arguments, cwd: dir))
        let mounted = seen(run([pyzfs, "run", "app.pyz"] + arguments, cwd: dir))
        #expect(direct.stdout.contains("argv ['app.pyz', 'x', ") && direct.stdout.contains("path0 ROOT file ROOT/__main__.py"), "\(direct)")
        #expect(mounted.status == direct.status, "\(mounted) \(direct)")
        #expect(mounted.stdout == direct.stdout)
        #expect(mounted.frames == direct.frames)
        #expect(direct.frames.count == (fails ? 5 : 0), "\(direct)")
    }

    @Test("everything after the archive reaches the app unchanged, as with python3 ARCHIVE; one -- after it is dropped; -oOPTIONS before it")
    func argumentsAfterTheArchive() throws {
        let app = Fixtures.shared.archive("argvapp")
        let cases: [(pyzfs: [String], app: [String], readonly: Bool)] = [
            ([app, "--port", "1", "-o", "x", "--help"], ["--port", "1", "-o", "x", "--help"], true),
            ([app, "--", "--port", "1"], ["--port", "1"], true),
            ([app, "--", "--", "x"], ["--", "x"], true),
            ([app, "x", "--"], ["x", "--"], true),
            (["-opycache=memory", app, "-ofoo"], ["-ofoo"], false),
            (["--python", TestEnvironment.python, "-o", "pycache=memory", app, "--python", "y"], ["--python", "y"], false),
        ]
        for (argv, expected, readonly) in cases {
            let r = run([pyzfs, "run"] + argv)
            #expect(r.status == 0, "\(argv): \(r)")
            let printed = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(printed?["argv"] as? [String] == expected, "\(argv): \(r)")
            #expect(printed?["readonly"] as? Bool == readonly, "\(argv): the -o options did not apply: \(r)")
        }
    }

    @Test("the app's exit status, exactly", arguments: [0, 1, 7, 255])
    func exitStatus(code: Int) {
        #expect(run([pyzfs, "run", app, "--", "exit", "\(code)"]).status == Int32(code))
    }

    @Test("pyzfs becomes the app: the same pid takes the signal, and its death by signal shows", arguments: [SIGKILL, SIGTERM, SIGINT])
    func signals(signal: Int32) throws {
        let file = pidFile()
        let p = spawn([pyzfs, "run", app, "--", "sleep", file, "30"])
        #expect(eventually { FileManager.default.fileExists(atPath: file) && ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "") != "" })
        #expect((try? String(contentsOfFile: file, encoding: .utf8)) == "\(p.pid)", "the app must be the process the caller started")
        kill(p.pid, signal)
        #expect(p.wait() == 128 + signal)
        #expect(eventually { servers(file).isEmpty }, "the server outlived the app")
    }

    @Test("SIGTERM to the server does not pull files from under the app")
    func serverIgnoresTerm() throws {
        let file = pidFile()
        let go = file + ".go"
        // The app holds until the test says go: it cannot end before the server is found.
        let p = spawn([pyzfs, "run", app, "--", "hold", file, go])
        defer { FileManager.default.createFile(atPath: go, contents: nil) }
        #expect(eventually { FileManager.default.fileExists(atPath: file) })
        let server = processes(matching: "run \(app) -- hold \(file)")
        #expect(server.count == 1, "\(server)")
        for s in server {
            // SIGTERM is ignored by the server (its mask says so), so it is still serving after it.
            #expect(signalIsIgnored(pid: s, SIGTERM), "the server does not ignore SIGTERM")
            kill(s, SIGTERM)
        }
        FileManager.default.createFile(atPath: go, contents: nil)
        #expect(p.wait() == 0, "\(p.stderr)")
        #expect(p.stdout.contains("data from the mount"), "\(p.stdout) \(p.stderr)")
        #expect(eventually { processes(matching: "run \(app) -- hold \(file)").isEmpty })
    }

    @Test("a child started with subprocess that outlives the app keeps the mount until it is done", arguments: [false, true])
    func outlivingChild(noNamespace: Bool) throws {
        let out = makeTemporaryDirectory("orphan")
        defer { removeTree(out) }
        let marker = out + "/marker"
        var argv = [pyzfs, "run", app, "--", "orphan", marker, "1.0"]
        if noNamespace { argv.insert("--no-namespace", at: 2) }
        let started = Date()
        let r = run(argv)
        #expect(r.status == 0 && r.stdout.contains("app done"), "\(r)")
        if noNamespace {
            // pyzfs stays the parent of everything the app started and returns after them.
            #expect(Date().timeIntervalSince(started) >= 0.9)
            #expect(FileManager.default.fileExists(atPath: marker))
        }
        #expect(eventually { FileManager.default.fileExists(atPath: marker) })
        #expect((try? String(contentsOfFile: marker, encoding: .utf8)) == "from the mount\n", "the orphan could not read the mount")
        #expect(eventually { processes(matching: "run \(app) -- orphan \(marker)").isEmpty }, "the server outlived the orphan")
    }

    @Test("nothing propagates out of the private namespace, even under shared propagation",
          .enabled(if: getuid() == 0, "needs root for unshare(1)"))
    func noPropagation() throws {
        // In a namespace whose mounts are shared, count the pyzfs mounts this namespace sees while
        // the app runs: 0 with the private namespace; 1 with --no-namespace (the check works).
        for (flags, expected) in [("", "0"), ("--no-namespace", "1")] {
            let file = pidFile()
            // Its own runtime directory: other tests mount at the same time, elsewhere.
            let runtime = makeTemporaryDirectory("runtime")
            defer { removeTree(runtime) }
            let script = """
            mount --make-rshared /
            XDG_RUNTIME_DIR="$3" "$0" run \(flags) "$1" -- sleep "$2" 2 > /dev/null &
            while [ ! -s "$2" ]; do sleep 0.05; done
            grep -c "$3/pyzfs-run-" /proc/self/mountinfo
            wait
            """
            let r = run(["unshare", "--mount", "--propagation", "shared", "sh", "-c", script, pyzfs, app, file, runtime])
            #expect(r.stdout.split(separator: "\n").first.map(String.init) == expected, "\(flags): \(r)")
        }
    }

    /// `pyzfs run FLAGS ARGS` as PID 1 of a new PID namespace (a container's entrypoint), with
    /// its own runtime directory; unshare's death kills the namespace (a hung test ends).
    func asInitArgv(_ flags: [String], _ args: [String]) -> [String] {
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", pyzfs, "run"] + flags + [app, "--"] + args
    }

    @Test("as PID 1: the app's status at once, signals forwarded, the mount's directory gone every time",
          .enabled(if: getuid() == 0, "needs root for a PID namespace"), arguments: [false, true])
    func asInit(noNamespace: Bool) throws {
        let flags = noNamespace ? ["--no-namespace"] : []
        let runtime = makeTemporaryDirectory("runtime")
        defer { removeTree(runtime) }
        let environment = ["XDG_RUNTIME_DIR": runtime]
        // The directory was left in about half the runs in namespace mode, and --no-namespace
        // hung (its server, reparented to PID 1, waited for PID 1).
        for round in 0..<6 {
            let r = run(asInitArgv(flags, ["exit", "9"]), environment: environment, timeout: 60)
            #expect(r.status == 9, "round \(round): \(r)")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: runtime)) ?? []
            #expect(left.isEmpty, "round \(round): left in the runtime directory: \(left)")
        }
        let file = pidFile()
        let p = spawn(asInitArgv(flags, ["sleep", file, "30"]), environment: environment)
        #expect(eventually { FileManager.default.fileExists(atPath: file) })
        // pyzfs is PID 1 inside: find it by its namespaced pid.
        let initPid = processes(matching: "run \(flags.map { $0 + " " }.joined())\(app) -- sleep \(file)").first { pid in
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            return status.split(separator: "\n").contains { $0.hasPrefix("NSpid:") && $0.hasSuffix("\t1") }
        }
        let pid = try #require(initPid, "no PID 1 pyzfs found")
        kill(pid, SIGTERM)  // as docker stop does; an app without a handler dies of it
        #expect(p.wait(timeout: 20) == 128 + SIGTERM, "\(p.stderr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime)) ?? []).isEmpty)
    }

    @Test("as PID 1 with --no-namespace and the host's /proc (no --mount-proc): the app's status at once, nothing left",
          .enabled(if: getuid() == 0, "needs root for a PID namespace"))
    func asInitWithForeignProc() throws {
        let runtime = makeTemporaryDirectory("runtime")
        defer { removeTree(runtime) }
        // /proc/self/task/*/children then names host pids: it hung, waiting for a child that
        // was the server all along.
        let r = run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", pyzfs, "run", "--no-namespace",
                     app, "--", "exit", "9"], environment: ["XDG_RUNTIME_DIR": runtime], timeout: 60)
        #expect(r.status == 9, "\(r)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime)) ?? []).isEmpty)
    }

    @Test("as PID 1 with --no-namespace, a process the app left behind keeps the mount until it is done",
          .enabled(if: getuid() == 0, "needs root for a PID namespace"))
    func asInitWithOrphan() throws {
        let out = makeTemporaryDirectory("orphan")
        defer { removeTree(out) }
        let marker = out + "/marker"
        let r = run(asInitArgv(["--no-namespace"], ["orphan", marker, "0.5"]), timeout: 60)
        #expect(r.status == 0 && r.stdout.contains("app done"), "\(r)")
        // PID 1 returned only after the orphan, which read the mount, had finished.
        #expect((try? String(contentsOfFile: marker, encoding: .utf8)) == "from the mount\n", "\(r)")
    }

    /// The mount's options, type, source and super options, as the app's `mountline` prints them.
    func mountLine(_ mountpoint: String) -> String? {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        for line in info.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            if f.count > 6, f[4] == mountpoint, let dash = f.firstIndex(of: "-") {
                return ([f[5]] + f[(dash + 1)...]).joined(separator: " ")
            }
        }
        return nil
    }

    @Test("the same -o options make the same kernel mount in every mode: mount, run, run --no-namespace")
    func oneComposition() throws {
        // uid= used to become the kernel's user_id in namespace mode (the app, root, then got
        // EACCES), and the libfuse options were dropped there.
        let options = "noexec,noatime,allow_other,uid=65534,gid=65534,umask=027,max_read=65536"
        let expected = try withMount(app, options: [options]) { try #require(mountLine($0)) }
        for word in ["noexec", "noatime", "allow_other", "user_id=\(getuid())", "max_read=65536", "fuse.pyzfs \(app) "] {
            #expect(expected.contains(word), "\(word) missing in \(expected)")
        }
        for flags in [[], ["--no-namespace"]] {
            let r = run([pyzfs, "run"] + flags + ["-o", options, app, "--", "mountline"])
            #expect(r.status == 0, "\(flags): \(r)")
            let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("mountline ") }?.dropFirst(10)
            #expect(line.map(String.init) == expected, "\(flags): \(r.stdout)")
        }
    }

    @Test("interpreter and archive failures: 127, 126, 125, with one line")
    func ownFailures() {
        let missing = run([pyzfs, "run", "--python", "/nonexistent/python3", app])
        #expect(missing.status == 127 && missing.stderr.contains("no interpreter found: /nonexistent/python3"), "\(missing)")
        let dir = makeTemporaryDirectory("python")
        defer { removeTree(dir) }
        FileManager.default.createFile(atPath: dir + "/python3", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o644])
        let notExecutable = run([pyzfs, "run", "--python", dir + "/python3", app])
        #expect(notExecutable.status == 126 && notExecutable.stderr.contains("cannot be executed"), "\(notExecutable)")
        let noArchive = run([pyzfs, "run", "/nonexistent.pyz"])
        #expect(noArchive.status == 125 && noArchive.stderr.contains("cannot open archive /nonexistent.pyz"), "\(noArchive)")
        let badFallback = run([pyzfs, "run", "--fallback", "maybe", app])
        #expect(badFallback.status == 125, "\(badFallback)")
        let blockDevice = run([pyzfs, "run", "-o", "blkdev", app])
        #expect(blockDevice.status == 125 && blockDevice.stderr.contains("-o blkdev needs a block device")
                && blockDevice.stderr.contains("--no-namespace"), "\(blockDevice)")
    }

    /// Runs `pyzfs run ARGS` in a private mount namespace whose /dev is an empty tmpfs.
    func withoutFUSE(_ args: [String], environment: [String: String] = [:], prelude: String = "", timeout: Double = 300) -> RunResult {
        run(withoutFUSECommand(args, prelude: prelude), environment: environment, timeout: timeout)
    }

    /// The command line of `withoutFUSE`, run by `user` (a setpriv command, say) when given.
    func withoutFUSECommand(_ args: [String], prelude: String = "", user: [String] = []) -> [String] {
        inPrivateNamespace("\(prelude) \(hideFUSE) && exec \"$@\"", user + [pyzfs, "run"] + args)
    }

    @Test("without /dev/fuse: one line that says what would fix it; --fallback=extract runs from a cache",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse in a private mount namespace"))
    func fallback() throws {
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        let refused = withoutFUSE([app, "--", "exit", "3"], environment: ["XDG_CACHE_HOME": cache])
        #expect(refused.status == 125, "\(refused)")
        #expect(refused.stderr.contains("there is no /dev/fuse") && refused.stderr.contains("--device /dev/fuse")
                && refused.stderr.contains("--fallback=extract"), "\(refused)")
        let extracted = withoutFUSE(["--fallback=extract", app, "--", "print", "x"], environment: ["XDG_CACHE_HOME": cache])
        #expect(extracted.status == 0, "\(extracted)")
        #expect(extracted.stdout.contains("mount \(cache)/pyzfs/"), "\(extracted)")
        let viaEnvironment = withoutFUSE([app, "--", "exit", "4"], environment: ["XDG_CACHE_HOME": cache, "PYZFS_FALLBACK": "extract"])
        #expect(viaEnvironment.status == 4, "\(viaEnvironment)")
        // One entry, the traversal member nowhere.
        let entries = try FileManager.default.contentsOfDirectory(atPath: cache + "/pyzfs").filter { !$0.contains(".") }
        #expect(entries.count == 1, "\(entries)")
        #expect(!FileManager.default.fileExists(atPath: cache + "/escape.txt"))
        #expect(!FileManager.default.fileExists(atPath: cache + "/pyzfs/escape.txt"))
        #expect(FileManager.default.fileExists(atPath: cache + "/pyzfs/\(entries[0])/app/data.txt"))
        let list = run([pyzfs, "cache", "list"], environment: ["XDG_CACHE_HOME": cache])
        #expect(list.stdout.contains(entries[0]) && list.stdout.contains(app), "\(list)")
        let clean = run([pyzfs, "cache", "clean"], environment: ["XDG_CACHE_HOME": cache])
        #expect(clean.stdout.contains("removed 1 cached app"), "\(clean)")
    }

    @Test("--fallback=extract does not stand in for a refused option: -o blkdev fails in every mode, and nothing is extracted",
          arguments: [[], ["--no-namespace"]])
    func fallbackOnlyWithoutFUSE(flags: [String]) throws {
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        let r = run([pyzfs, "run", "--fallback=extract"] + flags + ["-o", "blkdev", app, "--", "exit", "0"],
                    environment: ["XDG_CACHE_HOME": cache, "PYZFS_NO_CHECK": "1"], timeout: 60)
        #expect(r.status == 125 && r.stderr.contains("cannot mount") && !r.stderr.contains("running from an extracted copy"), "\(flags): \(r)")
        #expect(!FileManager.default.fileExists(atPath: cache + "/pyzfs"), "\(flags): extracted into \(cacheNames(cache))")
    }

    @Test("-o auto_unmount is refused by run in every mode, at once (fusermount3's watchdog kept --no-namespace from returning)",
          arguments: [[], ["--no-namespace"], ["--fallback=extract"]])
    func autoUnmountRefused(flags: [String]) {
        let r = run([pyzfs, "run"] + flags + ["-o", "auto_unmount", app, "--", "exit", "0"], timeout: 30)
        #expect(r.status == 125 && r.stderr.contains("-o auto_unmount is not for pyzfs run"), "\(flags): \(r)")
    }

    @Test("options libfuse 3.14 refuses are refused before anything is mounted, alike in every mode", arguments: [[], ["--no-namespace"]])
    func libfuseRefusalsAtParse(flags: [String]) {
        for option in ["relatime", "max_threads=4"] {
            let r = run([pyzfs, "run"] + flags + ["-o", option, app, "--", "exit", "0"], timeout: 60)
            #expect(r.status == 125 && r.stderr.contains("is refused by libfuse 3.14's session")
                    && !r.stderr.contains("the server exited before the mount was ready"), "\(flags) \(option): \(r)")
        }
    }

    @Test("a refused namespace mount leaves the fallback in the caller's namespaces",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse in a private mount namespace"))
    func fallbackInCallersNamespace() throws {
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        // The caller (the shell in the private namespace without /dev/fuse) says where it is.
        let r = run(inPrivateNamespace("\(hideFUSE) && echo ns $(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/user) && exec \"$@\"",
                                       [pyzfs, "run", "--fallback=extract", app, "--", "ns"]), environment: ["XDG_CACHE_HOME": cache])
        let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("ns ") }
        #expect(r.status == 0 && lines.count == 2, "\(r)")
        #expect(lines.first == lines.last, "the app ran in other namespaces than its caller: \(lines)")
    }

    @Test("the restricted Pod of docs/deployment.md: read-only root, no FUSE, a non-root user, an emptyDir cache",
          .enabled(if: getuid() == 0, "needs root for a private mount namespace"))
    func restrictedPod() throws {
        let dir = makeTemporaryDirectory("pod")
        defer { removeTree(dir) }
        chmod(dir, 0o755)
        try FileManager.default.copyItem(atPath: app, toPath: dir + "/app.pyz")
        chmod(dir + "/app.pyz", 0o644)
        try FileManager.default.createDirectory(atPath: dir + "/cache", withIntermediateDirectories: false)
        let script = """
        mount -t tmpfs -o mode=0777 none "$1/cache" && \(hideFUSE) \\
          && mount -o remount,bind,ro / && mount --rbind /tmp /tmp && mount -o remount,bind,ro /tmp || exit 90
        for start in first second; do
          setpriv --reuid=10001 --regid=10001 --clear-groups env XDG_CACHE_HOME="$1/cache" HOME=/nonexistent \\
            "$2" run --fallback=extract "$1/app.pyz" -- print $start; echo "status $?"
        done
        """
        let r = run(inPrivateNamespace(script, [dir, pyzfs], pidNamespace: true), timeout: 120)
        #expect(r.stdout.components(separatedBy: "status 0").count == 3, "\(r)")
        #expect(r.stdout.contains("args ['first']") && r.stdout.contains("args ['second']") && r.stdout.contains("mount \(dir)/cache/pyzfs/"), "\(r)")
    }

    @Test("two first starts at once extract once, both run", .enabled(if: getuid() == 0, "needs root to hide /dev/fuse"))
    func concurrentFirstStarts() throws {
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        let script = "\(hideFUSE) && { \"$1\" run --fallback=extract \"$2\" -- exit 5 & \"$1\" run --fallback=extract \"$2\" -- exit 6; echo second=$?; wait $!; echo first=$?; }"
        let r = run(inPrivateNamespace(script, [pyzfs, app]), environment: ["XDG_CACHE_HOME": cache])
        #expect(r.stdout.contains("second=6") && r.stdout.contains("first=5"), "\(r)")
        let entries = try FileManager.default.contentsOfDirectory(atPath: cache + "/pyzfs")
        #expect(entries.filter { !$0.contains(".") }.count == 1, "\(entries)")
        #expect(!entries.contains { $0.contains(".tmp-") }, "\(entries)")
    }

    @Test("a read-only cache home falls back to XDG_RUNTIME_DIR and says so", .enabled(if: getuid() == 0, "needs root for a read-only bind mount"))
    func readOnlyHome() throws {
        let home = makeTemporaryDirectory("home"), runtime = makeTemporaryDirectory("runtime")
        defer { removeTree(home); removeTree(runtime) }
        let r = withoutFUSE(["--fallback=extract", app, "--", "exit", "0"],
                            environment: ["XDG_CACHE_HOME": home, "XDG_RUNTIME_DIR": runtime],
                            prelude: "mount --bind \(home) \(home) && mount -o remount,bind,ro \(home) &&")
        #expect(r.status == 0, "\(r)")
        #expect(r.stderr.contains("$XDG_CACHE_HOME is not writable") && r.stderr.contains("using \(runtime)/pyzfs"), "\(r)")
    }

    @Test("the server's warnings reach the caller's stderr, where docker logs and journald look", arguments: [false, true])
    func serverWarningsOnStderr(noNamespace: Bool) throws {
        let dir = makeTemporaryDirectory("warnings")
        defer { removeTree(dir) }
        let archive = dir + "/app.pyz"
        // bad.txt's stored bytes changed after its CRC was written: the server logs the failure.
        let made = run(["python3", "-c", """
            import sys, zipfile
            with zipfile.ZipFile(sys.argv[1], "w") as z:
                z.writestr("__main__.py", "import os\\ntry:\\n    open(os.path.dirname(__file__) + '/bad.txt').read()\\nexcept OSError as e:\\n    print('app saw', e.strerror)\\n")
                z.writestr("bad.txt", "x" * 1000)
            data = bytearray(open(sys.argv[1], "rb").read())
            i = data.index(b"x" * 1000)
            data[i] = ord("y")
            open(sys.argv[1], "wb").write(data)
            """, archive])
        try #require(made.status == 0, "\(made)")
        let r = run([pyzfs, "run"] + (noNamespace ? ["--no-namespace"] : []) + [archive])
        #expect(r.status == 0 && r.stdout.contains("app saw Input/output error"), "\(r)")
        #expect(r.stderr.contains("pyzfs: error: cannot read bad.txt: "), "\(r)")
    }

    @Test("a read-only /tmp (docker run --read-only): TMPDIR, then XDG_RUNTIME_DIR; without either one line that says so",
          .enabled(if: getuid() == 0, "needs root for a read-only bind mount"), arguments: [false, true])
    func readOnlyTmp(noNamespace: Bool) throws {
        let scratch = makeTemporaryDirectory("scratch")
        defer { removeTree(scratch) }
        // In a private namespace: a tmpfs on `scratch`, then all of /tmp read-only around it.
        func withReadOnlyTmp(_ environment: [String: String], _ args: [String]) -> RunResult {
            let script = "mount -t tmpfs none \"$1\" && mount --rbind /tmp /tmp && mount -o remount,bind,ro /tmp && shift && exec \"$@\""
            let flags = noNamespace ? ["--no-namespace"] : []
            return run(inPrivateNamespace(script, [scratch, pyzfs, "run"] + flags + [app, "--"] + args),
                       environment: ["TMPDIR": "", "XDG_RUNTIME_DIR": ""].merging(environment) { $1 })
        }
        for variable in ["TMPDIR", "XDG_RUNTIME_DIR"] {
            let r = withReadOnlyTmp([variable: scratch], ["print"])
            #expect(r.status == 0 && r.stdout.contains("mount \(scratch)/pyzfs-run-"), "\(variable): \(r)")
        }
        // This /tmp has files in it: namespace mode may not cover it with a tmpfs (noScratchPlace).
        let refused = withReadOnlyTmp([:], ["print"])
        #expect(refused.status == 125, "\(refused)")
        #expect(refused.stderr.contains("no writable directory for the mount point (tried /tmp)") && refused.stderr.contains("set TMPDIR"),
                "\(refused)")
        #expect(!refused.stderr.contains("server") && refused.stderr.split(separator: "\n").filter { $0.hasPrefix("pyzfs: ") && !$0.contains("warning") }.count == 1,
                "\(refused)")
    }

    @Test("no writable scratch place (docker run --read-only, no --tmpfs): the mount point in a private read-only tmpfs over the empty TMPDIR or /tmp, seen as before; --no-namespace still refuses; nothing left",
          .enabled(if: getuid() == 0, "needs root for a private mount namespace"), arguments: [false, true])
    func noScratchPlace(asInit: Bool) throws {
        let tag = "noscratch-\(getpid())-\(asInit)"
        // As PID 1 of a new PID namespace, as a container's entrypoint is.
        let start = (asInit ? "unshare --pid --fork --kill-child --mount-proc " : "") + "\"$1\" run"
        // The app is copied out of /tmp, which is then empty and read-only; `left` counts the
        // pyzfs mounts in this namespace beyond those it was made with (other tests' mounts,
        // copied in by unshare), and the entries written in TMPDIR.
        let script = """
        mount -t tmpfs none /mnt && cp "$2" /mnt/app.pyz && \(emptyReadOnlyTmp) || exit 90
        \(countPyzfsMounts)
        left() { echo "left $(pyzfs_mounts) $(ls -A /tmp/d 2>/dev/null | wc -l)"; }
        \(start) /mnt/app.pyz -- scratch \(tag); echo "status $?"; left
        \(start) --no-namespace /mnt/app.pyz -- scratch \(tag); echo "status $?"; left
        mount -o remount,rw /tmp && mkdir /tmp/d /tmp/f && touch /tmp/f/kept && mount -o remount,ro /tmp || exit 91
        TMPDIR=/tmp/d \(start) /mnt/app.pyz -- scratch \(tag); echo "status $?"; left
        TMPDIR=/tmp/f \(start) /mnt/app.pyz -- scratch \(tag); echo "status $?"; left
        """
        let r = run(inPrivateNamespace(script, [pyzfs, app]), environment: ["TMPDIR": "", "XDG_RUNTIME_DIR": ""], timeout: 120)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 10, "\(r)")
        // /tmp: empty and read-only for the app as for its caller, but for the mount directory.
        #expect(lines[0].hasPrefix("scratch /tmp ['pyzfs-run-") && lines[0].hasSuffix("'] True data from the mount")
                && lines[0].contains("'] True tmp ['pyzfs-run-"), "\(r)")
        #expect(lines[1...2] == ["status 0", "left 0 0"], "\(r)")
        // --no-namespace needs a real place: the same one line as before.
        #expect(lines[3...4] == ["status 125", "left 0 0"], "\(r)")
        #expect(r.stderr.contains("no writable directory for the mount point (tried /tmp); set TMPDIR"), "\(r)")
        // An empty read-only TMPDIR is covered first; /tmp is untouched.
        #expect(lines[5].hasPrefix("scratch /tmp/d ['pyzfs-run-") && lines[5].hasSuffix("'] True tmp ['d', 'f'] True data from the mount"), "\(r)")
        #expect(lines[6...7] == ["status 0", "left 0 0"], "\(r)")
        // A place with files in it is never covered: with no empty one the refusal stands.
        #expect(lines[8...9] == ["status 125", "left 0 0"], "\(r)")
        #expect(r.stderr.contains("no writable directory for the mount point (tried /tmp/f, /tmp)"), "\(r)")
        #expect(eventually { processes(matching: "scratch \(tag)").isEmpty }, "a server of the runs is left")
    }
}
