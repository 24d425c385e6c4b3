import Foundation
import PyzfsTestSupport
import Testing

/// shiv and pex archives built with the real tools (Tests/fixtures/make_shiv_pex_apps.py) run in
/// place by `pyzfs run`: the same output and exit status as `python3 ARCHIVE`, which extracts
/// them, and nothing written in HOME, SHIV_ROOT, PEX_ROOT, TMPDIR or /tmp.
@Suite("shiv and pex archives run in place", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct ShivPexTests {
    let pyzfs = TestEnvironment.binary

    /// What a run printed and left behind.
    struct Outcome {
        let result: RunResult
        /// Every path created under the run's HOME, SHIV_ROOT, PEX_ROOT and TMPDIR.
        let written: [String]
        /// New entries of /tmp named like shiv's or pex's caches.
        let writtenInTmp: [String]

        /// stdout without the app's `location:` line, which differs by design.
        var output: String { result.stdout.split(separator: "\n").filter { !$0.hasPrefix("location:") }.joined(separator: "\n") }
        var location: String? {
            result.stdout.split(separator: "\n").first { $0.hasPrefix("location: ") }.map { String($0.dropFirst("location: ".count)) }
        }
    }

    /// Runs `argv` with HOME, SHIV_ROOT, PEX_ROOT and TMPDIR pointing at fresh empty directories,
    /// and reports what appeared in them and in /tmp.
    func isolated(_ argv: [String], environment: [String: String] = [:]) -> Outcome {
        let scratch = makeTemporaryDirectory("isolated")
        defer { removeTree(scratch) }
        let names = ["home", "shiv-root", "pex-root", "tmp"]
        for name in names { mkdir(scratch + "/" + name, 0o755) }
        var env = environment
        env["HOME"] = scratch + "/home"
        env["SHIV_ROOT"] = scratch + "/shiv-root"
        env["PEX_ROOT"] = scratch + "/pex-root"
        env["TMPDIR"] = scratch + "/tmp"
        env["ZFSAPP_ROOTS"] = "\(scratch)/shiv-root:\(scratch)/pex-root"  // how the app names the tools' directories
        env["PYZFS_NO_CHECK"] = "1"
        let before = Set(cacheLikeEntriesOfTmp())
        let result = run(argv, environment: env, timeout: 120)
        // pyzfs run's mount directory (in TMPDIR) is removed by its server once the app is gone.
        _ = eventually { !((try? FileManager.default.contentsOfDirectory(atPath: scratch + "/tmp")) ?? []).contains { $0.hasPrefix("pyzfs-run-") } }
        let written = names.flatMap { name -> [String] in
            let enumerator = FileManager.default.enumerator(atPath: scratch + "/" + name)
            return (enumerator?.allObjects as? [String] ?? []).map { name + "/" + $0 }
        }
        return Outcome(result: result, written: written, writtenInTmp: cacheLikeEntriesOfTmp().filter { !before.contains($0) })
    }

    /// Entries of /tmp named like shiv's or pex's (pex falls back to /tmp/pex-root.*); the test
    /// harness's own directories (pyzfs-*) aside.
    func cacheLikeEntriesOfTmp() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        return entries.filter { name in
            let lower = name.lowercased()
            return !lower.hasPrefix("pyzfs-") && (lower.contains("shiv") || lower.contains("pex"))
        }
    }

    /// `python3 ARCHIVE ARGS` (the tool extracts it) and `pyzfs run ARCHIVE -- ARGS`, compared.
    func compare(_ name: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (direct: Outcome, mounted: Outcome) {
        let archive = try await ShivPexApps.archive(name)
        let direct = isolated([TestEnvironment.python, archive] + arguments, environment: environment)
        let mounted = isolated([pyzfs, "run", archive, "--"] + arguments, environment: environment)
        #expect(mounted.output == direct.output, "\(name): pyzfs run printed\n\(mounted.result)\n\npython3 \(name) printed\n\(direct.result)")
        #expect(mounted.result.status == direct.result.status, "\(name): exit \(mounted.result.status), python3 gave \(direct.result.status)\n\(mounted.result)")
        #expect(mounted.written.isEmpty, "\(name): pyzfs run wrote \(mounted.written)")
        #expect(mounted.writtenInTmp.isEmpty, "\(name): pyzfs run left \(mounted.writtenInTmp) in /tmp")
        return (direct, mounted)
    }

    @Test("shiv and pex install from PyPI and build the app (if pip cannot, the tests that need them are cancelled with its reason)")
    func tools() async throws {
        let versions = try String(contentsOfFile: try await ShivPexApps.archive("versions.txt"), encoding: .utf8)
        #expect(versions.hasPrefix("shiv ") && versions.contains(" pex "), "\(versions)")
    }

    @Test("each way of starting the app: output and exit status of python3 ARCHIVE, the extension from the mount, nothing written",
          arguments: ["entry.shiv", "console.shiv", "script.shiv", "preamble.shiv", "entry.pex", "module.pex", "console.pex", "script.pex",
                      "inject.pex", "prefer.pex", "shboot.pex", "pure-wheelfiles.pex"])
    func startsLikeTheTool(name: String) async throws {
        let (direct, mounted) = try await compare(name, ["a", "b c", "--exit", "7"])
        // The tool really extracted (so the comparison means something).
        #expect(!direct.written.isEmpty, "python3 \(name) wrote nothing: \(direct.result)")
        if name == "pure-wheelfiles.pex" {  // zfsdep:hello, imported from the .whl file on the mount
            #expect(mounted.result.status == 4 && mounted.result.stdout.contains("hello from zfsdep"), "\(mounted.result)")
            return
        }
        #expect(mounted.result.status == 7 && mounted.result.stdout.contains("native: 5"), "\(mounted.result)")
        if name == "preamble.shiv" {  // run as shiv runs it, before the app, which sees what it set
            #expect(mounted.result.stdout.hasPrefix("preamble: preamble.shiv Environment zfsapp.cli:main site-packages ['preamble.py', 'a', 'b c', '--exit', '7'] __main__ preamble.py\n"), "\(mounted.result)")
            #expect(mounted.result.stdout.contains("'ZFSAPP_INJECTED': 'from the preamble'"), "\(mounted.result)")
        }
        let location = try #require(mounted.location, "\(mounted.result)")
        #expect(location.contains("/pyzfs-run-"), "the extension was loaded from \(location), not from the mount")
    }

    @Test("a --venv pex runs from the mount as a plain pex does, isolated (-I) as pex runs its venv (pex itself would build a venv in PEX_ROOT)")
    func venvPex() async throws {
        let archive = try await ShivPexApps.archive("venv.pex")
        let mounted = isolated([pyzfs, "run", archive, "--", "--exit", "5"])
        #expect(mounted.result.status == 5, "\(mounted.result)")
        for line in ["argv: ['venv.pex', '--exit', '5']", "native: 5", "isolated: 1"] {
            #expect(mounted.result.stdout.contains(line), "missing \(line) in \(mounted.result)")
        }
        // A venv's site-packages is processed twice at start-up (site.venv, then
        // site.addsitepackages), and its .pth files run twice: in pex's venv as in pyzfs's.
        let direct = isolated([TestEnvironment.python, archive])
        let dependency = { (o: Outcome) in o.result.stdout.split(separator: "\n").first { $0.hasPrefix("dependency:") } }
        #expect(dependency(mounted) != nil && dependency(mounted) == dependency(direct), "\(mounted.result)\n\(direct.result)")
        #expect(mounted.written.isEmpty && mounted.writtenInTmp.isEmpty, "\(mounted.written) \(mounted.writtenInTmp)")
    }

    @Test("a --venv pex sees a venv as under python3 ARCHIVE: sys.executable, sys.prefix and the scripts directory in it, where its console scripts and programs run, isolated (-I)")
    func venvView() async throws {
        let archive = try await ShivPexApps.archive("probe-venv.pex")
        let direct = isolated([TestEnvironment.python, archive])
        let mounted = isolated([pyzfs, "run", archive, "--"])
        func view(_ outcome: Outcome) throws -> [String: Any] {
            let line = outcome.result.stdout.split(separator: "\n").last.map(String.init) ?? ""
            return try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(outcome.result)")
        }
        let pex = try view(direct), pyzfs = try view(mounted)
        for (name, v) in [("python3", pex), ("pyzfs run", pyzfs)] {
            let prefix = v["prefix"] as? String ?? "?"
            #expect(v["executable"] as? String == prefix + "/bin/python" && v["scripts"] as? String == prefix + "/bin", "\(name): \(v)")
            #expect(prefix != v["base_prefix"] as? String && v["venv_config"] as? Bool == true, "\(name): not a venv: \(v)")
        }
        let prefix = pyzfs["prefix"] as? String ?? ""
        #expect(prefix.contains("/pyzfs-run-"), "the venv is not beside the mount: \(prefix)")
        // The same scripts, which print the same (the venv's path and python's name aside).
        func scripts(_ v: [String: Any]) -> [String] { (v["listing"] as? [String] ?? []).filter { $0.hasPrefix("zfsprobe") } }
        #expect(scripts(pyzfs) == ["zfsprobe", "zfsprobe-hello", "zfsprobe-tool"] && scripts(pyzfs) == scripts(pex), "\(pyzfs) \(pex)")
        func said(_ v: [String: Any], _ key: String) -> String {
            // pex's scripts start the venv's python3.11 through a shorter link to the venv.
            (v[key] as? String ?? "\(v[key] ?? "nothing")").replacingOccurrences(of: #"/\S*/bin/python[0-9.]*"#, with: "VENV/bin/python", options: .regularExpression)
        }
        #expect(pyzfs["hello"] as? String == "hello ['an argument'] from \(prefix)/bin/python isolated 1 module zfsprobe", "\(pyzfs)")
        #expect(said(pyzfs, "hello") == said(pex, "hello"), "\(pyzfs) \(pex)")
        #expect(said(pyzfs, "tool") == "tool ran an argument" && said(pex, "tool") == said(pyzfs, "tool"), "\(pyzfs) \(pex)")
        #expect(pyzfs["isolated"] as? Int == 1 && pex["isolated"] as? Int == 1 && pyzfs["base_prefix"] as? String == pex["base_prefix"] as? String, "\(pyzfs) \(pex)")
        #expect(mounted.result.status == 0 && direct.result.status == 0, "\(mounted.result) \(direct.result)")
        #expect(!direct.written.isEmpty && mounted.written.isEmpty && mounted.writtenInTmp.isEmpty, "\(mounted.written) \(mounted.writtenInTmp)")
    }

    @Test("the app's exit status passes through", arguments: ["entry.shiv", "entry.pex"], [0, 1, 255])
    func exitStatus(name: String, code: Int) async throws {
        let archive = try await ShivPexApps.archive(name)
        let r = run([pyzfs, "run", archive, "--", "--exit", "\(code)"], environment: ["PYZFS_NO_CHECK": "1"])
        #expect(r.status == Int32(code), "\(r)")
    }

    @Test("the tools' environment: overrides of the script or entry point, inherit_path and PYTHONPATH, extra paths, interpreter mode",
          arguments: [
              ("entry.shiv", "SHIV_CONSOLE_SCRIPT=zfsdep-hello"),
              ("entry.shiv", "SHIV_ENTRY_POINT=zfsdep:hello"),
              ("entry.shiv", "SHIV_MODULE=zfsdep.hello"),
              ("script.shiv", "SHIV_CONSOLE_SCRIPT=zfsapp-cli"),
              ("entry.shiv", "SHIV_INTERPRETER=1"),
              ("entry.shiv", "SHIV_EXTEND_PYTHONPATH=1"),
              ("entry.shiv", "SHIV_PREPEND_PYTHONPATH=/nonexistent/first"),
              ("entry.pex", "PEX_SCRIPT=zfsdep-hello"),
              ("entry.pex", "PEX_SCRIPT=zfsapp-tool"),
              ("entry.pex", "PEX_MODULE=zfsapp"),
              ("inject.pex", "PEX_MODULE=zfsdep:hello"),
              ("entry.pex", "PEX_INHERIT_PATH=fallback"),
              ("entry.pex", "PEX_INHERIT_PATH=prefer PYTHONPATH=/nonexistent/p"),
              ("prefer.pex", "PYTHONPATH=/nonexistent/p"),
              ("entry.pex", "PYTHONPATH=/nonexistent/p PEX_EXTRA_SYS_PATH=/nonexistent/a:/nonexistent/b"),
              ("entry.pex", "PEX_INTERPRETER=1"),
          ])
    func overrides(name: String, settings: String) async throws {
        var environment: [String: String] = [:]
        for setting in settings.split(separator: " ") {
            environment[String(setting.prefix { $0 != "=" })] = String(setting.drop { $0 != "=" }.dropFirst())
        }
        let arguments = settings.contains("_INTERPRETER=")
            ? ["-c", "import sys, zfsdep; from zfsapp import _native; print(sys.argv, zfsdep.VALUE, _native.add(1, 2), sys.path[0] == '')", "x"]
            : ["a", "--exit", "3"]
        let (_, mounted) = try await compare(name, arguments, environment: environment)
        #expect(!mounted.result.stdout.isEmpty, "\(mounted.result)")
    }

    @Test("pyzfs mount of a shiv or pex says that pyzfs run starts it; of a plain zipapp, nothing",
          arguments: ["entry.shiv", "entry.pex", "zipapp"])
    func mountHint(name: String) async throws {
        let archive = name == "zipapp" ? Fixtures.shared.archive("zipapp") : try await ShivPexApps.archive(name)
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        let r = run([pyzfs, "mount", archive, mnt])
        #expect(r.status == 0, "\(r)")
        let hints = r.stderr.split(separator: "\n").filter { $0.contains("pyzfs run") }
        if name == "zipapp" {
            #expect(hints.isEmpty, "\(r)")
        } else {
            let kind = name.hasSuffix(".shiv") ? "shiv" : "pex"
            #expect(hints == ["pyzfs: \(archive) is a \(kind) app: start it with 'pyzfs run \(archive)' (a mount alone does not run its bootstrap)"], "\(r)")
        }
    }

    @Test("malformed metadata, missing scripts and unloadable dependencies: exit 125 and one line, no mount left")
    func refusals() throws {
        let directory = makeTemporaryDirectory("refusals")
        defer { removeTree(directory) }
        func archive(_ name: String, _ members: [(String, String)]) -> String {
            var writer = ZipWriter()
            writer.prefix = Array("#!/usr/bin/env python3\n".utf8)
            for (member, text) in members { writer.add(member, text) }
            let path = directory + "/" + name
            _ = FileManager.default.createFile(atPath: path, contents: Data(writer.bytes()))
            return path
        }
        let shivBase = [("_bootstrap/__init__.py", ""), ("site-packages/x.py", ""), ("__main__.py", "")]
        let cases: [(String, [(String, String)], String, [String: String])] = [
            ("json.shiv", [("environment.json", "{")] + shivBase, "environment.json is malformed (not JSON)", [:]),
            ("type.shiv", [("environment.json", #"{"entry_point": 3}"#)] + shivBase, "environment.json is malformed (entry_point: expected a string)", [:]),
            ("script.shiv", [("environment.json", #"{"script": "nope"}"#)] + shivBase, "it has no script nope", [:]),
            ("object.pex", [("PEX-INFO", "[]"), ("__main__.py", "")], "PEX-INFO is malformed (expected an object)", [:]),
            ("missing.pex", [("PEX-INFO", #"{"distributions": {"a-1.0-py3-none-any.whl": "0"}}"#), ("__main__.py", "")],
             "PEX-INFO lists a-1.0-py3-none-any.whl, which is not in .deps/", [:]),
            ("script.pex", [("PEX-INFO", #"{"entry_point": "x:y"}"#), ("__main__.py", "")], "it has no script nope", ["PEX_SCRIPT": "nope"]),
            ("inherit.pex", [("PEX-INFO", #"{"inherit_path": "sometimes"}"#), ("__main__.py", "")], "unknown inherit_path 'sometimes'", [:]),
            ("python.pex", [("PEX-INFO", #"{"entry_point": "x:y", "interpreter_constraints": ["CPython<3.0"]}"#), ("__main__.py", "")],
             "does not meet this pex's interpreter constraints (CPython<3.0)", ["PEX_PYTHON_PATH": "/nonexistent"]),
        ]
        for (name, members, message, environment) in cases {
            expectRefusal(archive(name, members), message, environment: environment)
        }
    }

    /// A shiv-shaped archive with a `.py` preamble and `build_id`, written by hand (no PyPI).
    func preambleShiv(_ path: String, buildId: String) {
        var writer = ZipWriter()
        writer.prefix = Array("#!/usr/bin/env python3\n".utf8)
        let environment = #"{"build_id": "\#(buildId)", "preamble": "pre.py", "entry_point": "m:main"}"#
        for (member, text) in [("environment.json", environment), ("__main__.py", ""), ("_bootstrap/__init__.py", ""),
                               ("_bootstrap/environment.py", "class Environment:\n    from_json = staticmethod(lambda text: text)\n"),
                               ("site-packages/m.py", "def main():\n    print('main ran')\n"),
                               ("site-packages/bin/pre.py", "print('preamble in', site_packages.parent.name)\n")] {
            writer.add(member, text)
        }
        _ = FileManager.default.createFile(atPath: path, contents: Data(writer.bytes()))
    }

    @Test("a preamble's mount directory (NAME_BUILDID in a directory of its own) goes whole after the run, even for an archive named pyzfs-run-*",
          arguments: [[], ["--no-namespace"]])
    func preambleDirectoriesRemoved(flags: [String]) throws {
        let directory = makeTemporaryDirectory("preamble")
        defer { removeTree(directory) }
        let archive = directory + "/pyzfs-run-app.shiv"
        preambleShiv(archive, buildId: "b1")
        mkdir(directory + "/tmp", 0o700)
        let r = run([pyzfs, "run"] + flags + [archive], environment: ["TMPDIR": directory + "/tmp", "PYZFS_NO_CHECK": "1"], timeout: 60)
        #expect(r.status == 0 && r.stdout.contains("preamble in pyzfs-run-app.shiv_b1") && r.stdout.contains("main ran"), "\(r)")
        // The server removes them once the app is gone (after the run returns in namespace mode).
        let left = { (try? FileManager.default.contentsOfDirectory(atPath: directory + "/tmp")) ?? [] }
        #expect(eventually { left().isEmpty }, "left in TMPDIR: \(left())")
    }

    @Test("a shiv build_id that cannot name a directory (a '/', over 255 bytes) is a bad archive: 125 and why, not a scratch place",
          arguments: ["a/b", String(repeating: "x", count: 250)])
    func badBuildId(buildId: String) {
        let directory = makeTemporaryDirectory("buildid")
        defer { removeTree(directory) }
        preambleShiv(directory + "/app.shiv", buildId: buildId)
        expectRefusal(directory + "/app.shiv", "cannot name shiv's extraction directory")
    }

    @Test("a pex built for several platforms uses the wheel pex would pick here: not macOS, not musl, not a newer glibc")
    func wheelPerPlatform() throws {
        let directory = makeTemporaryDirectory("platforms")
        defer { removeTree(directory) }
        let facts = run([TestEnvironment.python, "-c", "import os, platform, sys; print('cp%d%d' % sys.version_info[:2], platform.machine(), os.confstr('CS_GNU_LIBC_VERSION'))"])
        let words = facts.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        try #require(words.count == 4 && words[2] == "glibc", "needs a glibc system: \(facts)")
        let (cp, machine) = (words[0], words[1])
        let platforms = ["macosx_11_0_\(machine)", "musllinux_1_1_\(machine)", "manylinux_2_99_\(machine)",
                         "manylinux_2_17_\(machine).manylinux2014_\(machine)", "linux_\(machine)"]
        let wheels = platforms.map { "zfsx-1.0-\(cp)-\(cp)-\($0).whl" }
        var writer = ZipWriter()
        writer.prefix = Array("#!/usr/bin/env python3\n".utf8)
        let listed = wheels.map { "\"\($0)\": \"0\"" }.joined(separator: ", ")
        writer.add("PEX-INFO", #"{"entry_point": "zfsx:main", "distributions": {\#(listed)}}"#)
        writer.add("__main__.py", "")
        for (wheel, platform) in zip(wheels, platforms) {
            writer.add(".deps/\(wheel)/zfsx.py", "def main():\n    print('wheel \(platform)')\n")
        }
        let archive = directory + "/platforms.pex"
        _ = FileManager.default.createFile(atPath: archive, contents: Data(writer.bytes()))
        let r = run([pyzfs, "run", archive], environment: ["PYZFS_NO_CHECK": "1"])
        #expect(r.status == 0 && r.stdout == "wheel \(platforms[3])\n", "\(r)")
    }

    @Test("a pex whose wheels are kept zipped inside (--no-pre-install-wheels) with native code: exit 125 and why")
    func zippedNativeWheels() async throws {
        expectRefusal(try await ShivPexApps.archive("wheelfiles.pex"), "whose native code cannot be loaded in place")
    }

    /// `pyzfs run ARCHIVE` exits 125 with one line that contains `message`, and leaves no mount.
    func expectRefusal(_ archive: String, _ message: String, environment: [String: String] = [:],
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let r = run([pyzfs, "run", archive], environment: environment.merging(["PYZFS_NO_CHECK": "1"]) { a, _ in a })
        let lines = r.stderr.split(separator: "\n")
        #expect(r.status == 125 && lines.count == 1 && lines[0].hasPrefix("pyzfs: ") && lines[0].contains(message),
                "\(archive): \(r)", sourceLocation: sourceLocation)
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        #expect(!mounts.contains(archive), "a mount of \(archive) was left behind", sourceLocation: sourceLocation)
    }
}

/// The archives of Tests/fixtures/make_shiv_pex_apps.py, built once per test process (a venv with
/// shiv and pex from PyPI, a wheel with a C extension, the tools run offline) on a thread of its
/// own, so tests waiting for it hold none of the test runner's threads.
enum ShivPexApps {
    enum Built: Sendable {
        case directory(String)
        case unavailable(String)
        case failed(String)
    }

    static let built = Task<Built, Never> {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: build()) }.start()
        }
    }

    /// The path of archive `name`; cancels the test (shown as cancelled, with the reason) when pip
    /// cannot install shiv and pex.
    static func archive(_ name: String) async throws -> String {
        switch await built.value {
        case let .unavailable(reason): try Test.cancel(Comment(rawValue: reason))
        case let .failed(reason): throw HarnessError(reason)
        case let .directory(directory):
            let path = directory + "/" + name
            guard FileManager.default.fileExists(atPath: path) else { throw HarnessError("make_shiv_pex_apps.py made no \(name)") }
            return path
        }
    }

    nonisolated(unsafe) private static var directory: String?

    private static func build() -> Built {
        let directory = makeTemporaryDirectory("zipapps")
        let started = Date()
        let r = run(["python3", TestEnvironment.fixturesScripts + "/make_shiv_pex_apps.py", directory], timeout: 900)
        guard r.status == 0 else {
            removeTree(directory)
            if r.status == 3 { return .unavailable("needs shiv and pex from PyPI: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
            return .failed("make_shiv_pex_apps.py failed: \(r)")
        }
        // Removed when the test process exits (the venv alone is tens of megabytes).
        ShivPexApps.directory = directory
        atexit { ShivPexApps.directory.map(removeTree) }
        let versions = (try? String(contentsOfFile: directory + "/versions.txt", encoding: .utf8)) ?? "?\n"
        print("shiv and pex apps built in \(Int(Date().timeIntervalSince(started))) s with \(versions.dropLast()) in \(directory)")
        return .directory(directory)
    }
}
