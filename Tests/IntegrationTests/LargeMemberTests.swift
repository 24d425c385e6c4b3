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

    /// Reads big.txt one way (`forward`, `reverse`, `random`, `mmap`) on a mount and prints
    /// "served N failed M end E" (E: 1 when the read that reaches the member's end was served):
    /// with a 5th argument `good` every byte is compared with zipfile's ("wrong N" follows);
    /// without, only what was served is counted (an archive with a wrong CRC, which zipfile
    /// refuses). A failing mmap page kills it with SIGBUS: then without `good`, each page read
    /// before it was printed ("page OFFSET").
    static let oneWayReader = """
    import mmap, os, random, sys, zipfile
    mode, mount, archive = sys.argv[1:4]
    good = sys.argv[4:] == ["good"]
    want = zipfile.ZipFile(archive).read("big.txt") if good else None
    path = os.path.join(mount, "big.txt")
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    step = 1 << 20
    if mode == "forward":
        ranges = [(o, step) for o in range(0, size, step)]
    elif mode == "reverse":
        ranges = [(o, step) for o in reversed(range(0, size, step))]
    else:
        rnd = random.Random(os.getpid())
        ranges = [(rnd.randrange(size - 4096), 4096) for _ in range(200)] + [(size - 10, 10)]
    served = failed = wrong = end = 0
    if mode == "mmap":
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        for offset, length in ranges:
            got = m[offset:offset + length]
            if not good:
                print("page", offset, flush=True)  # what was served before a SIGBUS
            served += 1
            end |= offset + length >= size
            wrong += good and got != want[offset:offset + length]
        wrong += good and m[:] != want
    else:
        for offset, length in ranges:
            try:
                got = os.pread(fd, length, offset)
            except OSError as e:
                failed += 1
                continue
            served += 1
            # A read may come back short (its first pages served, a later one failing).
            end |= offset + len(got) >= size
            wrong += good and got != want[offset:offset + length]
    print("served", served, "failed", failed, "end", int(end), *(["wrong", wrong] if good else []))
    """

    /// The fixture's 64 MiB member with a 40 MiB cache: the checkpoint path (`LargeMemberIndex`).
    static let options = ["cache_size=40M"]

    @Test("read in reverse, at random, or through mmap as the first reader of a fresh mount: zipfile's bytes",
          arguments: ["reverse", "random", "mmap"])
    func outOfOrderFirst(mode: String) throws {
        let archive = Fixtures.shared.archive("large")
        try withMount(archive, options: Self.options) { mnt in
            let r = run(["python3", "-c", Self.oneWayReader, mode, mnt, archive, "good"], timeout: 300)
            #expect(r.status == 0 && r.stdout.hasSuffix("failed 0 end 1 wrong 0\n"), "\(r)")
            let stats = readStats(mnt)
            #expect((stats["bytes_held"] as? Int ?? Int.max) <= 40 << 20, "\(stats)")
        }
    }

    @Test("two readers at once, one in order and one at random, each get zipfile's bytes",
          arguments: ["forward", "reverse"])
    func twoReaders(first: String) throws {
        let archive = Fixtures.shared.archive("large")
        try withMount(archive, options: Self.options) { mnt in
            let a = spawn(["python3", "-c", Self.oneWayReader, first, mnt, archive, "good"])
            let b = spawn(["python3", "-c", Self.oneWayReader, "random", mnt, archive, "good"])
            let (sa, sb) = (a.wait(timeout: 300), b.wait(timeout: 300))
            #expect(sa == 0 && a.stdout.hasSuffix("failed 0 end 1 wrong 0\n"), "\(a.stdout) \(a.stderr)")
            #expect(sb == 0 && b.stdout.hasSuffix("failed 0 end 1 wrong 0\n"), "\(b.stdout) \(b.stderr)")
        }
    }

    @Test("with a wrong CRC, a first read out of order serves nothing: EIO (SIGBUS through mmap), and so does every read after",
          arguments: ["reverse", "random", "mmap"])
    func badCRCOutOfOrder(mode: String) throws {
        let archive = Fixtures.shared.archive("largebadcrc")
        try withMount(archive, options: Self.options) { mnt in
            let r = run(["python3", "-c", Self.oneWayReader, mode, mnt, archive], timeout: 300)
            if mode == "mmap" {
                #expect(r.status == 128 + SIGBUS && r.stdout.isEmpty, "\(r)")
            } else {
                #expect(r.status == 0 && r.stdout.hasPrefix("served 0 failed ") && r.stdout.hasSuffix(" end 0\n"), "\(r)")
            }
            // Then in order from the start, which alone could have served a prefix: failed too.
            let again = run(["python3", "-c", Self.oneWayReader, "forward", mnt, archive], timeout: 300)
            #expect(again.stdout.hasPrefix("served 0 failed "), "\(again)")
            #expect(readStats(mnt)["failures"] as? Int == 1)
        }
    }

    @Test("with a wrong CRC, two readers at once: neither is served the member's end; only what the pass in order covered is served")
    func badCRCTwoReaders() throws {
        let archive = Fixtures.shared.archive("largebadcrc")
        try withMount(archive, options: Self.options) { mnt in
            let a = spawn(["python3", "-c", Self.oneWayReader, "forward", mnt, archive])
            let b = spawn(["python3", "-c", Self.oneWayReader, "random", mnt, archive])
            let (sa, sb) = (a.wait(timeout: 300), b.wait(timeout: 300))
            // A prefix may be served, to either, where the pass in order had been (each of its
            // bytes went through the CRC in order first); the end, where the CRC fails, never.
            #expect(sa == 0 && a.stdout.hasSuffix(" end 0\n") && !a.stdout.contains("failed 0 "), "\(a.stdout) \(a.stderr)")
            #expect(sb == 0 && b.stdout.hasSuffix(" end 0\n") && !b.stdout.contains("failed 0 "), "\(b.stdout) \(b.stderr)")
        }
    }

    @Test("random reads on a fresh mount agree with zipfile; memory stays within the budget")
    func randomReads() throws {
        let archive = Fixtures.shared.archive("large")
        try withMount(archive, options: ["cache_size=40M"]) { mnt in
            let r = run(["python3", "-c", Self.randomReader, mnt, archive], timeout: 300)
            #expect(r.stdout == "bad 0 of 311\n", "\(r)")
            let stats = readStats(mnt)
            #expect((stats["bytes_held"] as? Int ?? Int.max) <= 40 << 20, "\(stats)")
            #expect(stats["members_over_budget"] as? Int == 1)
            // The checkpoints' windows count against the budget too.
            #expect((stats["pinned_bytes"] as? Int ?? 0) > 0, "\(stats)")
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
