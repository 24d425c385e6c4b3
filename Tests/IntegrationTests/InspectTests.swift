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

    /// Runs the Python `script`, which writes the archive named by its argument, for `path`.
    func write(_ path: String, with script: String) throws {
        let made = run(["python3", "-c", script, path])
        try #require(made.status == 0, "\(made)")
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
        try write(app, with: script)
        let r = run([pyzfs, "inspect", app])
        #expect(r.stdout.contains("executables: 1\n") && r.stdout.contains("executables stored compressed: 1 ("), "\(r)")
        #expect(run([pyzfs, "optimize", app, optimized]).status == 0)
        let o = run([pyzfs, "inspect", optimized])
        #expect(o.stdout.contains("executables: 1\n") && !o.stdout.contains("executables stored compressed"), "\(o)")
    }

    @Test("an abi3 extension is checked against its wheel's tag: cp37-abi3 loads in 3.10, cp311-abi3 is reported per file")
    func abi3PerFile() throws {
        let dir = makeTemporaryDirectory("inspect")
        defer { removeTree(dir) }
        // An interpreter that answers pyzfs's probe as CPython 3.10 would on this machine.
        let python310 = dir + "/python3.10"
        let fake = "#!/bin/sh\necho \"3.10.13|cpython|cpython-310|cpython-310-$(uname -m)-linux-gnu|$(uname -m)|glibc|2.36\"\n"
        try fake.write(toFile: python310, atomically: true, encoding: .utf8)
        chmod(python310, 0o755)
        let app = dir + "/abi3.pyz"
        // Two installed wheels, each with a _rust.abi3.so (a real shared object of this machine)
        // named in its RECORD; only their WHEEL tags differ.
        let script = """
        import glob, os, platform, sys, sysconfig, zipfile
        so = open(sorted(glob.glob(os.path.join(sysconfig.get_path("platstdlib"), "lib-dynload", "*.so")))[0], "rb").read()
        with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("__main__.py", "print('hi')\\n")
            for name, tag in (("oldabi", "cp37-abi3"), ("newabi", "cp311-abi3")):
                info = name + "-1.0.dist-info"
                z.writestr(name + "/__init__.py", "")
                z.writestr(name + "/_rust.abi3.so", so)
                z.writestr(info + "/METADATA", "Metadata-Version: 2.1\\nName: %s\\nVersion: 1.0\\n" % name)
                z.writestr(info + "/WHEEL", "Wheel-Version: 1.0\\nRoot-Is-Purelib: false\\nTag: %s-manylinux_2_17_%s\\n" % (tag, platform.machine()))
                z.writestr(info + "/RECORD", "%s/__init__.py,,\\n%s/_rust.abi3.so,sha256=x,%d\\n%s/RECORD,,\\n" % (name, name, len(so), info))
        """
        try write(app, with: script)

        let r = run([pyzfs, "inspect", "--python", python310, app])
        #expect(r.status == 0, "\(r)")
        let line = "newabi/_rust.abi3.so: an abi3 extension of a wheel tagged cp311-abi3-manylinux_2_17_"
        #expect(r.stdout.contains(line) && r.stdout.contains(": needs Python 3.11+, the interpreter is 3.10 (this interpreter: 3.10 on "), "\(r)")
        #expect(!r.stdout.contains("oldabi/_rust.abi3.so:") && r.stdout.contains("native extensions: 2, 1 cannot load"), "\(r)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run([pyzfs, "inspect", "--json", "--python", python310, app]).stdout.utf8)) as? [String: Any])
        let extensions = json["extensions"] as? [[String: Any]] ?? []
        let problems = Dictionary(uniqueKeysWithValues: extensions.map { ($0["path"] as? String ?? "", $0["problems"] as? [String] ?? []) })
        #expect(problems["oldabi/_rust.abi3.so"] == [] && problems["newabi/_rust.abi3.so"]?.count == 1, "\(extensions)")
        // The interpreter the wheel was built for has no complaint.
        if run(["python3", "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]).status == 0 {
            let current = run([pyzfs, "inspect", "--python", "python3", app])
            #expect(current.stdout.contains("problems: none"), "\(current)")
        }
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

    @Test("most sources without bytecode for this interpreter (shiv, pex, other tags) get the hint; pycs or pyzfs optimize end it")
    func bytecodeHint() throws {
        let dir = makeTemporaryDirectory("inspect")
        defer { removeTree(dir) }
        // Sources as shiv packs them (no pycs); the same with the pycs of this python3 written
        // as pip does; with pycs of another tag only (cpython-30); with legacy NAME.pyc files.
        let script = """
        import importlib.util, py_compile, sys, zipfile
        kind, tag = sys.argv[2], sys.implementation.cache_tag
        with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("__main__.py", "import pkg\\n")
            for i in range(6):
                name = "pkg/%s.py" % ("__init__" if i == 0 else "m%d" % i)
                z.writestr(name, "X = %d\\n" % i)
                pyc = importlib.util.MAGIC_NUMBER + bytes(12)
                if kind == "pycs" or (kind == "some" and i < 2):
                    z.writestr(importlib.util.cache_from_source(name), pyc)
                elif kind == "othertag":
                    z.writestr(importlib.util.cache_from_source(name).replace(tag, "cpython-30"), pyc)
                elif kind == "legacy":
                    z.writestr(name + "c", pyc)
        """
        let python = run(["python3", "-c", "import os, sys; print(os.path.realpath(sys.executable))"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let hint = "most sources lack bytecode for "
        func inspect(_ kind: String) throws -> String {
            let app = dir + "/\(kind).pyz"
            let made = run(["python3", "-c", script, app, kind])
            try #require(made.status == 0, "\(made)")
            return run([pyzfs, "inspect", "--python", python, app]).stdout
        }
        for kind in ["shiv", "othertag", "some"] {
            let out = try inspect(kind)
            #expect(out.contains(hint) && out.contains("pyzfs optimize adds it"), "\(kind):\n\(out)")
        }
        #expect(try inspect("shiv").contains(": 6 of 6, "))
        #expect(try inspect("some").contains(": 4 of 6, "))
        for kind in ["pycs", "legacy"] {
            let out = try inspect(kind)
            #expect(!out.contains(hint), "\(kind):\n\(out)")
        }
        let optimized = dir + "/optimized.pyz"
        let o = run([pyzfs, "optimize", "--python", python, dir + "/shiv.pyz", optimized])
        try #require(o.status == 0, "\(o)")
        let after = run([pyzfs, "inspect", "--python", python, optimized]).stdout
        #expect(!after.contains(hint), "\(after)")
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
