import Foundation
import Glibc
import PyzfsCore
import PyzfsRun
import PyzfsTestSupport
import Testing

/// The extract cache on plain directories: extraction, removal and cleaning need no FUSE.
@Suite("Extract cache without FUSE")
struct ExtractionCacheUnitTests {
    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode : nil
    }

    @Test("extraction writes every member with its bytes and mode, read-only directories included")
    func extraction() throws {
        var w = ZipWriter()
        w.add("__main__.py", "print('hi')\n", mode: 0o100644)
        w.add("bin/tool", "#!/bin/sh\n", mode: 0o100755)
        w.add("ro/", "", mode: 0o040555)
        w.add("ro/inside.txt", "kept\n", mode: 0o100444)
        w.add("link", "__main__.py", mode: 0o120777)
        let big = String(repeating: "0123456789abcdef", count: 1 << 17)  // 2 MiB: more than one buffer
        w.add("deep/a/b/c/big.txt", big)
        let opened = try openedArchive(w)
        let target = makeTemporaryDirectory("extract") + "/tree"
        try ExtractionCache.extract(opened, into: target)
        #expect(try String(contentsOfFile: target + "/__main__.py", encoding: .utf8) == "print('hi')\n")
        #expect(try String(contentsOfFile: target + "/deep/a/b/c/big.txt", encoding: .utf8) == big)
        #expect(mode(target + "/bin/tool").map { $0 & 0o7777 } == 0o755)
        #expect(mode(target + "/ro").map { $0 & 0o7777 } == 0o555)
        #expect(mode(target + "/ro/inside.txt").map { $0 & 0o7777 } == 0o444)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: target + "/link") == "__main__.py")
        // As root, modes never stop a removal: ExtractCacheTests removes 0555 trees as a normal user.
        #expect(ExtractionCache.removeTree(target) == 0)
        #expect(mode(target) == nil)
    }

    @Test("extraction into an existing directory fails with exit 125 and leaves it as it was")
    func existingTarget() throws {
        var w = ZipWriter()
        w.add("a", "x")
        let opened = try openedArchive(w)
        let target = makeTemporaryDirectory("extract")
        do {
            try ExtractionCache.extract(opened, into: target)
            Issue.record("extracted over an existing directory")
        } catch { #expect(error.code == Exit.runFailed && error.message.contains(target), "\(error)") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: target).isEmpty)
    }

    @Test("clean removes unused entries and build leftovers, and keeps an entry an app holds")
    func clean() throws {
        let root = makeTemporaryDirectory("cache")
        for name in ["unused", "held", "unused.tmp-abc123"] {
            #expect(mkdir(root + "/" + name, 0o700) == 0)
            #expect(FileManager.default.createFile(atPath: root + "/" + name + "/file", contents: Data("x".utf8)))
        }
        chmod(root + "/unused", 0o555)  // a read-only tree, as an archive's 0555 directory makes
        // An app running from an entry holds a shared lock on its directory.
        let app = open(root + "/held", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(app >= 0 && flock(app, LOCK_SH) == 0)
        defer { close(app) }
        #expect(ExtractionCache.isLocked(root + "/held"))
        #expect(Set(ExtractionCache.entries(root).map(\.name)) == ["unused", "held", "unused.tmp-abc123"])

        var said: [String] = []
        let (removed, failures) = ExtractionCache.clean(root, olderThanDays: nil) { said.append($0) }
        #expect(removed == 1 && failures.isEmpty, "\(failures)")
        #expect(said.count == 1 && said[0].hasPrefix("kept held: in use"), "\(said)")
        let left = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        // The lock of an entry that went is removed; that of one kept stays for its next build.
        #expect(left == ["held", "held.lock"], "\(left)")
    }

    @Test("clean --older-than keeps entries used more recently")
    func cleanOlderThan() throws {
        let root = makeTemporaryDirectory("cache")
        #expect(mkdir(root + "/recent", 0o700) == 0)
        let (removed, failures) = ExtractionCache.clean(root, olderThanDays: 1) { _ in }
        #expect(removed == 0 && failures.isEmpty)
        #expect(mode(root + "/recent") != nil)
    }
}
