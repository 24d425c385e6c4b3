import Foundation
import PyzfsTestSupport
import Testing

/// `pyzfs inspect`, and the same check when `pyzfs run` starts an app.
@Suite("pyzfs inspect")
struct InspectTests {
    let pyzfs = TestEnvironment.binary

    func extensionApp(_ extra: [String], name: String) throws -> String {
        let dir = makeTemporaryDirectory("inspect")
        let out = dir + "/" + name
        let r = run(["python3", TestEnvironment.fixturesScripts + "/make_extension_app.py", out] + extra)
        try #require(r.status == 0, Comment(rawValue: "cannot build the extension app (gcc, Python headers): \(r)"))
        return out
    }

    @Test("a good app: prefix, kind, its extension loadable, compressed libraries named, no problems")
    func goodApp() throws {
        let app = try extensionApp([], name: "good.pyz")
        let r = run([pyzfs, "inspect", app])
        #expect(r.status == 0, "\(r)")
        for line in ["prefix: 23 bytes, #!/usr/bin/env python3", "kind: zipapp (__main__.py)", "native extensions: 1, all loadable",
                     "vendored shared libraries: 1", "shared libraries stored compressed: 2", "problems: none"] {
            #expect(r.stdout.contains(line), "missing '\(line)' in:\n\(r.stdout)")
        }
    }

    @Test("an ELF program stored compressed (a wheel's bin/ruff) is reported, and no longer once pyzfs optimize stored it")
    func executables() throws {
        let dir = makeTemporaryDirectory("inspect")
        defer { removeTree(dir) }
        let app = dir + "/tool.pyz", optimized = dir + "/tool-optimized.pyz"
        let script = """
        import shutil, sys, zipfile
        with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("__main__.py", "print('hi')\\n")
            for name, mode in (("bin/tool", 0o755), ("data/elf-not-executable", 0o644)):
                info = zipfile.ZipInfo(name)
                info.external_attr, info.compress_type = (0o100000 | mode) << 16, zipfile.ZIP_DEFLATED
                z.writestr(info, open(shutil.which("true"), "rb").read())
        """
        let made = run(["python3", "-c", script, app])
        try #require(made.status == 0, "\(made)")
        let r = run([pyzfs, "inspect", app])
        #expect(r.stdout.contains("executables: 1\n") && r.stdout.contains("executables stored compressed: 1 ("), "\(r)")
        #expect(run([pyzfs, "optimize", app, optimized]).status == 0)
        let o = run([pyzfs, "inspect", optimized])
        #expect(o.stdout.contains("executables: 1\n") && !o.stdout.contains("executables stored compressed"), "\(o)")
    }

    @Test("an extension for another Python and machine, a wheel for a newer glibc: said before any import fails")
    func mismatches() throws {
        let app = try extensionApp(["--abi-tag", "cpython-312", "--machine", "183", "--wheel-tag", "cp311-cp311-manylinux_2_99_x86_64"],
                                   name: "bad.pyz")
        let r = run([pyzfs, "inspect", "--json", app])
        #expect(r.status == 0, "\(r)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let problems = json["problems"] as? [String] ?? []
        #expect(problems.contains { $0.contains("cpython-312") && $0.contains("machine code for aarch64") }, "\(problems)")
        #expect(problems.contains { $0.contains("greet 1.0") && $0.contains("needs glibc 2.99") }, "\(problems)")
        let interpreter = json["interpreter"] as? [String: Any]
        #expect(interpreter?["soabi"] as? String != nil && interpreter?["libc"] as? String == "glibc")
        let distributions = json["distributions"] as? [[String: Any]] ?? []
        #expect(distributions.first?["tags"] as? [String] == ["cp311-cp311-manylinux_2_99_x86_64"])
    }

    @Test("pyzfs run warns before starting an app whose extensions cannot load",
          .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
    func runWarns() throws {
        let app = try extensionApp(["--abi-tag", "cpython-312"], name: "warn.pyz")
        let r = run([pyzfs, "run", app])
        #expect(r.stderr.contains("greet/_native.cpython-312-x86_64-linux-gnu.so cannot load: built for cpython-312"), "\(r)")
        let quiet = run([pyzfs, "run", app], environment: ["PYZFS_NO_CHECK": "1"])
        #expect(!quiet.stderr.contains("cannot load"), "\(quiet)")
    }

    @Test("undecodable, encrypted members and out-of-tree symlinks are listed")
    func otherFindings() throws {
        let methods = run([pyzfs, "inspect", Fixtures.shared.archive("methods")])
        #expect(methods.stdout.contains("unknown.bin (unknown)"), "\(methods)")
        let encrypted = run([pyzfs, "inspect", Fixtures.shared.archive("encrypted")])
        #expect(encrypted.stdout.contains("encrypted members: secret.txt"), "\(encrypted)")
        let links = run([pyzfs, "inspect", Fixtures.shared.archive("symlinks")])
        #expect(links.stdout.contains("symlinks out of the archive (hidden): "), "\(links)")
        #expect(links.stdout.contains("absolute") && links.stdout.contains("escape"), "\(links)")
        let pycs = run([pyzfs, "inspect", Fixtures.shared.archive("pycs")])
        #expect(pycs.stdout.contains("bytecode: 42 timestamp pycs, 0 hash-based pycs, 0 sources without bytecode"), "\(pycs)")
    }
}
