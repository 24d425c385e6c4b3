import Foundation
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

@Suite("libzip handles are bounded and shared")
struct LibzipHandleTests {
    @Test("ten streams read in turn and from four threads at once share at most two handles")
    func streamsShareHandles() throws {
        let file = try ArchiveFile(path: Fixtures.shared.archive("bzip2"))
        let index = try ZipIndex.read(from: file, path: file.path)
        let decoder = LibzipDecoder(archive: file, index: index, maxHandles: 2)
        let reader = MemberReader(source: file, index: index, decoders: [decoder], checksum: crc32)
        let members = index.entries.indices.filter { index.entries[$0].uncompressedSize > 0 }
        try #require(!members.isEmpty)
        var streams: [(Int, any MemberStream, [UInt8])] = []
        for k in 0..<10 {
            let i = members[k % members.count]
            streams.append((i, try #require(try decoder.openStream(reader.locate(i))), []))
        }
        // In turn: a little of each, until all are done.
        var active = true
        while active {
            active = false
            for s in streams.indices {
                var chunk = [UInt8](repeating: 0, count: 1000)
                let n = try withMutableBytes(&chunk) { (p) throws(MemberError) -> Int in try streams[s].1.read(into: p) }
                if n > 0 { active = true; streams[s].2 += chunk[0..<n] }
            }
        }
        for (i, _, bytes) in streams { #expect(bytes == (try reader.readWhole(i, limit: 1 << 30))) }
        #expect(decoder.handleCount <= 2)
        streams.removeAll()
        let failures = Counter()
        onThreads(4) { t in
            for i in members {
                guard let s = try? decoder.openStream(reader.locate(i)) else { failures.increment(); continue }
                var all: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 4096 + t)
                while let n = try? withMutableBytes(&chunk, { (p) throws(MemberError) -> Int in try s.read(into: p) }), n > 0 {
                    all += chunk[0..<n]
                }
                if all != (try? reader.readWhole(i, limit: 1 << 30)) { failures.increment() }
            }
        }
        #expect(failures.value == 0)
        #expect(decoder.handleCount <= 2)
    }
}
