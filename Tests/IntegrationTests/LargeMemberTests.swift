import Foundation
import PyzfsTestSupport
import Testing

/// Members larger than the cache: read in order and at random through checkpoints, in bounded
/// memory, and never served wrong.
@Suite("Members larger than the cache", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct LargeMemberTests {
    static let randomReader = """
    import os, random, sys, zipfile
    mount, archive = sys.argv[1], sys.argv[2]
    member = zipfile.ZipFile(archive).open("big.txt")
    size = os.path.getsize(os.path.join(mount, "big.txt"))
    fd = os.open(os.path.join(mount, "big.txt"), os.O_RDONLY)
    rnd = random.Random(7)
    bad = 0
    # Random 4 KiB reads, then ranges that cross chunk boundaries, then the end.
    ranges = [(rnd.randrange(size - 4096), 4096) for _ in range(300)]
    ranges += [(rnd.randrange(size - (3 << 20)), 3 << 20) for _ in range(10)] + [(size - 100, 100)]
    for offset, length in ranges:
        got = os.pread(fd, length, offset)
        member.seek(offset)
        if got != member.read(length):
            bad += 1
    print("bad", bad, "of", len(ranges))
    """

    @Test("random reads on a fresh mount agree with zipfile; memory stays within the budget")
    func randomReads() throws {
        let archive = Fixtures.shared.archive("large")
        try withMount(archive, options: ["cache_size=40M"]) { mnt in
            let r = run(["python3", "-c", Self.randomReader, mnt, archive], timeout: 300)
            #expect(r.stdout == "bad 0 of 311\n", "\(r)")
            let stats = readStats(mnt)
            #expect((stats["bytes_held"] as? Int ?? Int.max) <= 40 << 20, "\(stats)")
            #expect(stats["members_over_budget"] as? Int == 1)
            if let kb = (stats["pid"] as? Int).flatMap(peakResidentKiB) {
                // The budget, checkpoint windows (64 x 32 KiB), chunks in flight and the process itself.
                #expect(kb < 100 * 1024, "peak RSS \(kb) KiB with a 40 MiB cache")
            } else {
                Issue.record("no VmHWM for the server: \(stats)")
            }
        }
    }

    @Test("read in order, byte for byte, twice")
    func sequential() throws {
        let archive = Fixtures.shared.archive("large")
        try withMount(archive, options: ["cache_size=40M"]) { mnt in
            for _ in 0..<2 {
                let c = run(["python3", TestEnvironment.fixturesScripts + "/check_mount.py", archive, mnt], timeout: 300)
                #expect(c.status == 0, "\(c)")
            }
        }
    }

    @Test("a wrong CRC shows when the first pass reaches the end: EIO then and afterwards")
    func badCRC() throws {
        let archive = Fixtures.shared.archive("largebadcrc")
        try withMount(archive, options: ["cache_size=40M"]) { mnt in
            let r = run(["dd", "if=\(mnt)/big.txt", "of=/dev/null", "bs=1M"])
            #expect(r.status != 0 && r.stderr.contains("Input/output error"), "\(r)")
            // The kernel's cached pages are dropped by a notification sent just after the failing read
            // (not from inside it, where it would deadlock on the page being read).
            #expect(eventually(timeout: 5) {
                run(["dd", "if=\(mnt)/big.txt", "of=/dev/null", "bs=1M", "skip=10", "count=1"]).status != 0
            }, "pages served before the CRC failed were still served after it")
        }
    }
}
