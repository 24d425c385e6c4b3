import Foundation
import PyzfsCore
import PyzfsDigest
import PyzfsRun
import PyzfsTestSupport
import Testing

/// SHA-256 from libcrypto against Python's hashlib, byte for byte: the block boundaries, any
/// split of the input into updates, and a real file through the streaming read the pin uses.
@Suite("SHA-256")
struct SHA256Tests {
    /// Deterministic bytes (xorshift64), different for each seed.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    /// Writes each buffer to a file and returns what `hashlib.sha256` prints for each.
    static func pythonDigests(_ buffers: [[UInt8]], in dir: String) -> [String] {
        let paths = buffers.enumerated().map { i, b in
            let path = "\(dir)/input-\(i)"
            #expect(FileManager.default.createFile(atPath: path, contents: Data(b)))
            return path
        }
        let r = run([TestEnvironment.python, "-c",
                     "import hashlib, sys\nfor p in sys.argv[1:]: print(hashlib.sha256(open(p, 'rb').read()).hexdigest())"] + paths)
        #expect(r.status == 0, "\(r)")
        return r.stdout.split(separator: "\n").map(String.init)
    }

    @Test("FIPS 180-2's example: SHA-256 of \"abc\"")
    func knownAnswer() {
        let digest = Array("abc".utf8).withUnsafeBytes { SHA256.hash($0) }
        #expect(hex(digest) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("empty input, 1 byte and the sizes around the 55/56 padding edge and 64-byte blocks equal hashlib's")
    func blockBoundaries() {
        let dir = makeTemporaryDirectory("sha256")
        defer { removeTree(dir) }
        let sizes = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129]
        let buffers = sizes.map { Self.bytes($0, seed: UInt64($0) + 1) }
        let expected = Self.pythonDigests(buffers, in: dir)
        #expect(expected.count == sizes.count)
        for (i, buffer) in buffers.enumerated() where i < expected.count {
            let whole = buffer.withUnsafeBytes { SHA256.hash($0) }
            #expect(hex(whole) == expected[i], "\(sizes[i]) bytes in one update")
            // The same bytes one at a time: the hasher's own buffering, not only libcrypto's one-shot path.
            var hasher = SHA256()
            for b in buffer { hasher.update([b]) }
            let pieces = hex(hasher.finalize())
            #expect(pieces == expected[i], "\(sizes[i]) bytes one by one")
        }
    }

    @Test("5 MiB + 7 bytes fed in odd-sized pieces (1 byte to 1 MiB - 3) equal hashlib's digest of the whole")
    func oddChunks() {
        let dir = makeTemporaryDirectory("sha256")
        defer { removeTree(dir) }
        let buffer = Self.bytes(5 << 20 + 7, seed: 42)
        let expected = Self.pythonDigests([buffer], in: dir)
        let pieces = [1, 3, 55, 56, 63, 64, 65, 4095, 4097, 65537, (1 << 20) - 3, 0, 7]
        var hasher = SHA256()
        var offset = 0, turn = 0
        buffer.withUnsafeBytes { all in
            while offset < all.count {
                let n = min(pieces[turn % pieces.count], all.count - offset)
                hasher.update(UnsafeRawBufferPointer(rebasing: all[offset..<offset + n]))
                offset += n
                turn += 1
            }
        }
        #expect(turn > 50, "the input went through many updates")
        let streamed = hex(hasher.finalize())
        #expect([streamed] == expected)
        #expect([hex(buffer.withUnsafeBytes { SHA256.hash($0) })] == expected)
    }

    @Test("a real file through sha256(of:), the streaming read behind -o sha256= and the extract cache, equals hashlib's: empty, exactly 2 MiB (two reads), 5 MiB + 7")
    func realFile() throws {
        let dir = makeTemporaryDirectory("sha256")
        defer { removeTree(dir) }
        let buffers = [[], Self.bytes(2 << 20, seed: 7), Self.bytes(5 << 20 + 7, seed: 8)]
        let expected = Self.pythonDigests(buffers, in: dir)
        #expect(expected.count == buffers.count)
        for i in 0..<min(buffers.count, expected.count) {
            let file = try ArchiveFile(path: "\(dir)/input-\(i)")
            let digest = try sha256(of: file)
            #expect(digest == expected[i], "\(buffers[i].count) bytes")
            #expect(digest.count == 64 && digest.allSatisfy { "0123456789abcdef".contains($0) }, "as sha256sum prints it")
        }
    }
}
