import Foundation
import PyzfsTestSupport
import Testing

/// Hostile and broken archives, and faults around a mount: nothing crashes, nothing wrong is
/// served, nothing is left mounted, and the user learns what is wrong.
@Suite("Hostile archives and faults", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct HostileTests {
    let pyzfs = TestEnvironment.binary

    /// Every path below `root`, relative.
    func walk(_ root: String) -> [String] {
        (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).sorted()
    }

    func mode(_ path: String) -> UInt32 {
        var st = stat()
        return lstat(path, &st) == 0 ? UInt32(st.st_mode) : 0
    }

    func logText(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    @Test("odd names never become entries; duplicates and file/directory clashes are resolved as documented; special modes never reach the mount")
    func hostileNames() throws {
        let archive = Fixtures.shared.archive("hostile")
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        let r = run([pyzfs, "mount", archive, mnt])
        #expect(r.status == 0, "\(r)")
        for reason in ["skipped: '..' path component", "skipped: absolute name", "skipped: '.' path component",
                       "skipped: empty path component", "skipped: path component longer than 255 bytes"] {
            #expect(r.stderr.contains(reason), "mount did not warn: \(reason)")
        }
        let paths = walk(mnt)
        #expect(paths == ["back\\slash\\name.txt", "blockdev", "both", "both/inner.txt", "chardev", "dup.txt", "fifo",
                          "later", "later/inner.txt", "ok", "ok/fine.txt", "setgid", "setuid", "socket", "sticky"], "\(paths)")
        for p in paths {
            #expect(!p.split(separator: "/").contains { $0 == ".." || $0 == "." || $0.isEmpty }, "\(p)")
        }
        #expect((try? String(contentsOfFile: mnt + "/dup.txt", encoding: .utf8)) == "second\n", "the last duplicate wins")
        #expect(mode(mnt + "/both") & S_IFMT == S_IFDIR && mode(mnt + "/later") & S_IFMT == S_IFDIR, "a directory wins")
        #expect(mode(mnt + "/setuid") == S_IFREG | 0o755)
        #expect(mode(mnt + "/setgid") == S_IFREG | 0o755)
        // Never group- or other-writable (docs/names.md).
        #expect(mode(mnt + "/sticky") == S_IFDIR | 0o755)
        for special in ["chardev", "blockdev", "fifo", "socket"] {
            #expect(mode(mnt + "/" + special) == S_IFREG | 0o644, "\(special) must be a regular file")
        }
    }

    @Test("size lies and bombs: EIO with a log line, never more than declared, memory within the budget")
    func bombs() throws {
        let archive = Fixtures.shared.archive("bombs")
        let (_, log) = try withLoggedMount(archive, options: ["cache_size=16M"]) { mnt in
            #expect(run(["cat", mnt + "/good.txt"]).stdout == "good\n")
            for bad in ["expands.bin", "huge.bin", "short.bin"] {
                let r = run(["cat", mnt + "/" + bad])
                #expect(r.status != 0 && r.stderr.contains("Input/output error") && r.stdout.isEmpty, "\(bad): \(r.stderr)")
            }
            let kb = (readStats(mnt)["pid"] as? Int).flatMap(peakResidentKiB) ?? Int.max
            #expect(kb < 64 * 1024, "peak RSS \(kb) KiB with a 16 MiB cache")
        }
        #expect(log.contains("cannot read expands.bin: size mismatch (archive says 1000 bytes"), "\(log)")
        #expect(log.contains("cannot read huge.bin: corrupt data: 4294967280 bytes declared from"), "\(log)")
        #expect(log.contains("cannot read short.bin: size mismatch"), "\(log)")
    }

    @Test("an encrypted member reads as EACCES with a log line; the others read")
    func encrypted() throws {
        let archive = Fixtures.shared.archive("encrypted")
        let (_, log) = try withLoggedMount(archive) { mnt in
            #expect(run(["cat", mnt + "/plain.txt"]).stdout == "plain\n")
            let r = run(["cat", mnt + "/secret.txt"])
            #expect(r.status != 0 && r.stderr.contains("Permission denied"), "\(r)")
        }
        #expect(log.contains("cannot read secret.txt: the member is encrypted"))
    }

    @Test("the archive modified in place while mounted: later reads that need it fail cleanly, with a log line")
    func modifiedInPlace() throws {
        let dir = makeTemporaryDirectory("inplace")
        defer { removeTree(dir) }
        let archive = dir + "/app.zip"
        try FileManager.default.copyItem(atPath: Fixtures.shared.archive("deflate"), toPath: archive)
        try withMount(archive, options: ["log=\(dir)/log"]) { mnt in
            #expect(run(["cat", mnt + "/pkg/mod.py"]).stdout == "VALUE = 42\n")
            // Overwrite bytes in the middle, as a careless "cp new.zip app.zip" or a download would.
            let w = run(["dd", "if=/dev/urandom", "of=\(archive)", "bs=1024", "seek=10", "count=4", "conv=notrunc"])
            #expect(w.status == 0)
            let r = run(["cat", mnt + "/text/lorem.txt"])
            #expect(r.status != 0 && r.stderr.contains("Input/output error"), "\(r)")
            let stats = readStats(mnt)
            #expect((stats["failures"] as? Int ?? 0) == 1 && (stats["read_errors"] as? Int ?? 0) >= 1, "\(stats)")
        }
        #expect(logText(dir + "/log").contains("the archive file was modified while mounted"))
    }

    @Test("unmount while a file is open: busy (75) with advice; lazy unmount works and the open file still reads")
    func busyUnmount() throws {
        let archive = Fixtures.shared.archive("deflate")
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        #expect(run([pyzfs, "mount", archive, mnt]).status == 0)
        let ready = makeTemporaryDirectory("ready") + "/ready"
        let go = ready + ".go"
        // The holder keeps the file open until the test says go: the mount stays busy however
        // slowly the test gets to its unmount.
        let holder = spawn(["python3", "-c", """
            import os, sys, time
            f = open(sys.argv[1], "rb"); open(sys.argv[2], "w").write("open")
            while not os.path.exists(sys.argv[3]):
                time.sleep(0.01)
            print(len(f.read()))
            """, mnt + "/text/lorem.txt", ready, go])
        defer { FileManager.default.createFile(atPath: go, contents: nil) }
        #expect(eventually { FileManager.default.fileExists(atPath: ready) })
        let busy = run([pyzfs, "unmount", mnt])
        #expect(busy.status == 75 && busy.stderr.contains("is busy") && busy.stderr.contains("pyzfs unmount -l"), "\(busy)")
        let lazy = run([pyzfs, "unmount", "-l", mnt])
        #expect(lazy.status == 0 && !isMountPoint(mnt), "\(lazy)")
        FileManager.default.createFile(atPath: go, contents: nil)
        #expect(holder.wait() == 0)
        #expect(holder.stdout == "1080000\n", "the open file must still read after a lazy unmount: \(holder.stdout) \(holder.stderr)")
    }

    @Test("a mount point that is not empty: a warning, its contents hidden until unmount")
    func nonEmptyMountPoint() throws {
        let archive = Fixtures.shared.archive("zipapp")
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt); removeTree(mnt) }
        try "mine\n".write(toFile: mnt + "/existing.txt", atomically: true, encoding: .utf8)
        let r = run([pyzfs, "mount", archive, mnt])
        #expect(r.status == 0 && r.stderr.contains("is not empty: its 1 entry is hidden"), "\(r)")
        #expect(!FileManager.default.fileExists(atPath: mnt + "/existing.txt"))
        #expect(run([pyzfs, "unmount", mnt]).status == 0)
        #expect(FileManager.default.fileExists(atPath: mnt + "/existing.txt"))
    }
}
