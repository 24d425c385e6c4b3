import CFuse3
import Foundation
import Logging
@testable import PyzfsCore
import PyzfsFUSE
import PyzfsInflate
import PyzfsTestSupport
import PyzfsZip
import Testing

/// The field-mutation sweep of issue 10, in process: every mutant that
/// Tests/fixtures/make_mutants.py writes (each numeric field of each record of four good
/// archives set to each boundary value) is put in a real file and served by the same layers as
/// `pyzfs mount` (ArchiveFile, ZipIndex, Tree with its symlink targets, ArchiveFileSystem with
/// libdeflate, libzip and zlib, and the FUSE handlers of Operations without a kernel): a walk of
/// the tree with lookup, getattr, readdir and readdirplus, readlink and statfs, reads in order,
/// in reverse 4 KiB chunks and at random, a small cache that streams, and the prefetcher's
/// whole-member decode of every shared library. Each mutant is refused with an
/// ArchiveError (exit 65 or 66, docs/errors.md) or served; a trap ends the test process. Every
/// byte served must equal what Python's zipfile reads for that member, or the read must fail.
@Suite("Field-mutation sweep (in process)")
struct MutationSweepTests {
    @Test("every mutant is refused or served with zipfile's bytes; none traps")
    func sweep() throws {
        let sweep = try Sweep.shared()
        let start = Date()
        var report = SweepReport()
        // PYZFS_SWEEP_EVERY=N runs every Nth mutant only (to time or debug the sweep).
        let every = max(1, Int(ProcessInfo.processInfo.environment["PYZFS_SWEEP_EVERY"] ?? "") ?? 1)
        for m in sweep.mutants where m.id % every == 0 { sweep.run(m, into: &report) }
        let seconds = Date().timeIntervalSince(start)
        print("mutation sweep: \(sweep.mutants.count) mutants in \(String(format: "%.1f", seconds)) s: \(report.summary)")
        for v in report.violations.prefix(40) { Issue.record("\(v)") }
        // A stored member read out of order must be checked before it is served (one integrity
        // state per member): any such read is a failure.
        for v in report.uncheckedStored.prefix(10) { Issue.record("\(v)") }
        #expect(report.uncheckedStored.isEmpty, "\(report.uncheckedStored.count) unchecked stored reads")
        #expect(report.violations.isEmpty, "\(report.violations.count) violations")
        #expect(report.served > 0 && report.refused > 0, "the sweep reaches both outcomes")
    }

    /// The reports of issue 10, each a mutant the sweep holds; named so a failure says which.
    @Test("issue 10's archives: served without a trap, their impossible members failing with EIO",
          arguments: [
              ("zip64", "central[2].extra[0].uncompressed_size", UInt64.max),   // Zip64 size 2^64-1 (the deflated .so)
              ("zip64", "central[2].extra[0].uncompressed_size", 1 << 63),      // >= 2^63
              ("zip64", "central[0].extra[0].local_header_offset", 1 << 63),    // a regular file's offset >= 2^63
              ("zip64", "central[4].extra[0].local_header_offset", 1 << 63),    // a symlink's offset >= 2^63
              ("zip64", "central[2].extra[0].compressed_size", UInt64.max / 1032),  // near 2^54 on a deflated .so
          ] as [(String, String, UInt64)])
    func issue10(base: String, field: String, value: UInt64) throws {
        let sweep = try Sweep.shared()
        let m = try #require(sweep.mutant(base: base, field: field, value: value))
        var report = SweepReport()
        sweep.run(m, into: &report)
        #expect(report.violations.isEmpty, "\(report.violations)")
        #expect(report.served == 1, "the archive is served, the member listed")
        // Files stay listed and fail; a symlink whose target cannot be read is hidden (docs/names.md).
        #expect(report.damagedEntries > 0, "the index marks the impossible member")
    }

    @Test("a Zip64 end record whose directory offset plus size passes 2^64 is refused (65), not a trap")
    func directoryPast2To64() throws {
        let sweep = try Sweep.shared()
        let m = try #require(sweep.mutant(base: "zip64", field: "zip64-end.directory_offset", value: UInt64.max))
        var report = SweepReport()
        sweep.run(m, into: &report)
        #expect(report.refused == 1)
    }

    @Test("statfs of sizes whose sum passes 2^64 saturates")
    func statfsSum() throws {
        let sweep = try Sweep.shared()
        let m = try #require(sweep.mutants.first { $0.kind == "named.sum-of-sizes" })
        var report = SweepReport()
        sweep.run(m, into: &report)
        #expect(report.violations.isEmpty, "\(report.violations)")
        #expect(report.lastBlocks == UInt64.max / 4096 + 1)
    }
}

/// One mutant as make_mutants.py describes it.
struct Mutant: Sendable {
    struct Edit: Sendable { let offset: Int, width: Int, value: UInt64 }
    let id: Int
    let base: String
    let field: String
    let kind: String
    let edits: [Edit]
    /// Why zipfile refuses the whole archive, if it does.
    let zipfileRefusal: String?
    /// zipfile's reading of each member: its SHA-256 (a blob), or nil when zipfile fails.
    let expect: [String: String?]
}

struct SweepReport {
    var refused = 0, served = 0, reads = 0, failedReads = 0, damagedListed = 0, damagedEntries = 0
    /// Members zipfile cannot read (or archives it refuses) that pyzfs served with their original
    /// bytes: fields zipfile checks and pyzfs does not need (version needed, names in local headers).
    var lenient = 0
    var lastBlocks: UInt64 = 0
    var violations: [String] = []
    /// Stored members read out of order served before their CRC was checked (issue 10's
    /// "bytes served without their CRC being checked", fixed elsewhere): known, reported apart.
    var uncheckedStored: [String] = []
    var summary: String {
        "\(refused) refused, \(served) served (\(reads) reads, \(failedReads) failed; \(damagedListed) impossible members listed; " +
            "\(lenient) members served where zipfile fails, with their original bytes; \(uncheckedStored.count) stored reads out of order served unchecked)"
    }
}

/// The mutants and their references, made once per test process.
final class Sweep: @unchecked Sendable {
    // @unchecked: immutable after `init`.
    let directory: String
    let mutants: [Mutant]
    let bases: [String: (bytes: [UInt8], members: [String: String])]
    let blobs: [String: [UInt8]]
    let scratch: String

    nonisolated(unsafe) private static var made: Sweep?
    private static let lock = NSLock()

    static func shared() throws -> Sweep {
        lock.lock()
        defer { lock.unlock() }
        if let made { return made }
        let s = try Sweep()
        made = s
        return s
    }

    private init() throws {
        directory = makeTemporaryDirectory("sweep")
        let r = PyzfsTestSupport.run(["python3", TestEnvironment.fixturesScripts + "/make_mutants.py", directory], timeout: 600)
        guard r.status == 0 else { throw HarnessError("make_mutants.py failed: \(r)") }
        let shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : directory
        scratch = "\(shm)/pyzfs-sweep-\(getpid())"
        // A run that trapped (what the sweep looks for) left its scratch file: remove those of
        // processes that are gone.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: shm)) ?? [] where name.hasPrefix("pyzfs-sweep-") {
            if let pid = Int32(name.dropFirst("pyzfs-sweep-".count).prefix { $0 != "-" }), kill(pid, 0) != 0, errno == ESRCH {
                unlink(shm + "/" + name)
            }
        }
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/bases.json"))) as! [String: [String: Any]]
        var bases: [String: (bytes: [UInt8], members: [String: String])] = [:]
        for (name, b) in manifest {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: b["file"] as! String)))
            bases[name] = (bytes, b["members"] as! [String: String])
        }
        self.bases = bases
        var blobs: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: directory + "/blobs") {
            blobs[name] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/blobs/" + name)))
        }
        self.blobs = blobs
        let text = try String(contentsOfFile: directory + "/mutants.jsonl", encoding: .utf8)
        mutants = text.split(separator: "\n").map { line in
            let o = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let edits = (o["edits"] as! [[NSNumber]]).map { Mutant.Edit(offset: $0[0].intValue, width: $0[1].intValue, value: $0[2].uint64Value) }
            var expect: [String: String?] = [:]
            for (k, v) in o["expect"] as! [String: Any] { expect[k] = v as? String }
            return Mutant(id: o["id"] as! Int, base: o["base"] as! String, field: o["field"] as! String,
                          kind: o["kind"] as! String, edits: edits, zipfileRefusal: o["zipfile"] as? String, expect: expect)
        }
        // Everything is in memory now (the shared instance lives as long as the process).
        removeTree(directory)
    }

    func mutant(base: String, field: String, value: UInt64) -> Mutant? {
        mutants.first { $0.base == base && $0.field == field && $0.edits.count == 1 && $0.edits[0].value == value }
    }

    func bytes(of m: Mutant) -> [UInt8] {
        var b = bases[m.base]!.bytes
        for e in m.edits {
            for k in 0..<e.width { b[e.offset + k] = UInt8(truncatingIfNeeded: e.value >> (8 * UInt64(k))) }
        }
        return b
    }

    /// What a served member must equal: zipfile's reading, else (zipfile fails) the unmutated
    /// member's bytes (then `lenient` is true), else nil (nothing may be served).
    func reference(_ m: Mutant, _ path: String) -> (bytes: [UInt8]?, lenient: Bool) {
        if let e = m.expect[path], let digest = e { return (blobs[digest], false) }
        if let digest = bases[m.base]!.members[path] { return (blobs[digest], true) }
        return (nil, false)
    }

    func run(_ m: Mutant, into report: inout SweepReport) {
        let path = "\(scratch)-\(m.id).pyz"
        let data = bytes(of: m)
        guard FileManager.default.createFile(atPath: path, contents: Data(data)) else {
            report.violations.append("mutant \(m.id): cannot write \(path)")
            return
        }
        defer { unlink(path) }
        let label = "mutant \(m.id) (\(m.base) \(m.field) = \(m.edits.map { String($0.value) }.joined(separator: ",")))"
        // Four servers per mutant, each fresh so every path starts cold: reads in order, in
        // reverse, at random with the default cache, and reverse + random with a cache so small
        // that the shared libraries stream.
        let plans: [(budget: Int, orders: [ReadOrder])] = Self.plans
        for (k, plan) in plans.enumerated() {
            let fs: ArchiveFileSystem
            do {
                fs = try Self.openFileSystem(path, budget: plan.budget)
            } catch {
                // Every ArchiveError has a documented exit code (65, or 66 for .cannotOpen/.io).
                if k == 0 { report.refused += 1 }
                if case .cannotOpen = error { report.violations.append("\(label): the file could not be opened: \(error)") }
                return
            }
            if k == 0 {
                report.served += 1
                report.damagedEntries += fs.tree.index.entries.filter { $0.damage != nil }.count
            }
            walk(fs, m, label, plan.orders, prefetch: k == 0, &report)
        }
    }

    static let plans: [(budget: Int, orders: [ReadOrder])] = {
        let all: [(budget: Int, orders: [ReadOrder])] = [
            (64 << 20, [.inOrder]), (64 << 20, [.reverse]), (64 << 20, [.random]), (16 << 10, [.reverse, .random]),
        ]
        guard let only = ProcessInfo.processInfo.environment["PYZFS_SWEEP_PLAN"].flatMap({ Int($0) }) else { return all }
        return [all[only]]
    }()

    static func openFileSystem(_ path: String, budget: Int) throws(ArchiveError) -> ArchiveFileSystem {
        let file = try ArchiveFile(path: path)
        let index = try ZipIndex.read(from: file, path: path)
        let decoders: [any MemberDecoder] = [DeflateDecoder(source: file), LibzipDecoder(archive: file, index: index)]
        let reader = MemberReader(source: file, index: index, decoders: decoders, checksum: crc32)
        let tree = Tree(index: index, options: TreeOptions(defaultTime: file.modificationTime)) { i in
            try? reader.readWhole(i, limit: 4096)
        }
        _ = Zipapp.interpreterLine(of: file, index: index)
        return ArchiveFileSystem(tree: tree, reader: reader, cacheBudget: budget, ownership: Ownership(uid: 0, gid: 0),
                                 inflater: ZlibCheckpointInflater(source: file))
    }

    enum ReadOrder { case inOrder, reverse, random }

    static let quiet = Logger(label: "sweep", factory: { _ in SwiftLogNoOpLogHandler() })

    func walk(_ fs: ArchiveFileSystem, _ m: Mutant, _ label: String, _ orders: [ReadOrder], prefetch: Bool,
              _ report: inout SweepReport) {
        let tree = fs.tree
        let ops = Operations(fs: fs, archivePath: "/sweep.pyz", logger: Self.quiet)
        let r = SweepResponder()
        ops.statfs(r)
        report.lastBlocks = r.blocks
        var rng = SplitMix(seed: UInt64(m.id))
        for i in tree.nodes.indices where !tree.nodes[i].isHidden {
            let ino = fuse_ino_t(ArchiveFileSystem.inode(of: i))
            ops.getattr(r, ino: ino)
            guard case let .attr(size)? = r.last else {
                report.violations.append("\(label): getattr of \(tree.path(of: i)) answers \(String(describing: r.last))"); continue
            }
            let path = tree.path(of: i)
            switch tree.nodes[i].kind {
            case .directory:
                for plus in [true, false] { ops.readdir(r, ino: ino, size: 1 << 16, offset: 0, plus: plus) }
                for c in tree.children(of: i) {
                    let name = String(decoding: tree.name(of: Int(c)), as: UTF8.self)
                    guard !name.utf8.contains(0) else { continue }
                    ops.lookup(r, parent: ino, name: name)
                    if case let .entry(found)? = r.last, found == ArchiveFileSystem.inode(of: Int(c)) { continue }
                    report.violations.append("\(label): lookup of \(name) in \(path) answers \(String(describing: r.last))")
                }
            case .symlink:
                ops.readlink(r, ino: ino)
                if case .readlink? = r.last {} else { report.violations.append("\(label): readlink of \(path) answers \(String(describing: r.last))") }
            case .file:
                let entry = tree.index.entries[Int(tree.nodes[i].entry)]
                if entry.damage != nil {
                    report.damagedListed += 1
                    if size == 0 { report.violations.append("\(label): the impossible member \(path) has st_size 0") }
                }
                let (expected, lenient) = reference(m, path)
                var servedLeniently = false
                for order in orders {
                    for served in read(ops, r, ino, size: UInt64(size), order, expected: expected, &rng, &report) where served.count > 0 {
                        if entry.damage != nil {
                            report.violations.append("\(label): \(path) has impossible numbers, yet \(served.count) bytes were served")
                            break
                        }
                        guard served.matches else {
                            let what = "\(label): \(path) served \(served.count) bytes at \(served.offset) that zipfile does not read there (zipfile: \(m.zipfileRefusal ?? (m.expect[path] == nil ? "no such member" : "reads \(expected?.count ?? -1) bytes")))"
                            // Issue 10's unchecked stored reads (another part of the issue): a stored
                            // member read out of order is served before its CRC is checked.
                            if entry.method == 0 && order != .inOrder { report.uncheckedStored.append(what) } else { report.violations.append(what) }
                            break
                        }
                        servedLeniently = servedLeniently || lenient
                    }
                }
                if servedLeniently { report.lenient += 1 }
                // The prefetcher's own conditions (Prefetcher.schedule), so the cache's are kept.
                if prefetch && Prefetcher.looksLikeSharedLibrary(tree.name(of: i)) && entry.method != 0 && !entry.isEncrypted
                    && entry.uncompressedSize <= UInt64(fs.cache.budget / 4) {
                    // What the prefetcher does with a library: decode it whole, then read its ELF.
                    if let buffer = try? fs.load(Int(tree.nodes[i].entry), reason: "sweep") {
                        _ = ELFDependencies.parse(buffer.contents)
                    }
                }
            }
        }
        _ = tree.lookup(path: "__main__.py")
    }

    /// The successful reads of inode `ino` in `order` through the FUSE read handler: offset,
    /// count and whether the bytes equal `expected` there (a failed read ends an in-order pass;
    /// other orders go on). Offsets stay below 2^63, as the kernel's do.
    func read(_ ops: Operations, _ r: SweepResponder, _ ino: fuse_ino_t, size: UInt64, _ order: ReadOrder, expected: [UInt8]?,
              _ rng: inout SplitMix, _ report: inout SweepReport) -> [(offset: UInt64, count: Int, matches: Bool)] {
        var out: [(offset: UInt64, count: Int, matches: Bool)] = []
        func one(_ offset: UInt64, _ count: Int) -> Bool {
            report.reads += 1
            let offset = min(offset, UInt64(Int64.max))
            r.expected = expected
            r.offset = offset
            ops.read(r, ino: ino, size: count, offset: Int(offset))
            guard case let .data(n, matches)? = r.last else {
                report.failedReads += 1
                return false
            }
            out.append((offset, n, matches))
            return n > 0
        }
        switch order {
        case .inOrder:
            var offset: UInt64 = 0
            while offset <= size, one(offset, 128 << 10), out.count < 64 { offset += UInt64(out.last!.count) }
        case .reverse:
            // From the last 4 KiB chunk back to the first: at most 32 chunks, then the start.
            var chunk = size / 4096
            var n = 0
            while n < 32 {
                _ = one(chunk * 4096, 4096)
                if chunk == 0 { break }
                chunk -= 1
                n += 1
            }
            if chunk > 0 { _ = one(0, 4096) }
        case .random:
            for _ in 0..<12 {
                let offset = size == 0 ? 0 : rng.next() % (size < UInt64.max ? size + 1 : size)
                _ = one(offset, Int(1 + rng.next() % 9000))
            }
        }
        return out
    }
}

/// What a handler answered, the bytes of a read compared with the reference as they come.
final class SweepResponder: Responder, @unchecked Sendable {
    // @unchecked: used by one thread (no workers are started, so handlers answer inline).
    var uid: UInt32 { 0 }
    enum Answer { case entry(UInt64), attr(Int), error(Int32), data(Int, Bool), readlink, other }
    var last: Answer?
    var blocks: UInt64 = 0
    var expected: [UInt8]?
    var offset: UInt64 = 0
    func entry(_ e: fuse_entry_param) { last = .entry(UInt64(e.ino)) }
    func attr(_ st: stat, timeout: Double) { last = .attr(st.st_size) }
    func error(_ errno: Int32) { last = .error(errno) }
    func none() { last = .other }
    func open(_ fi: UnsafeMutablePointer<fuse_file_info>?, keepCache: Bool, cacheDirectory: Bool) { last = .other }
    func data(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { last = .data(0, true); return }
        guard let expected, offset <= UInt64(expected.count), UInt64(bytes.count) <= UInt64(expected.count) - offset else {
            last = .data(bytes.count, false); return
        }
        let same = expected.withUnsafeBytes { memcmp($0.baseAddress! + Int(offset), bytes.baseAddress!, bytes.count) == 0 }
        last = .data(bytes.count, same)
    }
    func readlink(_ target: UnsafePointer<CChar>) { last = .readlink }
    func statfs(_ st: statvfs) { blocks = UInt64(st.f_blocks); last = .other }
    func xattrSize(_ size: Int) { last = .other }
    func created(_ e: fuse_entry_param, _ fi: UnsafeMutablePointer<fuse_file_info>?) { last = .other }
    func written(_ count: Int) { last = .other }
}

/// A small deterministic generator (SplitMix64): "random" orders are the same on every run.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
