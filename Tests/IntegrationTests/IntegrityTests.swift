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

/// The server's memory: the cache budget, the bytecode budget, and a stated cost per entry.
@Suite("Memory bound", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct MemoryBoundTests {
    /// What docs/design.md states: peak RSS <= cache_size + pycache_size + fixed + per entry.
    static let fixedCost = 16 << 20
    static let perEntryCost = 1024

    @Test("100,000 entries read whole by 16 processes: peak RSS within the stated bound")
    func hundredThousandEntries() throws {
        let archive = Fixtures.shared.archive("many100k")
        try withMount(archive, options: ["cache_size=16M", "pycache_size=8M"]) { mnt in
            let reader = """
            import os, sys
            n = 0
            for d, _, files in os.walk(sys.argv[1]):
                for f in files:
                    with open(os.path.join(d, f), "rb") as fh:
                        n += len(fh.read())
            print(n)
            """
            let readers = (0..<16).map { _ in spawn(["python3", "-c", reader, mnt]) }
            for r in readers { #expect(r.wait(timeout: 600) == 0, "\(r.stderr)") }
            #expect(Set(readers.map(\.stdout)).count == 1 && readers[0].stdout == "27777800\n", "\(readers[0].stdout)")
            let stats = readStats(mnt)
            let kb = try #require((stats["pid"] as? Int).flatMap(peakResidentKiB), "no VmHWM: \(stats)")
            let bound = (16 << 20) + (8 << 20) + Self.fixedCost + 100_000 * Self.perEntryCost
            #expect(kb * 1024 <= bound, "peak RSS \(kb) KiB, bound \(bound / 1024) KiB")
            #expect((stats["bytes_held"] as? Int ?? Int.max) <= 16 << 20)
        }
    }
}
