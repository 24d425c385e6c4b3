import CZlib
import PyzfsCore

/// Resumable inflate of deflate members with zlib (libdeflate cannot resume mid-stream):
/// `Z_BLOCK` stops at block boundaries, where `inflatePrime` and `inflateSetDictionary` can
/// start again later. Reads the compressed bytes with `pread` in steps of up to 256 KiB.
public struct ZlibCheckpointInflater: CheckpointInflater {
    let source: any ByteSource
    static let inputStep = 256 << 10
    static let windowSize = 32 << 10

    public init(source: any ByteSource) { self.source = source }

    public func indexes(method: UInt16) -> Bool { method == 8 }

    public func inflate(_ member: MemberLocation, from start: Checkpoint?, into output: UnsafeMutableRawBufferPointer,
                        stopAfter: Int?) throws(MemberError) -> (produced: Int, boundary: Checkpoint?) {
        var strm = z_stream()
        guard pyzfs_zlib_inflate_init2(&strm, -15) == Z_OK else { throw .corrupt("zlib: cannot initialise") }
        defer { inflateEnd(&strm) }
        let entry = member.entry
        var input = start?.input ?? 0           // compressed bytes consumed, from the member's data start
        let outputBase = start?.output ?? 0
        if let start {
            // The checkpoint's byte was partly used: feed its remaining bits first.
            if start.bits > 0 {
                guard start.input > 0 else { throw .corrupt("bad checkpoint") }
                var byte: UInt8 = 0
                try withUnsafeMutableBytes(of: &byte) { (p) throws(MemberError) in
                    try source.readMember(into: p, at: member.dataOffset + start.input - 1)
                }
                guard inflatePrime(&strm, start.bits, Int32(byte >> (8 - UInt8(start.bits)))) == Z_OK else {
                    throw .corrupt("zlib: cannot prime")
                }
            }
            if !start.window.isEmpty {
                let rc = start.window.withUnsafeBytes {
                    inflateSetDictionary(&strm, $0.baseAddress!.assumingMemoryBound(to: Bytef.self), uInt($0.count))
                }
                guard rc == Z_OK else { throw .corrupt("zlib: cannot set the dictionary") }
            }
        }
        // Input in steps of a quarter of the output wanted (a chunk of text needs a few KiB of
        // input for each 32 KiB of output), at most 256 KiB: under glibc's mmap threshold (128
        // KiB here), the step buffer comes from the heap instead of fresh pages faulted in and
        // zeroed on every call (a third of the first pass's time with 256 KiB steps).
        let step = min(Self.inputStep, max(16 << 10, (stopAfter ?? output.count) / 4))
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: step, alignment: 16)
        defer { chunk.deallocate() }
        var produced = 0
        var boundary: Checkpoint? = nil
        var finished = false
        while produced < output.count && !finished {
            if strm.avail_in == 0 {
                let left = entry.compressedSize - input
                guard left > 0 else { throw .corrupt("the compressed data ends early") }
                let n = Int(min(UInt64(step), left))
                try source.readMember(into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<n]), at: member.dataOffset + input)
                strm.next_in = chunk.baseAddress!.assumingMemoryBound(to: Bytef.self)
                strm.avail_in = uInt(n)
                input += UInt64(n)
            }
            let room = output.count - produced
            strm.next_out = (output.baseAddress! + produced).assumingMemoryBound(to: Bytef.self)
            strm.avail_out = uInt(min(room, Int(UInt32.max)))
            let before = Int(strm.avail_out)
            let rc = zInflate(&strm, stopAfter != nil ? Z_BLOCK : Z_NO_FLUSH)
            produced += before - Int(strm.avail_out)
            switch rc {
            case Z_OK, Z_BUF_ERROR:
                break
            case Z_STREAM_END:
                finished = true
            default:
                throw .corrupt("invalid deflate data")
            }
            // At the end of a block (bit 7), not the last one (bit 6), past the requested size.
            if let stopAfter, produced >= stopAfter, !finished, strm.data_type & 128 != 0, strm.data_type & 64 == 0 {
                let consumed = input - UInt64(strm.avail_in)
                let windowStart = max(0, produced - Self.windowSize)
                var window = Array(UnsafeRawBufferPointer(rebasing: output[windowStart..<produced]))
                if window.count < Self.windowSize, let previous = start?.window {
                    window = Array(previous.suffix(Self.windowSize - window.count)) + window
                }
                boundary = Checkpoint(output: outputBase + UInt64(produced), input: consumed,
                                      bits: strm.data_type & 7, window: window)
                break
            }
        }
        if !finished && produced == output.count && outputBase + UInt64(produced) >= entry.uncompressedSize {
            // Declared size reached: anything more in the stream is a lie about the size.
            var probe: UInt8 = 0
            strm.next_out = withUnsafeMutablePointer(to: &probe) { $0 }
            strm.avail_out = 1
            let rc = zInflate(&strm, Z_NO_FLUSH)
            if strm.avail_out == 0 { throw .sizeMismatch(declared: entry.uncompressedSize, actual: entry.uncompressedSize + 1) }
            if rc != Z_STREAM_END && rc != Z_OK && rc != Z_BUF_ERROR { throw .corrupt("invalid deflate data") }
        }
        return (produced, boundary)
    }

}

/// `inflate` under another name: the module's own `inflate` would shadow zlib's.
@inline(__always)
private func zInflate(_ strm: UnsafeMutablePointer<z_stream>, _ flush: Int32) -> Int32 { CZlib.inflate(strm, flush) }
