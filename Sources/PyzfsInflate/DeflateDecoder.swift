import CDeflate
import PyzfsCore

/// CRC-32 as zip computes it, from libdeflate (carry-less multiply where the CPU has it).
public let crc32: Checksum = { crc, bytes in
    guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
    return libdeflate_crc32(crc, base, bytes.count)
}

/// Whole-buffer inflate of deflate members with libdeflate: the compressed bytes are read in one
/// `pread` and decompressed in one call, several times faster than zlib's streaming inflate.
public struct DeflateDecoder: MemberDecoder {
    let source: any ByteSource

    public init(source: any ByteSource) { self.source = source }

    public func decodesWhole(method: UInt16) -> Bool { method == 8 }

    public func openStream(_ member: MemberLocation) throws(MemberError) -> (any MemberStream)? { nil }

    public func decode(_ member: MemberLocation, into destination: UnsafeMutableRawBufferPointer) throws(MemberError) {
        let entry = member.entry
        guard entry.compressedSize <= UInt64(Int.max) else { throw .corrupt("compressed size \(entry.compressedSize) is implausible") }
        let compressed = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, Int(entry.compressedSize)), alignment: 16)
        defer { compressed.deallocate() }
        let input = UnsafeMutableRawBufferPointer(rebasing: compressed[0..<Int(entry.compressedSize)])
        try source.readMember(into: input, at: member.dataOffset)
        try Self.inflate(UnsafeRawBufferPointer(input), into: destination)
        let actual = crc32(0, UnsafeRawBufferPointer(destination))
        guard actual == entry.crc32 else { throw .crcMismatch(expected: entry.crc32, actual: actual) }
    }

    /// Inflates raw deflate data into exactly `destination.count` bytes.
    /// - Throws: `.sizeMismatch` when the data holds more or fewer bytes, `.corrupt` when it is invalid.
    public static func inflate(_ input: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws(MemberError) {
        // A decompressor is ~32 KiB and not thread-safe; one per call is cheaper than a lock.
        guard let d = libdeflate_alloc_decompressor() else { throw .corrupt("out of memory") }
        defer { libdeflate_free_decompressor(d) }
        var produced = 0
        var consumed = 0
        let result = libdeflate_deflate_decompress_ex(d, input.baseAddress, input.count,
                                                      destination.baseAddress, destination.count,
                                                      &consumed, &produced)
        switch result {
        case LIBDEFLATE_SUCCESS:
            guard produced == destination.count else {
                throw .sizeMismatch(declared: UInt64(destination.count), actual: UInt64(produced))
            }
        case LIBDEFLATE_INSUFFICIENT_SPACE:
            // More data than the directory declares: never serve more than declared.
            throw .sizeMismatch(declared: UInt64(destination.count), actual: UInt64(destination.count) + 1)
        default:
            throw .corrupt("invalid deflate data")
        }
    }
}
