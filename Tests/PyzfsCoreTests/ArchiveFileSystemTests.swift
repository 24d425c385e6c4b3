import Foundation
import Glibc
import PyzfsCore
import PyzfsTestSupport
import Testing

@Suite("Filesystem without FUSE")
struct ArchiveFileSystemTests {
    @Test func readsRangesAndStopsAtTheEnd() throws {
        var w = ZipWriter()
        w.add("f.txt", "0123456789")
        let fs = try memoryFileSystem(w)
        let f = try #require(fs.tree.lookup(path: "f.txt"))
        #expect(try fs.read(f, offset: 2, count: 3) { Array($0) } == Array("234".utf8))
        #expect(try fs.read(f, offset: 8, count: 100) { Array($0) } == Array("89".utf8))
        #expect(try fs.read(f, offset: 10, count: 100) { $0.count } == 0)
        #expect(try fs.read(f, offset: 1000, count: 100) { $0.count } == 0)
    }

    @Test func attributes() throws {
        var w = ZipWriter()
        w.add("d/x.py", "abc", mode: 0o100755)
        w.add("link", "d/x.py", mode: 0o120777)
        let fs = try memoryFileSystem(w)
        let x = fs.attributes(of: try #require(fs.tree.lookup(path: "d/x.py")))
        #expect(x.mode == 0o100755 && x.size == 3 && x.uid == 1000 && x.linkCount == 1)
        let d = fs.attributes(of: try #require(fs.tree.lookup(path: "d")))
        #expect(d.mode == 0o040755 && d.linkCount == 2)
        let l = fs.attributes(of: try #require(fs.tree.lookup(path: "link")))
        #expect(l.mode == 0o120777 && l.size == 6)
        #expect(fs.attributes(of: Tree.root).linkCount == 3)
    }

    @Test("write intent and wrong kinds are refused")
    func refusals() throws {
        var w = ZipWriter()
        w.add("f", "x")
        w.add("d/", "", mode: 0o040755)
        let fs = try memoryFileSystem(w)
        let f = try #require(fs.tree.lookup(path: "f")), d = try #require(fs.tree.lookup(path: "d"))
        #expect(throws: FSError.readOnly) { try fs.open(f, flags: O_WRONLY) }
        #expect(throws: FSError.readOnly) { try fs.open(f, flags: O_RDWR) }
        #expect(throws: FSError.readOnly) { try fs.open(f, flags: O_RDONLY | O_TRUNC) }
        #expect(throws: FSError.isDirectory) { try fs.open(d, flags: O_RDONLY) }
        #expect(throws: FSError.isDirectory) { try fs.read(d, offset: 0, count: 1) { _ in () } }
        #expect(throws: FSError.notDirectory) { try fs.children(of: f) }
        try fs.open(f, flags: O_RDONLY)
    }

    /// A filesystem whose stored member `name` holds `text` under the wrong CRC 0x12345678 (and
    /// `beside`, a good member), and that member's node.
    func badStoredMember(_ name: String, _ text: String, beside: (String, String)? = nil) throws -> (ArchiveFileSystem, Int) {
        var w = ZipWriter()
        var m = ZipWriter.Member(name, Array(text.utf8))
        m.crcOverride = 0x1234_5678
        w.members.append(m)
        if let (other, contents) = beside { w.add(other, contents) }
        let fs = try memoryFileSystem(w)
        return (fs, try #require(fs.tree.lookup(path: name)))
    }

    @Test("a stored member read through with a wrong CRC fails then and afterwards")
    func storedCRC() throws {
        let (fs, bad) = try badStoredMember("bad", "0123456789", beside: ("good", "fine"))
        #expect(try fs.read(bad, offset: 0, count: 5) { $0.count } == 5)
        #expect(throws: FSError.member(.crcMismatch(expected: 0x1234_5678, actual: ZipWriter.crc32(Array("0123456789".utf8))))) {
            try fs.read(bad, offset: 5, count: 5) { _ in () }
        }
        #expect(throws: FSError.self) { try fs.read(bad, offset: 0, count: 1) { _ in () } }
        let good = try #require(fs.tree.lookup(path: "good"))
        #expect(try fs.read(good, offset: 0, count: 10) { Array($0) } == Array("fine".utf8))
    }

    @Test("a read that overlaps the checked start of a stored member continues its CRC (a pyc's header, then the whole pyc)")
    func storedCRCAfterAHeaderRead() throws {
        let (fs, bad) = try badStoredMember("bad.pyc", "0123456789abcdefGHIJKLMNOP")
        #expect(try fs.read(bad, offset: 0, count: 16) { $0.count } == 16)
        #expect(throws: FSError.member(.crcMismatch(expected: 0x1234_5678, actual: ZipWriter.crc32(Array("0123456789abcdefGHIJKLMNOP".utf8))))) {
            try fs.read(bad, offset: 0, count: 4096) { _ in () }
        }
    }

    @Test("compressed members go through decoders and the cache; large ones are streamed")
    func decodersAndStreams() throws {
        var w = ZipWriter()
        var m = ZipWriter.Member("big", Array(repeating: 7, count: 5000))
        m.method = 99  // "compressed" by the fake decoder below: the bytes are stored as they are
        w.members.append(m)
        let source = MemorySource(w.bytes())
        let index = try ZipIndex.read(from: source)
        let decoder = FakeDecoder(source: source)
        let reader = MemberReader(source: source, index: index, decoders: [decoder], checksum: ZipWriter.checksum)
        let tree = Tree(index: index)
        for budget in [1 << 20, 1000] {
            let fs = ArchiveFileSystem(tree: tree, reader: reader, cacheBudget: budget, ownership: Ownership(uid: 0, gid: 0))
            let big = try #require(fs.tree.lookup(path: "big"))
            var all: [UInt8] = []
            var offset: UInt64 = 0
            while true {
                let chunk = try fs.read(big, offset: offset, count: 1024) { Array($0) }
                if chunk.isEmpty { break }
                all += chunk
                offset += UInt64(chunk.count)
            }
            #expect(all == Array(repeating: 7, count: 5000))
            #expect(try fs.read(big, offset: 4000, count: 10) { Array($0) } == Array(repeating: 7, count: 10))
        }
    }
}

@Suite("The request loop never waits")
struct NeverWaitTests {
    /// A filesystem of two method-99 members of 100 bytes whose decoding waits for `gate`.
    func blockedFileSystem(budget: Int, gate: Gate, started: Gate) throws -> (ArchiveFileSystem, Int, Int) {
        var w = ZipWriter()
        for name in ["a", "b"] {
            var m = ZipWriter.Member(name, Array(repeating: 1, count: 100))
            m.method = 99
            w.members.append(m)
        }
        let source = MemorySource(w.bytes())
        let index = try ZipIndex.read(from: source)
        let decoder = GatedDecoder(inner: FakeDecoder(source: source), gate: gate, started: started)
        let reader = MemberReader(source: source, index: index, decoders: [decoder], checksum: ZipWriter.checksum)
        let fs = ArchiveFileSystem(tree: Tree(index: index), reader: reader, cacheBudget: budget, ownership: Ownership(uid: 0, gid: 0))
        return (fs, fs.tree.lookup(path: "a")!, fs.tree.lookup(path: "b")!)
    }

    @Test("a member another thread is decoding, or a budget full of loading members: wouldBlock, not a wait")
    func busyMemberAndFullBudget() throws {
        let gate = Gate(), started = Gate()
        let (fs, a, b) = try blockedFileSystem(budget: 150, gate: gate, started: started)
        let worker = Thread { _ = try? fs.read(a, offset: 0, count: 10) { $0.count } }
        worker.start()
        started.waitUntilOpen()
        // The calls that must not wait run on a thread of their own, watched: if one waits for
        // the decode, the gate is opened after the deadline and the test fails instead of hanging.
        let answers = Answers()
        let done = DispatchSemaphore(value: 0)
        Thread {
            for n in [a, b] {
                do throws(FSError) { try fs.read(n, offset: 0, count: 10, mayWait: false) { _ in () }; answers.add(nil) } catch { answers.add(error) }
            }
            done.signal()
        }.start()
        let waited = done.wait(timeout: .now() + 30) == .timedOut
        gate.open()
        if waited { done.wait() }
        #expect(!waited, "a read that may not wait waited for another thread's decode or for room")
        #expect(answers.all == [.wouldBlock, .wouldBlock])
        #expect(try fs.read(a, offset: 0, count: 10) { $0.count } == 10)
        #expect(try fs.read(b, offset: 0, count: 10) { $0.count } == 10)
    }
}

/// The errors a thread saw, in order (nil for an answer).
final class Answers: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [FSError?] = []
    func add(_ e: FSError?) { lock.withLock { values.append(e) } }
    var all: [FSError?] { lock.withLock { values } }
}

/// Decodes through `inner` once `gate` opens; opens `started` when the first decode begins.
struct GatedDecoder: MemberDecoder {
    let inner: FakeDecoder
    let gate: Gate
    let started: Gate
    func decodesWhole(method: UInt16) -> Bool { inner.decodesWhole(method: method) }
    func decode(_ member: MemberLocation, into destination: UnsafeMutableRawBufferPointer) throws(MemberError) {
        started.open()
        gate.waitUntilOpen()
        try inner.decode(member, into: destination)
    }
    func openStream(_ member: MemberLocation) throws(MemberError) -> (any MemberStream)? { try inner.openStream(member) }
}

/// Treats method 99 as stored, through the whole-buffer and the stream interfaces.
struct FakeDecoder: MemberDecoder {
    let source: MemorySource
    func decodesWhole(method: UInt16) -> Bool { method == 99 }
    func decode(_ member: MemberLocation, into destination: UnsafeMutableRawBufferPointer) throws(MemberError) {
        _ = try? source.readFully(into: destination, at: member.dataOffset)
    }
    func openStream(_ member: MemberLocation) throws(MemberError) -> (any MemberStream)? {
        member.entry.method == 99 ? FakeStream(source: source, member: member) : nil
    }
}

final class FakeStream: MemberStream {
    let source: MemorySource
    let member: MemberLocation
    var position: UInt64 = 0
    init(source: MemorySource, member: MemberLocation) { self.source = source; self.member = member }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(MemberError) -> Int {
        let left = member.entry.uncompressedSize - position
        let n = Int(min(UInt64(buffer.count), left))
        _ = try? source.readFully(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]), at: member.dataOffset + position)
        position += UInt64(n)
        return n
    }
}

@Suite("Filesystem: regressions found by fuzzing")
struct ArchiveFileSystemRegressionTests {
    @Test("an empty member whose CRC is not 0 fails instead of reading as empty")
    func emptyMemberWithCRC() throws {
        var w = ZipWriter()
        var m = ZipWriter.Member("empty", [])
        m.crcOverride = 0xDEAD_BEEF
        w.members.append(m)
        w.add("fine", "")
        let fs = try memoryFileSystem(w)
        #expect(throws: FSError.member(.crcMismatch(expected: 0xDEAD_BEEF, actual: 0))) {
            try fs.read(fs.tree.lookup(path: "empty")!, offset: 0, count: 10) { _ in () }
        }
        #expect(try fs.read(fs.tree.lookup(path: "fine")!, offset: 0, count: 10) { $0.count } == 0)
        #expect(throws: MemberError.self) { try fs.reader.readWhole(0) }
    }
}
