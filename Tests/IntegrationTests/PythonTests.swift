import Foundation
import PyzfsTestSupport
import Testing

/// The stock python3 imports from a mount: no hook, no extraction.
@Suite("Python imports from a mount", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct PythonTests {
    static let extensionApp: Result<String, HarnessError> = {
        let dir = makeTemporaryDirectory("extapp")
        let out = dir + "/greet.pyz"
        let r = run(["python3", TestEnvironment.fixturesScripts + "/make_extension_app.py", out])
        return r.status == 0 ? .success(out) : .failure(HarnessError("cannot build the extension app: \(r)"))
    }()

    @Test("a compiled extension loads its vendored library through $ORIGIN/../greet.libs", arguments: [false, true])
    func extensionWithVendoredLibrary(stored: Bool) throws {
        var archive = try Self.extensionApp.get()
        if stored {
            archive = archive.replacingOccurrences(of: ".pyz", with: "-stored.pyz")
            let r = run(["python3", TestEnvironment.fixturesScripts + "/make_extension_app.py", archive, "--stored"])
            #expect(r.status == 0, "\(r)")
        }
        // zipimport alone cannot do this: the archive run directly fails.
        let direct = run(["python3", archive])
        #expect(direct.status != 0 && direct.stderr.contains("No module named 'greet._native'"), "\(direct)")
        try withMount(archive) { mnt in
            let r = run(["python3", mnt])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("greet: 2 + 3 = 5 (computed by libvend, found through $ORIGIN)"), "\(r)")
            #expect(r.stdout.contains("resource: hello from importlib.resources"))
            #expect(r.stdout.contains("extension: \(mnt)/greet/_native.cpython-"))
            // A script in the archive runs through its execute bit.
            let s = run([mnt + "/bin/hello"])
            #expect(s.status == 0 && s.stdout == "script ran from \(mnt)/bin/hello\n", "\(s)")
        }
    }

    @Test("numpy imports and computes from a mount (the machine's own numpy, zipped)")
    func numpy() throws {
        let dir = makeTemporaryDirectory("numpy")
        defer { removeTree(dir) }
        let archive = dir + "/np.pyz"
        let build = run(["python3", TestEnvironment.fixturesScripts + "/make_site_app.py", archive, "numpy"])
        try #require(build.status != 3, Comment(rawValue: "numpy is not installed for python3: \(build.stderr)"))
        #expect(build.status == 0, "\(build)")
        try withMount(archive) { mnt in
            let code = "import numpy, sys; assert numpy.__file__.startswith(sys.argv[1]), numpy.__file__; print(int(numpy.arange(10).sum()), numpy.linalg.det(numpy.eye(3)))"
            let r = run(["python3", "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); exec(sys.argv[2])", mnt, code])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout == "45 1.0\n", "\(r)")
        }
    }
}
