import PyzfsCore
import PyzfsTestSupport
import Testing

@Suite("Central directory reader")
struct ZipIndexTests {
    func sample() -> ZipWriter {
        var w = ZipWriter()
        w.add("__main__.py", "print('hi')\n")
        w.add("pkg/", "", mode: 0o040755)
        w.add("pkg/mod.py", "X = 1\n")
        return w
    }

    @Test func readsEntriesInOrder() throws {
        let index = try ZipIndex.read(from: MemorySource(sample().bytes()))
        #expect(index.entries.map { index.nameString(of: $0) } == ["__main__.py", "pkg/", "pkg/mod.py"])
        #expect(index.entries[2].uncompressedSize == 6)
        #expect(index.entries[2].crc32 == ZipWriter.crc32(Array("X = 1\n".utf8)))
        #expect(index.entries[2].unixMode == 0o100644)
        #expect(index.offsetShift == 0)
        #expect(!index.isZip64)
    }

    @Test("a prefix with offsets relative to the zip (cat) is found and shifted")
    func catPrefix() throws {
        var w = sample()
        w.prefix = Array("#!/usr/bin/env python3\n".utf8)
        let bytes = w.bytes()
        let source = MemorySource(bytes)
        let index = try ZipIndex.read(from: source)
        #expect(index.offsetShift == UInt64(w.prefix.count))
        #expect(index.dataStart == UInt64(w.prefix.count))
        let reader = MemberReader(source: source, index: index, decoders: [], checksum: ZipWriter.checksum)
        #expect(try reader.readWhole(2) == Array("X = 1\n".utf8))
    }

    @Test("a prefix counted by the offsets (zipapp) needs no shift")
    func absolutePrefix() throws {
        var w = sample()
        w.prefix = Array("#!/usr/bin/python3\n".utf8)
        w.absoluteOffsets = true
        let source = MemorySource(w.bytes())
        let index = try ZipIndex.read(from: source)
        #expect(index.offsetShift == 0)
        #expect(index.dataStart == UInt64(w.prefix.count))
        let reader = MemberReader(source: source, index: index, decoders: [], checksum: ZipWriter.checksum)
        #expect(try reader.readWhole(0) == Array("print('hi')\n".utf8))
    }

    @Test("Zip64 end records and extra fields", arguments: [false, true])
    func zip64(prefixed: Bool) throws {
        var w = sample()
        w.zip64 = true
        if prefixed { w.prefix = Array("#!/bin/sh\n".utf8) }
        let source = MemorySource(w.bytes())
        let index = try ZipIndex.read(from: source)
        #expect(index.isZip64)
        #expect(index.entries.count == 3)
        let reader = MemberReader(source: source, index: index, decoders: [], checksum: ZipWriter.checksum)
        #expect(try reader.readWhole(2) == Array("X = 1\n".utf8))
    }

    @Test func commentAndExtendedTimestamp() throws {
        var w = sample()
        w.comment = Array("a comment with PK\u{5}\u{6} inside".utf8)
        // 0x5455 with the mtime flag: 2001-09-09T01:46:40Z.
        w.members[0].extraCentral = [0x55, 0x54, 5, 0, 1, 0x00, 0xCA, 0x9A, 0x3B]
        let index = try ZipIndex.read(from: MemorySource(w.bytes()))
        #expect(index.comment == w.comment)
        #expect(index.entries[0].extendedMtime == 1_000_000_000)
    }

    @Test func cp437Names() throws {
        var w = ZipWriter()
        var m = ZipWriter.Member("x", [], mode: 0o100644)
        m.name = [0x63, 0x61, 0x66, 0x82]  // "café" in CP437
        m.flags = 0
        w.members.append(m)
        let index = try ZipIndex.read(from: MemorySource(w.bytes()))
        #expect(index.nameString(of: index.entries[0]) == "café")
    }

    @Test("what is not a zip is refused with a reason")
    func refusals() {
        #expect(throws: ArchiveError.notZip(path: "archive", reason: "the file is empty")) {
            try ZipIndex.read(from: MemorySource([]))
        }
        #expect(throws: ArchiveError.notZip(path: "archive", reason: "no end-of-central-directory record")) {
            try ZipIndex.read(from: MemorySource(Array(repeating: 0x41, count: 5000)))
        }
        #expect(throws: ArchiveError.notZip(path: "archive", reason: "10 bytes is too small for a zip")) {
            try ZipIndex.read(from: MemorySource(Array(repeating: 0, count: 10)))
        }
    }

    @Test("a damaged or cut central directory is refused")
    func damaged() {
        var bytes = sample().bytes()
        // Cut the middle of the file away: the end record points at bytes that are not there.
        let cut = Array(bytes[0..<20]) + Array(bytes[(bytes.count - 22)...])
        #expect(throws: ArchiveError.self) { try ZipIndex.read(from: MemorySource(cut)) }
        // Break the first central header's signature.
        bytes[Int(firstCentralOffset(bytes))] = 0
        #expect(throws: ArchiveError.self) { try ZipIndex.read(from: MemorySource(bytes)) }
    }

    func firstCentralOffset(_ b: [UInt8]) -> UInt32 {
        let e = b.count - 22
        return UInt32(b[e + 16]) | UInt32(b[e + 17]) << 8 | UInt32(b[e + 18]) << 16 | UInt32(b[e + 19]) << 24
    }

    @Test("local headers are checked before data is served")
    func localHeader() throws {
        var w = sample()
        w.members[0].data = Array("print('hi')\n".utf8)
        var bytes = w.bytes()
        bytes[0] = 0  // break the first local header's signature
        let source = MemorySource(bytes)
        let index = try ZipIndex.read(from: source)
        #expect(throws: MemberError.corrupt("no local header at offset 0")) {
            try index.dataOffset(of: index.entries[0], in: source)
        }
    }
}
