/// Random access to a deflate member larger than the cache: inflated in chunks that start at
/// checkpoints (recorded the first time the member is inflated in order), each chunk cached
/// like a small member. A read far into a fresh member inflates up to it once; later reads
/// anywhere inflate at most one chunk. The member's CRC-32 is checked when that first pass
/// reaches its end; a mismatch fails every later read.
final class LargeMemberIndex: @unchecked Sendable {
    // @unchecked: `checkpoints`, `complete`, `crc`, `failure` are guarded by `lock`;
    // `builder` serialises extensions of the index.
    let member: MemberLocation
    let spacing: Int
    private let lock = ConditionLock()
    private let builder = ConditionLock()
    private var checkpoints: [Checkpoint]
    private var complete = false
    private var crc: UInt32 = 0
    private var failure: MemberError? = nil
    /// End of the last read, to recognise sequential reading (and read ahead).
    private var lastEnd: UInt64 = 0
    /// The chunk whose read-ahead was last scheduled.
    private var lastAhead = -1

    /// Chunks of about `spacing` bytes: at most 512 checkpoints (16 MiB of windows) a member.
    static func spacing(for size: UInt64) -> Int { Int(max(1 << 20, size / 512)) }
    /// A deflate block may run past the spacing; beyond this the member is streamed instead.
    static func chunkCapacity(_ spacing: Int) -> Int { spacing * 2 + (8 << 20) }

    init(member: MemberLocation) {
        self.member = member
        spacing = Self.spacing(for: member.entry.uncompressedSize)
        checkpoints = [Checkpoint(output: 0, input: 0, bits: 0, window: [])]
    }

    var size: UInt64 { member.entry.uncompressedSize }

    /// Cache key of chunk `k` (negative: member keys are indexes, never negative).
    func key(_ k: Int) -> Int { -1 - (member.index << 24 | k) }

    /// The chunk holding `offset` and its range, if the index reaches that far.
    private func chunk(containing offset: UInt64) -> (k: Int, start: UInt64, end: UInt64)? {
        lock.withLock {
            var lo = 0, hi = checkpoints.count - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if checkpoints[mid].output <= offset { lo = mid } else { hi = mid - 1 }
            }
            if lo + 1 < checkpoints.count { return (lo, checkpoints[lo].output, checkpoints[lo + 1].output) }
            if complete { return (lo, checkpoints[lo].output, size) }
            return nil
        }
    }

    /// Whether `offset..<offset+length` is in chunks held by the cache now.
    func isCached(offset: UInt64, length: Int, cache: MemberCache) -> Bool {
        var at = offset
        while at < offset + UInt64(length) {
            guard let c = chunk(containing: at), cache.contains(key(c.k)) else { return false }
            at = c.end
        }
        return true
    }

    /// Reads `length` bytes at `offset` (within the member) through the cache.
    func read<R>(offset: UInt64, length: Int, cache: MemberCache, inflater: any CheckpointInflater,
                 readAhead: ((@escaping @Sendable () -> Void) -> Void)?,
                 _ body: (UnsafeRawBufferPointer) -> R) throws(MemberError) -> R {
        if let f = lock.withLock({ failure }) { throw f }
        // Within one chunk (nearly always): serve its bytes as they are.
        let (k0, start0, buffer0) = try chunkBuffer(containing: offset, cache: cache, inflater: inflater)
        if Int(offset - start0) + length <= buffer0.count {
            if let f = lock.withLock({ failure }) { throw f }
            scheduleReadAhead(offset: offset, length: length, chunk: k0, cache: cache, inflater: inflater, readAhead: readAhead)
            let from = Int(offset - start0)
            return body(UnsafeRawBufferPointer(rebasing: buffer0.contents[from..<from + length]))
        }
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, length), alignment: 16)
        defer { out.deallocate() }
        var done = 0
        var lastChunk = 0
        while done < length {
            let at = offset + UInt64(done)
            let (k, start, buffer) = try chunkBuffer(containing: at, cache: cache, inflater: inflater)
            let from = Int(at - start)
            let n = min(length - done, buffer.count - from)
            guard n > 0 else { throw .sizeMismatch(declared: size, actual: start + UInt64(buffer.count)) }
            (out.baseAddress! + done).copyMemory(from: buffer.contents.baseAddress! + from, byteCount: n)
            done += n
            lastChunk = k
        }
        if let f = lock.withLock({ failure }) { throw f }
        scheduleReadAhead(offset: offset, length: length, chunk: lastChunk, cache: cache, inflater: inflater, readAhead: readAhead)
        return body(UnsafeRawBufferPointer(out))
    }

    /// Reading in order: inflate the next chunks on another thread while this one is served.
    private func scheduleReadAhead(offset: UInt64, length: Int, chunk k: Int, cache: MemberCache,
                                   inflater: any CheckpointInflater, readAhead: ((@escaping @Sendable () -> Void) -> Void)?) {
        let (sequential, first) = lock.withLock { () -> (Bool, Bool) in
            defer { lastEnd = offset + UInt64(length) }
            let entering = lastAhead != k
            if offset == lastEnd && entering { lastAhead = k }
            return (offset == lastEnd, entering)
        }
        guard sequential, first, let readAhead else { return }
        readAhead { [self] in
            // Two chunks ahead: one being read while the next is inflated.
            var at = self.nextChunkStart(after: k) ?? offset + UInt64(length)
            for _ in 0..<2 where at < self.size {
                guard let (_, start, buffer) = try? self.chunkBuffer(containing: at, cache: cache, inflater: inflater) else { return }
                at = start + UInt64(buffer.count)
            }
        }
    }

    private func nextChunkStart(after k: Int) -> UInt64? {
        lock.withLock { k + 1 < checkpoints.count ? checkpoints[k + 1].output : nil }
    }

    /// The cached chunk holding `offset`, inflating it (and the index up to it) if need be.
    private func chunkBuffer(containing offset: UInt64, cache: MemberCache,
                             inflater: any CheckpointInflater) throws(MemberError) -> (Int, UInt64, MemberBuffer) {
        while true {
            if let c = chunk(containing: offset) {
                if let held = cache.held(key(c.k)) { return (c.k, c.start, held) }
                let start = lock.withLock { checkpoints[c.k] }
                let buffer = try cache.buffer(for: key(c.k), size: Int(c.end - c.start)) { (destination) throws(MemberError) in
                    let r = try inflater.inflate(member, from: start.output == 0 ? nil : start, into: destination, stopAfter: nil)
                    guard r.produced == destination.count else {
                        throw .sizeMismatch(declared: size, actual: start.output + UInt64(r.produced))
                    }
                }
                return (c.k, c.start, buffer)
            }
            try extend(cache: cache, inflater: inflater)
        }
    }

    /// Inflates the next chunk after the last checkpoint, records the checkpoint at its end and
    /// caches it. One thread at a time; the others wait and then find the chunk.
    private func extend(cache: MemberCache, inflater: any CheckpointInflater) throws(MemberError) {
        builder.lock()
        defer { builder.unlock() }
        let (last, count, done) = lock.withLock { (checkpoints[checkpoints.count - 1], checkpoints.count, complete) }
        if done { return }
        let capacity = Int(min(UInt64(Self.chunkCapacity(spacing)), size - last.output))
        // Pages are faulted in as inflate writes them; the unused tail is returned after.
        let buffer = MemberBuffer(count: max(1, capacity), populate: false)
        buffer.populate(prefix: spacing + (256 << 10))
        let result: (produced: Int, boundary: Checkpoint?)
        do {
            result = try inflater.inflate(member, from: last.output == 0 ? nil : last, into: buffer.bytes, stopAfter: spacing)
        } catch {
            lock.withLock { failure = error }
            throw error
        }
        buffer.shrink(to: result.produced)
        let produced = buffer.contents
        let end = last.output + UInt64(result.produced)
        // crc is only touched here, under `builder`: the CRC of up to a chunk runs outside `lock`.
        let newCrc = crc32Continue(crc, produced)
        let failed = lock.withLock { () -> MemberError? in
            crc = newCrc
            if let boundary = result.boundary {
                checkpoints.append(boundary)
            } else if end == size {
                complete = true
                if crc != member.entry.crc32 { failure = .crcMismatch(expected: member.entry.crc32, actual: crc) }
            } else {
                failure = .corrupt("no deflate block boundary within \(capacity) bytes at offset \(last.output); the member cannot be indexed")
            }
            return failure
        }
        if let failed {
            onCorruption()
            throw failed
        }
        cache.store(key(count - 1), buffer)  // the chunk that starts at `last`
    }

    /// The CRC-32 function, injected by the file system.
    var crc32Continue: Checksum = { c, _ in c }
    /// Told when the member turns out corrupt after chunks of it were served.
    var onCorruption: @Sendable () -> Void = {}
}
