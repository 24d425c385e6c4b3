import Foundation
import Glibc
import PyzfsCore
import PyzfsTestSupport
import Testing

/// The bytecode overlay on a real mount, with the names CPython makes.
@Suite("Bytecode overlay on a mount", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct OverlayMountTests {
    @Test("a module name of 240 bytes imports with bytecode on; a 300-byte pyc name is ENAMETOOLONG; listings survive")
    func longModuleName() throws {
        let directory = makeTemporaryDirectory("long-names")
        defer { removeTree(directory) }
        let archive = directory + "/app.pyz"
        let module = String(repeating: "m", count: 240)
        let script = """
        import sys, zipfile
        with zipfile.ZipFile(sys.argv[1], "w") as z:
            z.writestr("pkg/__init__.py", "")
            z.writestr("pkg/\(module).py", "X = 5\\n")
            z.writestr("pkg/short.py", "Y = 6\\n")
        """
        #expect(run(["python3", "-c", script, archive]).status == 0)
        try withMount(archive, options: ["pycache=memory"]) { mnt in
            // CPython caches pkg/__pycache__/<240 bytes>.cpython-311.pyc: its temporary's name is
            // over 255 bytes, so it is refused and the import just goes on without caching.
            let code = """
            import os, sys
            sys.path.insert(0, sys.argv[1])
            import pkg.short, importlib
            m = importlib.import_module("pkg." + "m" * 240)
            print(m.X + pkg.short.Y)
            print(sorted(os.listdir(os.path.join(sys.argv[1], "pkg", "__pycache__"))))
            """
            let r = run(["env", "-u", "PYTHONDONTWRITEBYTECODE", "python3", "-c", code, mnt])
            #expect(r.status == 0, "\(r)")
            let lines = r.stdout.split(separator: "\n")
            #expect(lines.first == "11", "\(r)")
            #expect(lines.count == 2 && lines[1].contains("short.cpython-") && !lines[1].contains(module), "\(r)")

            let long = mnt + "/pkg/__pycache__/" + String(repeating: "x", count: 300) + ".cpython-311.pyc"
            let fd = open(long, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            let e = errno
            if fd >= 0 { close(fd) }
            #expect(fd < 0 && e == ENAMETOOLONG, "create of a 300-byte name: \(fd) \(errnoText(e))")
            #expect(mkdir(mnt + "/" + String(repeating: "_", count: 256), 0o755) != 0 && errno == ENAMETOOLONG)
            var st = stat()
            #expect(stat(long, &st) != 0 && errno == ENAMETOOLONG)
            // The server is alive and lists the directory.
            let again = try FileManager.default.contentsOfDirectory(atPath: mnt + "/pkg/__pycache__")
            #expect(again.allSatisfy { $0.utf8.count <= 255 } && again.contains { $0.hasPrefix("short.") }, "\(again)")
            #expect(isMountPoint(mnt) && FileManager.default.contents(atPath: mnt + "/pkg/short.py") != nil)
        }
    }
}
