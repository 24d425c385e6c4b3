/// Random access to a deflate member larger than the cache: inflated in chunks that start at
/// checkpoints (recorded the first time the member is inflated in order), each chunk cached
/// like a small member. The index is extended in order only, so every byte served has gone
/// through the running CRC-32 in order; when the index reaches the member's end the CRC is
/// compared and the member's integrity record (`MemberIntegrity`) says verified or failed.
/// Chunks are counted against the cache's budget before they are allocated, and so are the
/// checkpoints' windows (pinned in the cache when the index is made).
final class LargeMemberIndex: @unchecked Sendable {
    // @unchecked: `checkpoints`, `complete`, `crc` are guarded by `lock`; `builder` serialises
    // extensions of the index.
    let member: MemberLocation
    let spacing: Int
    let integrity: MemberIntegrity
    private let lock = ConditionLock()
    private let builder = ConditionLock()
    private var checkpoints: [Checkpoint]
    private var complete = false
    private var crc: UInt32 = 0
    /// End of the last read, to recognise sequential reading (and read ahead).
    private var lastEnd: UInt64 = 0
    /// The chunk whose read-ahead was last scheduled.
    private var lastAhead = -1

    /// Bytes a checkpoint holds: its 32 KiB window.
    static let windowBytes = 32 << 10
    /// The most checkpoints a member gets with a cache of `budget` bytes: as many as a quarter
    /// of the budget holds windows for, and at least 512 (16 MiB of windows, what every member
    /// could have before windows were counted: a smaller budget must not leave members that
    /// were indexed to streaming, which the chunk capacity check would with fewer, longer chunks).
    static func checkpointLimit(budget: Int) -> Int { max(512, budget / 4 / windowBytes) }
    /// Chunks of about `spacing` bytes, as many as the budget allows windows for, and not under
    /// 128 KiB. Small chunks make a read that misses the cache cheap (it inflates one chunk from
    /// its checkpoint): with `cache_size=256M` a 512 MiB member gets 256 KiB chunks, and 1,000
    /// random reads after the first pass inflate ~150 MiB again instead of ~520 MiB with 1 MiB
    /// chunks (at about the same hit rate: the cache holds the same bytes).
    static func spacing(for size: UInt64, budget: Int) -> Int {
        let most = UInt64(checkpointLimit(budget: budget))
        return Int(max(128 << 10, (size + most - 1) / most))
    }
    /// The window bytes the index may hold at most: one window per `spacing` bytes.
    var windowReservation: Int { Int(size / UInt64(spacing) + 1) * Self.windowBytes }
    /// A deflate block may run past the spacing; beyond this the member is streamed instead.
    static func chunkCapacity(_ spacing: Int) -> Int { spacing * 2 + (8 << 20) }

    init(member: MemberLocation, integrity: MemberIntegrity, budget: Int) {
        self.member = member
        self.integrity = integrity
        spacing = Self.spacing(for: member.entry.uncompressedSize, budget: budget)
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

    private var failure: MemberError? { integrity.lock.withLock { integrity.failure } }

    /// Whether the index reaches the member's end (its CRC was compared).
    var isComplete: Bool { lock.withLock { complete } }

    /// Extends the index to the member's end, which verifies the CRC (a worker's job).
    func completeIndex(cache: MemberCache, inflater: any CheckpointInflater) throws(MemberError) {
        while !isComplete {
            if let f = failure { throw f }
            try extend(cache: cache, inflater: inflater)
        }
        if let f = failure { throw f }
    }

    /// Reads `length` bytes at `offset` (within the member) through the cache.
    /// - Returns: nil when `mayWait` is false and a chunk would have to be inflated.
    func read<R>(offset: UInt64, length: Int, cache: MemberCache, inflater: any CheckpointInflater, mayWait: Bool = true,
                 readAhead: ((@escaping @Sendable () -> Void) -> Void)?,
                 _ body: (UnsafeRawBufferPointer) -> R) throws(MemberError) -> R? {
        if let f = failure { throw f }
        // Within one chunk (nearly always): serve its bytes as they are.
        guard let (k0, start0, buffer0) = try chunkBuffer(containing: offset, cache: cache, inflater: inflater, mayWait: mayWait)
        else { return nil }
        if Int(offset - start0) + length <= buffer0.count {
            if let f = failure { throw f }
            scheduleReadAhead(offset: offset, length: length, chunk: k0, cache: cache, inflater: inflater, readAhead: readAhead)
            let from = Int(offset - start0)
            return body(UnsafeRawBufferPointer(rebasing: buffer0.contents[from..<from + length]))
        }
        // A read across chunks (128 KiB in order, half of them with 256 KiB chunks) gathers its
        // bytes in a buffer from the cache's recycled mappings, not fresh pages for each read.
        let gathered = MemberBuffer(count: max(1, length), populate: false)
        let out = gathered.bytes
        var done = 0
        var lastChunk = 0
        while done < length {
            let at = offset + UInt64(done)
            guard let (k, start, buffer) = try chunkBuffer(containing: at, cache: cache, inflater: inflater, mayWait: mayWait)
            else { return nil }
            let from = Int(at - start)
            let n = min(length - done, buffer.count - from)
            guard n > 0 else { throw fail(.sizeMismatch(declared: size, actual: start + UInt64(buffer.count))) }
            (out.baseAddress! + done).copyMemory(from: buffer.contents.baseAddress! + from, byteCount: n)
            done += n
            lastChunk = k
        }
        if let f = failure { throw f }
        scheduleReadAhead(offset: offset, length: length, chunk: lastChunk, cache: cache, inflater: inflater, readAhead: readAhead)
        return withExtendedLifetime(gathered) { body(UnsafeRawBufferPointer(out)) }
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
            // At least two chunks and `readAheadBytes` ahead: read while the next are inflated.
            var at = self.nextChunkStart(after: k) ?? offset + UInt64(length)
            let until = min(self.size, at + UInt64(max(2 * self.spacing, Self.readAheadBytes)))
            while at < until {
                guard let found = try? self.chunkBuffer(containing: at, cache: cache, inflater: inflater, mayWait: true)
                else { return }
                let (_, start, buffer) = found
                at = start + UInt64(buffer.count)
            }
        }
    }

    /// How far ahead of an in-order reader chunks are inflated.
    static let readAheadBytes = 2 << 20

    private func nextChunkStart(after k: Int) -> UInt64? {
        lock.withLock { k + 1 < checkpoints.count ? checkpoints[k + 1].output : nil }
    }

    /// The cached chunk holding `offset`, inflating it (and the index up to it) if need be.
    /// - Returns: nil when `mayWait` is false and the chunk is not held now.
    private func chunkBuffer(containing offset: UInt64, cache: MemberCache, inflater: any CheckpointInflater,
                             mayWait: Bool) throws(MemberError) -> (Int, UInt64, MemberBuffer)? {
        while true {
            if let c = chunk(containing: offset) {
                if let held = cache.held(key(c.k)) { return (c.k, c.start, held) }
                guard mayWait else { return nil }
                let start = lock.withLock { checkpoints[c.k] }
                let buffer = try cache.buffer(for: key(c.k), size: Int(c.end - c.start)) { (destination) throws(MemberError) -> Int in
                    let r: (produced: Int, boundary: Checkpoint?)
                    do throws(MemberError) {
                        r = try inflater.inflate(member, from: start.output == 0 ? nil : start, into: destination, stopAfter: nil)
                    } catch {
                        throw fail(error)
                    }
                    // Inflated again from a checkpoint: the same bytes as in the first pass, or the archive changed.
                    guard r.produced == destination.count else {
                        throw fail(.sizeMismatch(declared: size, actual: start.output + UInt64(r.produced)))
                    }
                    return r.produced
                }
                if let buffer { return (c.k, c.start, buffer) }
                continue
            }
            guard mayWait else { return nil }
            try extend(cache: cache, inflater: inflater)
        }
    }

    /// Inflates the next chunk after the last checkpoint, records the checkpoint at its end and
    /// caches it (its bytes reserved in the cache before they are allocated). One thread at a
    /// time; the others wait and then find the chunk.
    private func extend(cache: MemberCache, inflater: any CheckpointInflater) throws(MemberError) {
        builder.lock()
        defer { builder.unlock() }
        let (last, count, done) = lock.withLock { (checkpoints[checkpoints.count - 1], checkpoints.count, complete) }
        if done { return }
        if let f = failure { throw f }
        let capacity = Int(min(UInt64(Self.chunkCapacity(spacing)), size - last.output))
        var boundary: Checkpoint? = nil
        var newCrc: UInt32 = 0
        // Pages are faulted in as inflate writes them; the unused tail goes back after.
        _ = try cache.buffer(for: key(count - 1), size: max(1, capacity), populate: spacing + spacing / 8) {
            (destination) throws(MemberError) -> Int in
            let result: (produced: Int, boundary: Checkpoint?)
            do throws(MemberError) {
                result = try inflater.inflate(member, from: last.output == 0 ? nil : last, into: destination, stopAfter: spacing)
            } catch {
                throw fail(error)
            }
            boundary = result.boundary
            // crc is only touched here, under `builder`: the CRC of up to a chunk runs outside `lock`.
            newCrc = crc32Continue(crc, UnsafeRawBufferPointer(rebasing: destination[0..<result.produced]))
            let end = last.output + UInt64(result.produced)
            let outcome = lock.withLock { () -> MemberError? in
                crc = newCrc
                if let boundary {
                    checkpoints.append(boundary)
                    return nil
                }
                if end == size {
                    complete = true
                    return crc == member.entry.crc32 ? nil : .crcMismatch(expected: member.entry.crc32, actual: crc)
                }
                return .corrupt("no deflate block boundary within \(capacity) bytes at offset \(last.output); the member cannot be indexed")
            }
            if let outcome { throw fail(outcome) }
            if boundary == nil { onVerified() }
            return result.produced
        }
    }

    /// Records `error` as the member's failure (once) and returns it, for `throw fail(...)`.
    private func fail(_ error: MemberError) -> MemberError {
        onFailure(error)
        return error
    }

    /// The CRC-32 function, injected by the file system.
    var crc32Continue: Checksum = { c, _ in c }
    /// Told when the member fails, with the cause: its record fails and its pages are dropped.
    var onFailure: @Sendable (MemberError) -> Void = { _ in }
    /// Told when the first pass reached the end with the right CRC.
    var onVerified: @Sendable () -> Void = {}
}
