import Foundation
import Glibc
import PyzfsApps
import PyzfsCore
import PyzfsTestSupport
import Testing

/// The bootstraps run by the stock python3 over an extracted tree, as over a mount: what the
/// app sees is decided here, with no FUSE involved.
@Suite("App layouts and bootstraps without FUSE")
struct AppLayoutTests {
    static let probe = """
    import json, sys
    if sys.argv[1:2] == ["boom"]:
        raise RuntimeError("boom from the app")
    print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "file": globals().get("__file__"), "name": __name__}))
    """

    /// Writes `members` under a new directory: the tree the bootstrap runs from.
    func extracted(_ members: [(String, String)]) throws -> String {
        let root = makeTemporaryDirectory("tree")
        for (name, text) in members {
            let path = root + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: false, encoding: .utf8)
        }
        return root
    }

    func layout(_ members: [(String, String)], arguments: [String], environment: [String: String] = [:]) throws -> (AppLayout, OpenedArchive) {
        var w = ZipWriter()
        for (name, text) in members { w.add(name, text) }
        let opened = try openedArchive(w)
        let python = try Interpreter.resolve(python: TestEnvironment.python, opened: opened)
        return (try AppLayout(opened, archive: "rel/app.pyz", interpreter: python, arguments: arguments,
                              environment: { environment[$0] }), opened)
    }

    func json(_ text: String) throws -> [String: Any] {
        let line = try #require(text.split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("a plain zipapp sees the archive as written in argv[0], the tree in sys.path[0], its __main__.py")
    func plainZipapp() throws {
        let members = [("__main__.py", Self.probe)]
        let (app, _) = try layout(members, arguments: ["--port", "1", "--"])
        #expect(app.bundled == nil && app.mountDirectoryName == nil)
        let root = try extracted(members)
        let r = run(app.command(root: root))
        #expect(r.status == 0, "\(r)")
        let seen = try json(r.stdout)
        #expect(seen["argv"] as? [String] == ["rel/app.pyz", "--port", "1", "--"])
        #expect(seen["path0"] as? String == root)
        #expect(seen["file"] as? String == root + "/__main__.py")
        #expect(seen["name"] as? String == "__main__")
    }

    @Test("an app's traceback has no frame of the bootstrap, and its exit status is kept")
    func tracebackWithoutLauncher() throws {
        let members = [("__main__.py", Self.probe)]
        let (app, _) = try layout(members, arguments: ["boom"])
        let r = run(app.command(root: try extracted(members)))
        #expect(r.status == 1, "\(r)")
        #expect(r.stderr.contains("RuntimeError: boom from the app"), "\(r)")
        #expect(r.stderr.contains("__main__.py"), "\(r)")
        #expect(!r.stderr.contains("<string>"), "a launcher frame: \(r)")
    }

    @Test("a shiv's environment.json: entry point called, site-packages on the path, shiv's directory name")
    func shiv() throws {
        let environment = #"{"shiv_version": "1.0.6", "entry_point": "hello:main", "build_id": "b1d", "always_write_cache": false}"#
        let hello = "import sys\ndef main():\n    print('hello', sys.argv[1:], __file__)\n    return 3\n"
        let members = [("environment.json", environment), ("_bootstrap/__init__.py", ""), ("site-packages/hello.py", hello)]
        let (app, opened) = try layout(members, arguments: ["a"])
        let bundled = try #require(app.bundled)
        #expect(bundled.kind == .shiv && bundled.entryPoint == "hello:main" && bundled.toolVersion == "1.0.6")
        #expect(bundled.shivDirectoryName == (opened.path as NSString).lastPathComponent + "_b1d")
        let root = try extracted(members)
        let r = run(app.command(root: root))
        #expect(r.status == 3, "\(r)")
        #expect(r.stdout == "hello ['a'] \(root)/site-packages/hello.py\n", "\(r)")
    }

    @Test("SHIV_ENTRY_POINT overrides the recorded entry point, as shiv's bootstrap does")
    func shivOverride() throws {
        let environment = #"{"shiv_version": "1.0.6", "entry_point": "hello:main", "build_id": "b1d"}"#
        let members = [("environment.json", environment), ("_bootstrap/__init__.py", ""),
                       ("site-packages/hello.py", "def main():\n    print('main')\ndef other():\n    print('other')\n")]
        let (app, _) = try layout(members, arguments: [], environment: ["SHIV_ENTRY_POINT": "hello:other"])
        let r = run(app.command(root: try extracted(members)))
        #expect(r.status == 0 && r.stdout == "other\n", "\(r)")
    }

    @Test("malformed shiv metadata is refused with exit 125 and the reason")
    func malformedShiv() throws {
        var w = ZipWriter()
        w.add("environment.json", "{not json")
        w.add("_bootstrap/__init__.py", "")
        let opened = try openedArchive(w)
        let python = try Interpreter.resolve(python: TestEnvironment.python, opened: opened)
        do {
            _ = try AppLayout(opened, archive: "a.pyz", interpreter: python, arguments: [], environment: { _ in nil })
            Issue.record("malformed metadata was accepted")
        } catch {
            #expect(error.code == Exit.runFailed && error.message.contains("as a shiv"), "\(error)")
        }
    }

    @Test("the interpreter: 127 when none is found, 126 when it cannot be executed")
    func interpreterFailures() throws {
        var w = ZipWriter()
        w.add("__main__.py", "")
        let opened = try openedArchive(w)
        do {
            _ = try Interpreter.resolve(python: "/nonexistent/python3", opened: opened)
            Issue.record("a missing interpreter was accepted")
        } catch { #expect(error.code == Exit.notFound, "\(error)") }
        let plain = makeTemporaryDirectory("interp") + "/python3"
        #expect(FileManager.default.createFile(atPath: plain, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o644]))
        // No execute bit: refused for root too (access(2) wants one for X_OK).
        do {
            _ = try Interpreter.resolve(python: plain, opened: opened)
            Issue.record("a file that cannot be executed was accepted")
        } catch { #expect(error.code == Exit.cannotExecute, "\(error)") }
    }
}
