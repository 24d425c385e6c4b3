@testable import PyzfsCore
import Testing

@Suite("In-memory bytecode cache")
struct PycacheOverlayTests {
    let pkg: UInt64 = 5  // an archive directory's inode
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test("importlib's sequence: mkdir __pycache__, create a temporary, write, rename, then sealed")
    func importlibSequence() throws {
        let o = PycacheOverlay(budget: 1000, firstInode: 100)
        let dir = try o.mkdir(parent: pkg, name: bytes("__pycache__"), now: 1)
        #expect(dir == 100 && o.contains(dir) && !o.contains(99))
        let tmp = try o.create(parent: dir, parentIsPycache: true, name: bytes("m.cpython-311.pyc.140234"), now: 2)
        let data: [UInt8] = [1, 2, 3, 4]
        #expect(try data.withUnsafeBytes { try o.write(tmp, offset: 0, bytes: $0, now: 3) } == 4)
        try o.rename(parent: dir, name: bytes("m.cpython-311.pyc.140234"), newParent: dir,
                     newName: bytes("m.cpython-311.pyc"), targetInArchive: false)
        #expect(o.lookup(parent: dir, name: bytes("m.cpython-311.pyc")) == tmp)
        #expect(o.lookup(parent: dir, name: bytes("m.cpython-311.pyc.140234")) == nil)
        #expect(try o.read(tmp, offset: 1, count: 10) { Array($0) } == [2, 3, 4])
        #expect(o.node(tmp)?.sealed == true)
        #expect(throws: FSError.readOnly) { try data.withUnsafeBytes { try o.write(tmp, offset: 0, bytes: $0, now: 4) } }
        #expect(throws: FSError.readOnly) { try o.unlink(parent: dir, name: bytes("m.cpython-311.pyc")) }
        #expect(o.statistics.files == 1 && o.statistics.bytes == 4 && o.statistics.written == 1)
        #expect(o.children(of: pkg).map(\.name) == [bytes("__pycache__")])
    }

    @Test("anything but bytecode in __pycache__ is refused")
    func refusals() throws {
        let o = PycacheOverlay(budget: 1000, firstInode: 100)
        #expect(throws: FSError.readOnly) { try o.mkdir(parent: pkg, name: bytes("other"), now: 0) }
        let dir = try o.mkdir(parent: pkg, name: bytes("__pycache__"), now: 0)
        #expect(throws: FSError.exists) { try o.mkdir(parent: pkg, name: bytes("__pycache__"), now: 0) }
        for name in ["x.txt", "x.py", ".pyc", "x.pyc.12a", "../x.pyc"] {
            #expect(throws: FSError.readOnly, "\(name)") { try o.create(parent: dir, parentIsPycache: true, name: bytes(name), now: 0) }
        }
        #expect(throws: FSError.readOnly) { try o.create(parent: pkg, parentIsPycache: false, name: bytes("m.pyc"), now: 0) }
        _ = try o.create(parent: dir, parentIsPycache: true, name: bytes("a.pyc.1"), now: 0)
        // Only NAME.pyc.N onto NAME.pyc, and never over a member of the archive.
        #expect(throws: FSError.readOnly) {
            try o.rename(parent: dir, name: bytes("a.pyc.1"), newParent: dir, newName: bytes("b.pyc"), targetInArchive: false)
        }
        #expect(throws: FSError.readOnly) {
            try o.rename(parent: dir, name: bytes("a.pyc.1"), newParent: dir, newName: bytes("a.pyc"), targetInArchive: true)
        }
        try o.unlink(parent: dir, name: bytes("a.pyc.1"))
        #expect(o.lookup(parent: dir, name: bytes("a.pyc.1")) == nil)
    }

    @Test("the budget bounds what is held, entries and names included; unlinking a temporary gives it back")
    func budget() throws {
        let cost = PycacheOverlay.entryCost
        // Room for the directory and one temporary (entries and names), and 10 bytes of data.
        let o = PycacheOverlay(budget: 2 * cost + "__pycache__".utf8.count + "a.pyc.1".utf8.count + 10, firstInode: 100)
        let dir = try o.mkdir(parent: pkg, name: bytes("__pycache__"), now: 0)
        let f = try o.create(parent: dir, parentIsPycache: true, name: bytes("a.pyc.1"), now: 0)
        let eight = [UInt8](repeating: 7, count: 8)
        #expect(try eight.withUnsafeBytes { try o.write(f, offset: 0, bytes: $0, now: 0) } == 8)
        #expect(throws: FSError.noSpace) { try eight.withUnsafeBytes { try o.write(f, offset: 8, bytes: $0, now: 0) } }
        #expect(throws: FSError.noSpace) { try o.truncate(f, to: 11) }
        // A second entry does not fit: entries count against the budget, not only data.
        #expect(throws: FSError.noSpace) { try o.create(parent: dir, parentIsPycache: true, name: bytes("b.pyc.2"), now: 0) }
        try o.unlink(parent: dir, name: bytes("a.pyc.1"))
        #expect(o.statistics.bytes == 0 && o.statistics.entries == 1)
        let g = try o.create(parent: dir, parentIsPycache: true, name: bytes("b.pyc.2"), now: 0)
        #expect(try eight.withUnsafeBytes { try o.write(g, offset: 0, bytes: $0, now: 0) } == 8)
    }

    @Test("entries are bounded even when no byte is written")
    func entriesBounded() throws {
        let o = PycacheOverlay(budget: 64 << 10, firstInode: 100)
        let dir = try o.mkdir(parent: pkg, name: bytes("__pycache__"), now: 0)
        var made = 0
        while (try? o.create(parent: dir, parentIsPycache: true, name: bytes("m\(made).pyc.1"), now: 0)) != nil { made += 1 }
        #expect(made > 0 && made < (64 << 10) / PycacheOverlay.entryCost)
        #expect(o.statistics.entries == made + 1 && o.statistics.entryBytes <= o.budget)
    }

    @Test("names over 255 bytes are ENAMETOOLONG in create, mkdir and rename")
    func longNames() throws {
        let o = PycacheOverlay(budget: 1 << 20, firstInode: 100)
        let dir = try o.mkdir(parent: pkg, name: bytes("__pycache__"), now: 0)
        let long = String(repeating: "m", count: 300) + ".cpython-311.pyc"
        #expect(throws: FSError.nameTooLong) { try o.create(parent: dir, parentIsPycache: true, name: bytes(long), now: 0) }
        #expect(throws: FSError.nameTooLong) { try o.create(parent: dir, parentIsPycache: true, name: bytes(long + ".1"), now: 0) }
        #expect(throws: FSError.nameTooLong) { try o.mkdir(parent: pkg, name: bytes(String(repeating: "_", count: 256)), now: 0) }
        // 255 bytes is the largest name that is accepted.
        let fits = String(repeating: "m", count: 255 - ".pyc.1".count) + ".pyc.1"
        _ = try o.create(parent: dir, parentIsPycache: true, name: bytes(fits), now: 0)
        #expect(throws: FSError.nameTooLong) {
            try o.rename(parent: dir, name: bytes(fits), newParent: dir, newName: bytes(long), targetInArchive: false)
        }
        #expect(o.children(of: dir).allSatisfy { $0.name.count <= 255 })
    }

    @Test("100,000 create+write+unlink cycles leave entries, budget and tables flat; inodes are never reused")
    func churn() throws {
        let o = PycacheOverlay(budget: 1 << 20, firstInode: 100)
        let dir = try o.mkdir(parent: pkg, name: bytes("__pycache__"), now: 0)
        let data = [UInt8](repeating: 1, count: 64)
        var last: UInt64 = dir
        func cycle(_ i: Int) throws {
            let name = bytes("m.cpython-311.pyc.\(i)")
            let f = try o.create(parent: dir, parentIsPycache: true, name: name, now: 0)
            #expect(f > last)  // a fresh number: the kernel may still hold the old one
            last = f
            _ = try data.withUnsafeBytes { try o.write(f, offset: 0, bytes: $0, now: 0) }
            try o.unlink(parent: dir, name: name)
            if o.node(f) != nil { Issue.record("node \(f) survived its unlink") }
        }
        for i in 0..<1000 { try cycle(i) }
        let baseline = (o.statistics.entries, o.statistics.entryBytes, o.tableCapacity)
        for i in 1000..<100_000 { try cycle(i) }
        #expect(o.statistics.entries == 1 && o.statistics.bytes == 0)
        #expect((o.statistics.entries, o.statistics.entryBytes, o.tableCapacity) == baseline)
        #expect(o.node(dir)?.isDirectory == true && o.node(dir + 1) == nil)
    }
}

@Suite("In-memory bytecode cache: regressions found by fuzzing")
struct PycacheOverlayRegressionTests {
    @Test("sizes and offsets near 2^63 from the kernel are ENOSPC, not a trap")
    func hugeOffsets() throws {
        let o = PycacheOverlay(budget: 1000, firstInode: 100)
        let dir = try o.mkdir(parent: 5, name: Array("__pycache__".utf8), now: 0)
        let f = try o.create(parent: dir, parentIsPycache: true, name: Array("a.pyc.1".utf8), now: 0)
        #expect(throws: FSError.noSpace) { try o.truncate(f, to: UInt64(Int.max) - 3) }
        #expect(throws: FSError.noSpace) { try o.truncate(f, to: UInt64.max) }
        #expect(throws: FSError.noSpace) { try [UInt8(1)].withUnsafeBytes { try o.write(f, offset: UInt64(Int.max), bytes: $0, now: 0) } }
        #expect(throws: FSError.noSpace) { try [UInt8(1)].withUnsafeBytes { try o.write(f, offset: UInt64.max, bytes: $0, now: 0) } }
    }
}
