import Foundation
import PyzfsTestSupport
import Testing

/// What Python developers expect of their code, from a mount, and from an archive that
/// `pyzfs optimize` rewrote.
@Suite("Python expectations", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct PythonExpectationsTests {
    let pyzfs = TestEnvironment.binary

    static let checks = """
    import sys, importlib.resources, importlib.metadata, pkgutil, inspect, traceback
    mnt = sys.argv[1]
    sys.path.insert(0, mnt)
    import demo_pkg
    from demo_pkg import boom
    print("file", demo_pkg.__file__ == mnt + "/demo_pkg/__init__.py")
    print("resource", importlib.resources.files("demo_pkg").joinpath("data/info.txt").read_text().strip())
    print("version", importlib.metadata.version("demo-pkg"))
    print("entry point", [e.value for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "demo"])
    print("modules", sorted(m.name for m in pkgutil.iter_modules(demo_pkg.__path__)))
    print("walk", sorted(m.name for m in pkgutil.walk_packages(demo_pkg.__path__, "demo_pkg.")))
    print("data", pkgutil.get_data("demo_pkg", "data/info.txt").decode().strip())
    print("source", inspect.getsource(boom.fail).splitlines()[0])
    try:
        boom.fail()
    except ValueError:
        tb = traceback.format_exc()
    print("traceback", "raise ValueError('boom from the mount')" in tb, mnt + "/demo_pkg/boom.py" in tb)
    """

    static let expected = """
    file True
    resource resource text
    version 1.2.3
    entry point ['demo_pkg:hello']
    modules ['__main__', 'boom', 'sub']
    walk ['demo_pkg.__main__', 'demo_pkg.boom', 'demo_pkg.sub', 'demo_pkg.sub.leaf']
    data resource text
    source def fail():
    traceback True True

    """

    @Test("__file__, importlib.resources and .metadata, pkgutil, inspect.getsource, tracebacks, python -m",
          arguments: [false, true])
    func expectations(optimized: Bool) throws {
        var archive = Fixtures.shared.archive("pyexpect")
        if optimized {
            let out = makeTemporaryDirectory("optimized") + "/pyexpect.pyz"
            let o = run([pyzfs, "optimize", archive, out])
            #expect(o.status == 0, "\(o)")
            archive = out
        }
        try withMount(archive) { mnt in
            let r = run(["python3", "-c", Self.checks, mnt])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout == Self.expected, "\(r.stdout)\n\(r.stderr)")
            let m = run(["python3", "-m", "demo_pkg", "a", "b"], environment: ["PYTHONPATH": mnt])
            #expect(m.stdout == "demo_pkg as -m ['a', 'b']\n", "\(m)")
            #expect(run(["python3", mnt]).stdout == "main hello from demo_pkg\n")
        }
    }

    @Test("pyzfs optimize: the same app, shared libraries stored, unchecked-hash pycs used without compiling, input kept")
    func optimize() throws {
        let dir = makeTemporaryDirectory("optimize")
        defer { removeTree(dir) }
        let app = dir + "/greet.pyz"
        let made = run(["python3", TestEnvironment.fixturesScripts + "/make_extension_app.py", app])
        try #require(made.status == 0, Comment(rawValue: "cannot build the extension app: \(made)"))
        let before = try Data(contentsOf: URL(fileURLWithPath: app))
        let out = dir + "/greet-optimized.pyz"
        let o = run([pyzfs, "optimize", app, out])
        #expect(o.status == 0 && o.stdout.contains("2 shared libraries stored") && o.stdout.contains("unchecked-hash pycs"), "\(o)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: app)) == before, "the input changed")
        #expect(run([pyzfs, "optimize", app, app]).status == 73)
        // The same output from both, and the mode and #! line kept.
        let original = try withMount(app) { mnt in run(["python3", mnt]).stdout.replacingOccurrences(of: mnt, with: "MNT") }
        let rewritten = try withMount(out) { mnt -> String in
            // Nothing compiled: the unchecked-hash pycs are used as they are.
            let counter = """
            import sys; compiled = []
            sys.addaudithook(lambda e, a: compiled.append(a[1]) if e == "compile" and str(a[1]).startswith(sys.argv[1]) else None)
            sys.path.insert(0, sys.argv[1]); import greet; print(len(compiled))
            """
            #expect(run(["env", "-u", "PYTHONDONTWRITEBYTECODE", "python3", "-c", counter, mnt]).stdout == "0\n")
            return run(["python3", mnt]).stdout.replacingOccurrences(of: mnt, with: "MNT")
        }
        #expect(!original.isEmpty && rewritten == original, "\(original) vs \(rewritten)")
        let inspect = run([pyzfs, "inspect", out])
        #expect(!inspect.stdout.contains("shared libraries stored compressed") && inspect.stdout.contains("hash-based pycs"), "\(inspect)")
        var st = stat()
        #expect(stat(out, &st) == 0 && st.st_mode & 0o777 == 0o755)
        #expect(try String(contentsOfFile: out, encoding: .isoLatin1).hasPrefix("#!/usr/bin/env python3\n"))
    }
}
