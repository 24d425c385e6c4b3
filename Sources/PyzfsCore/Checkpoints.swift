/// A place in a deflate stream where inflating can start again (as zlib's examples/zran.c
/// does): the output and input offsets of a block boundary, the bits of the input byte already
/// used, and the 32 KiB of output before it that back-references may reach.
public struct Checkpoint: Sendable {
    public var output: UInt64
    public var input: UInt64
    public var bits: Int32
    public var window: [UInt8]
    public init(output: UInt64, input: UInt64, bits: Int32, window: [UInt8]) {
        self.output = output
        self.input = input
        self.bits = bits
        self.window = window
    }
}

/// Inflates a deflate member from any checkpoint, and records new checkpoints on the way.
public protocol CheckpointInflater: Sendable {
    /// Whether members of `method` can be indexed.
    func indexes(method: UInt16) -> Bool
    /// Inflates from `start` (nil: the member's start) into `output` until it is full, the
    /// member ends, or (when `stopAfter` is given) at the first block boundary at or after that
    /// many bytes; returns the bytes produced and, when stopped at a boundary, the checkpoint there.
    /// - Throws: `.corrupt` for invalid data, `.sizeMismatch` for data past the declared size.
    func inflate(_ member: MemberLocation, from start: Checkpoint?, into output: UnsafeMutableRawBufferPointer,
                 stopAfter: Int?) throws(MemberError) -> (produced: Int, boundary: Checkpoint?)
}
