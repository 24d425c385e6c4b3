import Foundation
import Logging
import PyzfsCore
import PyzfsInflate
import PyzfsTestSupport
import PyzfsZip
import Testing

/// Every way of serving a member, read in every order, over a real `ArchiveFile`: the bytes are
/// the member's, and with a wrong CRC-32 each order fails, and so does every reader after it.
@Suite("Read orders on every serving path")
struct ReadOrderTests {
    /// (member, cache budget that sends it down its path, whether it is checked whole before
    /// its first byte is served).
    static let paths: [(String, Int, Bool)] = [
        ("stored.bin", 1 << 20, false),  // stored, CRC in order
        ("lib.so", 1 << 20, true),       // stored ELF: whole before the first byte
        ("small.txt", 1 << 20, true),    // decompressed whole into the cache
        ("large.txt", 41 << 20, false),  // checkpoints, CRC in order
        ("stream.bin", 1 << 20, true),   // streamed: whole before the first byte
    ]
    static let orders = ["in order", "reverse", "random", "interleaved", "two threads"]

    static let directory: String = {
        let d = makeTemporaryDirectory("read-order")
        let r = run(["python3", TestEnvironment.fixturesScripts + "/make_read_order.py", d])
        precondition(r.status == 0, "make_read_order.py failed: \(r)")
        return d
    }()

    static let expected: [String: [UInt8]] = {
        var out: [String: [UInt8]] = [:]
        for (name, _, _) in paths {
            out[name] = FileManager.default.contents(atPath: directory + "/expected/" + name).map { Array($0) }
        }
        return out
    }()

    /// A filesystem over `archive` as the server builds it, with `budget` bytes of cache.
    func fileSystem(_ archive: String, budget: Int) throws -> ArchiveFileSystem {
        let file = try ArchiveFile(path: Self.directory + "/" + archive)
        let index = try ZipIndex.read(from: file, path: file.path)
        let reader = MemberReader(source: file, index: index,
                                  decoders: [DeflateDecoder(source: file), LibzipDecoder(archive: file, index: index)],
                                  checksum: crc32)
        return ArchiveFileSystem(tree: Tree(index: index), reader: reader, cacheBudget: budget,
                                 ownership: Ownership(uid: 0, gid: 0), inflater: ZlibCheckpointInflater(source: file),
                                 logger: Logger(label: "test"))
    }

    /// The (offset, count) reads of one order over a member of `size` bytes.
    static func reads(_ order: String, size: Int) -> [[(Int, Int)]] {
        let chunk = 128 << 10
        let inOrder = stride(from: 0, to: size, by: chunk).map { ($0, chunk) }
        switch order {
        case "in order": return [inOrder]
        case "reverse": return [inOrder.reversed()]
        case "random":
            var g = SplitMix(seed: UInt64(size))
            return [(0..<24).map { _ in (Int.random(in: 0..<size, using: &g), Int.random(in: 1...(64 << 10), using: &g)) }]
        case "interleaved": return [inOrder.flatMap { [$0, $0] }]
        default: return [inOrder, inOrder]  // "two threads": each reader in order, at once
        }
    }

    struct Outcome {
        var served: [(Int, [UInt8])] = []
        var failedAt: [Int] = []  // indexes (in the read list) of reads that failed
    }

    func perform(_ fs: ArchiveFileSystem, node: Int, _ list: [(Int, Int)]) -> Outcome {
        var o = Outcome()
        for (k, (offset, count)) in list.enumerated() {
            do {
                let bytes = try fs.read(node, offset: UInt64(offset), count: count) { Array($0) }
                o.served.append((offset, bytes))
            } catch {
                o.failedAt.append(k)
            }
        }
        return o
    }

    func outcomes(_ fs: ArchiveFileSystem, node: Int, order: String, size: Int) -> [Outcome] {
        let lists = Self.reads(order, size: size)
        if order != "two threads" { return lists.map { perform(fs, node: node, $0) } }
        let results = Results()
        onThreads(lists.count) { k in results.set(k, perform(fs, node: node, lists[k])) }
        return (0..<lists.count).map { results.get($0) }
    }

    @Test("good members: the bytes zipfile reads, in every order", arguments: paths.map { $0.0 }, orders)
    func goodBytes(member: String, order: String) throws {
        let (_, budget, _) = Self.paths.first { $0.0 == member }!
        let fs = try fileSystem("good.zip", budget: budget)
        let node = try #require(fs.tree.lookup(path: member))
        let want = try #require(Self.expected[member])
        #expect(want.count > 100_000)
        for o in outcomes(fs, node: node, order: order, size: want.count) {
            #expect(o.failedAt.isEmpty)
            for (offset, bytes) in o.served {
                #expect(same(bytes, want, at: offset), "\(member) at \(offset)")
            }
        }
        #expect(fs.failedMemberCount == 0)
    }

    @Test("a wrong CRC fails every order, then every fresh reader; ELF and streamed members before any byte",
          arguments: paths.map { $0.0 }, orders)
    func wrongCRC(member: String, order: String) throws {
        let (_, budget, wholeFirst) = Self.paths.first { $0.0 == member }!
        let fs = try fileSystem("badcrc.zip", budget: budget)
        let node = try #require(fs.tree.lookup(path: member))
        let want = try #require(Self.expected[member])
        let results = outcomes(fs, node: node, order: order, size: want.count)
        #expect(results.contains { !$0.failedAt.isEmpty }, "\(member) read \(order) never failed")
        for o in results {
            // Once a read failed, every later read of that reader fails too.
            if let first = o.failedAt.first {
                let list = Self.reads(order, size: want.count)[0]
                #expect(o.failedAt == Array(first..<list.count), "\(member) \(order): a read succeeded after a failure")
            }
            if wholeFirst { #expect(o.served.count == 0, "\(member) served reads unchecked") }
            // Reads that broke the pass (reverse, random far from the start) fail at once.
            if order == "reverse" { #expect(o.failedAt.first == 0) }
            for (offset, bytes) in o.served {
                #expect(same(bytes, want, at: offset))
            }
        }
        #expect(throws: FSError.self) { try fs.read(node, offset: 0, count: 4096) { _ in () } }
        #expect(fs.failedMemberCount == 1)
    }

    @Test("a read that breaks the pass is answered only after the whole member was checked")
    func breakingThePassChecksTheRest() throws {
        let fs = try fileSystem("good.zip", budget: 1 << 20)
        let node = try #require(fs.tree.lookup(path: "stored.bin"))
        let want = try #require(Self.expected["stored.bin"])
        // In order first, then a jump past the reorder window: still the right bytes.
        #expect(try fs.read(node, offset: 0, count: 4096) { Array($0) } == Array(want[0..<4096]))
        #expect(try fs.read(node, offset: 2 << 20, count: 10) { Array($0) } == Array(want[(2 << 20)..<((2 << 20) + 10)]))
        let bad = try fileSystem("badcrc.zip", budget: 1 << 20)
        let badNode = try #require(bad.tree.lookup(path: "stored.bin"))
        #expect(try bad.read(badNode, offset: 0, count: 4096) { $0.count } == 4096)
        // Within what was checked, or right after it: the pass goes on.
        #expect(try bad.read(badNode, offset: 100, count: 4096) { $0.count } == 4096)
        #expect(try bad.read(badNode, offset: 4196, count: 4096) { $0.count } == 4096)
        // A gap of one byte breaks it: the rest is checked first, which fails.
        #expect(throws: FSError.self) { try bad.read(badNode, offset: 8293, count: 10) { _ in () } }
    }
}

/// Whether `bytes` are `want`'s at `offset` (memcmp: element-wise comparison is slow in debug builds).
func same(_ bytes: [UInt8], _ want: [UInt8], at offset: Int) -> Bool {
    guard offset + bytes.count <= want.count else { return false }
    return bytes.withUnsafeBytes { a in want.withUnsafeBytes { b in bytes.isEmpty || memcmp(a.baseAddress!, b.baseAddress! + offset, bytes.count) == 0 } }
}

/// Results of concurrent readers, by reader.
final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: ReadOrderTests.Outcome] = [:]
    func set(_ k: Int, _ o: ReadOrderTests.Outcome) { lock.withLock { values[k] = o } }
    func get(_ k: Int) -> ReadOrderTests.Outcome { lock.withLock { values[k]! } }
}
