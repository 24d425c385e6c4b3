import Foundation
import PyzfsTestSupport
import Testing

/// Through a real mount, no byte whose CRC fails reaches a reader, whatever the order or the
/// way of reading: mmap, an import, a fresh reader after the failure.
@Suite("Integrity through a mount", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct IntegrityTests {
    @Test("a stored extension's library with one changed byte: the import fails, mmap fails, cat fails, stats count it")
    func storedExtensionWithAFlippedByte() throws {
        let dir = makeTemporaryDirectory("flipped")
        defer { removeTree(dir) }
        let archive = dir + "/greet.pyz"
        let made = run(["python3", TestEnvironment.fixturesScripts + "/make_extension_app.py", archive, "--stored", "--flip-byte"])
        try #require(made.status == 0, "\(made)")
        let zipfile = run(["python3", "-c", "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).testzip())", archive])
        #expect(zipfile.stdout.contains("greet.libs/libvend-"), "zipfile must see the bad member: \(zipfile)")
        try withMount(archive) { mnt in
            let library = mnt + "/greet.libs/libvend-5e1f2a3b.so"
            // The loader maps the library: it must never see the changed byte.
            let r = run(["python3", mnt])
            #expect(r.status != 0 && !r.stdout.contains("libvenD"), "\(r)")
            // mmap, as the loader reads, from a fresh process: a fault fails (SIGBUS) or raises.
            let m = run(["python3", "-c", "import mmap, sys; f = open(sys.argv[1], 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); print(m[-1], m[:].count(b'libvenD'))", library])
            #expect(m.status != 0 && !m.stdout.contains(" 1"), "\(m)")
            let c = run(["cat", library])
            #expect(c.status != 0 && c.stderr.contains("Input/output error"), "\(c.stderr)")
            let stats = readStats(mnt)
            #expect((stats["failures"] as? Int ?? 0) == 1 && (stats["read_errors"] as? Int ?? 0) >= 1, "\(stats)")
            // The good members still read.
            #expect(run(["cat", mnt + "/greet/data/message.txt"]).stdout == "hello from importlib.resources\n")
        }
    }

    @Test("members streamed or checked in order: a wrong CRC is never served to a fresh reader")
    func streamedAndInOrder() throws {
        let dir = makeTemporaryDirectory("ordermount")
        defer { removeTree(dir) }
        let made = run(["python3", TestEnvironment.fixturesScripts + "/make_read_order.py", dir])
        try #require(made.status == 0, "\(made)")
        // With a 1 MiB cache every member over 1 MiB is streamed (or, stored, checked in order).
        try withMount(dir + "/badcrc.zip", options: ["cache_size=1M"]) { mnt in
            for member in ["stream.bin", "large.txt"] {
                let first = run(["dd", "if=\(mnt)/\(member)", "of=/dev/null", "bs=64k", "count=1"])
                #expect(first.status != 0 && first.stderr.contains("Input/output error"), "\(member): \(first.stderr)")
            }
            // In order: served until the end shows the CRC, then every reader fails.
            let whole = run(["dd", "if=\(mnt)/stored.bin", "of=/dev/null", "bs=1M"])
            #expect(whole.status != 0 && whole.stderr.contains("Input/output error"), "\(whole.stderr)")
            #expect(eventually(timeout: 10) {
                run(["dd", "if=\(mnt)/stored.bin", "of=/dev/null", "bs=4k", "count=1"]).status != 0
            }, "pages served before the CRC failed were still served after it")
            let stats = readStats(mnt)
            #expect((stats["failures"] as? Int ?? 0) == 3, "\(stats)")
        }
        try withMount(dir + "/good.zip", options: ["cache_size=1M"]) { mnt in
            let c = run(["python3", TestEnvironment.fixturesScripts + "/check_mount.py", dir + "/good.zip", mnt], timeout: 300)
            #expect(c.status == 0, "\(c)")
        }
    }
}
