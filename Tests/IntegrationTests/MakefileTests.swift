import Foundation
import PyzfsTestSupport
import Testing

/// The Makefile's split: only make deps (and make test, make demo through it) installs packages;
/// make and make build check for what they need and say what is missing.
@Suite("Makefile")
struct MakefileTests {
    /// Runs `make TARGET` with stand-ins first on PATH: apt-get, sudo and swift record their
    /// arguments in the returned calls and succeed; dpkg-query says nothing is installed;
    /// pkg-config answers as the real one, except that `hidden` modules do not exist.
    func make(_ arguments: [String], hiding hidden: [String] = []) throws -> (result: RunResult, calls: String) {
        let dir = makeTemporaryDirectory("make")
        defer { removeTree(dir) }
        let calls = dir + "/calls"
        var scripts = ["dpkg-query": "exit 1", "pkg-config": "for a; do case \" \(hidden.joined(separator: " ")) \" in *\" $a \"*) exit 1;; esac; done\nexec /usr/bin/pkg-config \"$@\""]
        for tool in ["apt-get", "sudo", "swift"] { scripts[tool] = "echo \"\(tool) $*\" >> \(calls)" }
        for (name, body) in scripts {
            try "#!/bin/sh\n\(body)\n".write(toFile: dir + "/" + name, atomically: false, encoding: .utf8)
            chmod(dir + "/" + name, 0o755)
        }
        let path = dir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let r = run(["make", "--no-print-directory", "-C", TestEnvironment.root, "SWIFT_BIN=\(dir)"] + arguments,
                    environment: ["PATH": path, "MAKEFLAGS": "", "MAKELEVEL": ""])
        return (r, (try? String(contentsOfFile: calls, encoding: .utf8)) ?? "")
    }

    @Test("make build with a -dev package missing: says which and that make deps installs it, fails, runs no apt-get")
    func buildChecksOnly() throws {
        let (r, calls) = try make(["build"], hiding: ["libzip"])
        #expect(r.status != 0, "\(r)")
        #expect(r.stderr.contains("missing: libzip-dev (pkg-config module libzip); make deps installs them"), "\(r)")
        #expect(calls.isEmpty, "make build ran \(calls)")
    }

    @Test("make and make build with everything present: the build alone, no apt-get", arguments: [[], ["build"]])
    func buildWithEverything(target: [String]) throws {
        let (r, calls) = try make(target)
        #expect(r.status == 0, "\(r)")
        #expect(calls == "swift build -c release --static-swift-stdlib\n", "\(r)")
    }

    static let version = ((try? String(contentsOfFile: TestEnvironment.root + "/VERSION", encoding: .utf8)) ?? "")
        .trimmingCharacters(in: .whitespacesAndNewlines)
    static let manual = TestEnvironment.root + "/.build/plugins/GenerateManual/outputs/pyzfs/pyzfs.1"

    @Test("make -s version prints what VERSION holds, the one place the version is defined")
    func versionFromOnePlace() throws {
        #expect(!Self.version.isEmpty)
        let (r, _) = try make(["-s", "version"])
        #expect(r.status == 0 && r.stdout == Self.version + "\n", "\(r)")
    }

    @Test("the man page carries the same version in its footer (mdoc .Os)",
          .enabled(if: FileManager.default.fileExists(atPath: manual), "no man page: make manual (which make test runs) makes it"))
    func manualVersion() throws {
        let page = try String(contentsOfFile: Self.manual, encoding: .utf8)
        #expect(page.split(separator: "\n").contains(".Os pyzfs \(Self.version)"), "\(page.prefix(300))")
    }

    @Test("make deps installs what is missing")
    func depsInstalls() throws {
        let (r, calls) = try make(["deps"])
        #expect(r.status == 0, "\(r)")
        #expect(calls.contains("apt-get install") && calls.contains("libzip-dev"), "\(calls)\n\(r)")
    }
}
