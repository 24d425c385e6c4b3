import PyzfsCore
import PyzfsInflate
import PyzfsTestSupport
import PyzfsZip
import Testing

/// pyzfs's central-directory reader against libzip's, on archives written by Python.
@Suite("Reader cross-checked with libzip")
struct CrossCheckTests {
    static let fixtures = ["stored", "deflate", "bzip2", "catprefix", "zipapp", "notypebits", "dates1980",
                           "nodirs", "symlinks", "many", "badcrc"]

    func open(_ name: String) throws -> (ArchiveFile, ZipIndex, MemberReader) {
        let file = try ArchiveFile(path: Fixtures.shared.archive(name))
        let index = try ZipIndex.read(from: file, path: file.path)
        let reader = MemberReader(source: file, index: index,
                                  decoders: [DeflateDecoder(source: file), LibzipDecoder(archive: file, index: index)],
                                  checksum: crc32)
        return (file, index, reader)
    }

    @Test("same members, names, sizes, CRCs, methods and attributes", arguments: fixtures)
    func sameDirectory(name: String) throws {
        let (file, index, _) = try open(name)
        #expect(!index.entries.isEmpty)
        let reference = try LibzipListing.entries(path: file.path, start: index.offsetShift)
        #expect(reference.count == index.entries.count)
        for (ours, theirs) in zip(index.entries, reference) {
            #expect(Array(index.name(of: ours)) == theirs.name)
            #expect(ours.uncompressedSize == theirs.size)
            #expect(ours.compressedSize == theirs.compressedSize)
            #expect(ours.crc32 == theirs.crc32)
            #expect(ours.method == theirs.method)
            #expect(ours.externalAttributes == theirs.externalAttributes)
        }
    }

    @Test("every member decodes to the bytes libzip streams", arguments: ["stored", "deflate", "bzip2", "catprefix", "zipapp"])
    func sameBytes(name: String) throws {
        let (file, index, reader) = try open(name)
        #expect(!index.entries.isEmpty)
        let libzip = LibzipDecoder(archive: file, index: index)
        for i in index.entries.indices {
            let ours = try reader.readWhole(i, limit: 1 << 30)
            let location = try reader.locate(i)
            let stream = try #require(try libzip.openStream(location))
            var theirs = [UInt8](repeating: 0, count: ours.count + 1)
            var done = 0
            while true {
                let n = try withMutableBytes(&theirs) { (p) throws(MemberError) -> Int in
                    try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: p[done...]))
                }
                if n == 0 { break }
                done += n
            }
            #expect(done == ours.count)
            #expect(Array(theirs[0..<done]) == ours, "\(index.nameString(of: index.entries[i]))")
        }
    }

    @Test("libzip alone refuses a cat-prefixed archive; with the prefix pyzfs finds, it opens")
    func catPrefixNeedsTheShift() throws {
        let (file, index, _) = try open("catprefix")
        #expect(index.offsetShift == 23)
        #expect(LibzipListing.open(path: file.path) != nil)
        #expect(LibzipListing.open(path: file.path, start: index.offsetShift) == nil)
    }

    @Test("bad CRCs are caught by libdeflate's path and by libzip's")
    func badCRC() throws {
        let (file, index, reader) = try open("badcrc")
        func member(_ n: String) -> Int { index.entries.firstIndex { index.nameString(of: $0) == n }! }
        #expect(try reader.readWhole(member("good.txt")) == Array("good\n".utf8))
        #expect(throws: MemberError.self) { try reader.readWhole(member("bad-stored.txt")) }
        #expect {
            try reader.readWhole(member("bad-deflated.txt"))
        } throws: { error in
            if case .crcMismatch = error as? MemberError { return true }
            return false
        }
        let libzipOnly = MemberReader(source: file, index: index, decoders: [LibzipDecoder(archive: file, index: index)], checksum: crc32)
        #expect {
            try libzipOnly.readWhole(member("bad-deflated.txt"))
        } throws: { error in
            if case .crcMismatch = error as? MemberError { return true }
            return false
        }
    }

    @Test("never more bytes than declared: a member that inflates larger or smaller is refused")
    func declaredSizeIsEnforced() throws {
        let (file, index, reader) = try open("deflate")
        let i = index.entries.firstIndex { index.nameString(of: $0) == "text/lorem.txt" }!
        let real = try reader.locate(i)
        for size in [real.entry.uncompressedSize - 1, real.entry.uncompressedSize + 1, 10] {
            var e = real.entry
            e.uncompressedSize = size
            let lying = MemberLocation(index: i, entry: e, dataOffset: real.dataOffset)
            var out = [UInt8](repeating: 0, count: Int(size))
            for decoder in [DeflateDecoder(source: file) as any MemberDecoder] {
                #expect(throws: MemberError.self) {
                    try withMutableBytes(&out) { (p) throws(MemberError) in try decoder.decode(lying, into: p) }
                }
            }
        }
    }

    @Test("methods Debian's libzip lacks are reported, not guessed")
    func methods() {
        #expect(LibzipDecoder.supports(method: 8))
        #expect(LibzipDecoder.supports(method: 12))
        #expect(!LibzipDecoder.supports(method: 42))
    }
}
