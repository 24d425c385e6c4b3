#if canImport(Glibc)
import Glibc
#endif

/// The decompressed bytes of one member; immutable once loaded, freed when the last reader
/// and the cache let go of it. Large buffers are mapped directly, so that evicting them returns
/// the memory to the system at once (the cache's bound then bounds the process).
public final class MemberBuffer: @unchecked Sendable {
    // @unchecked: written only by the one loader before it is published, read-only after.
    public private(set) var bytes: UnsafeMutableRawBufferPointer
    public private(set) var count: Int
    private let mapped: Bool
    static let mapThreshold = 64 << 10
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// - Parameter populate: fault every page in at once (the buffer is about to be filled).
    public init(count: Int, populate: Bool = true) {
        self.count = count
        if count >= Self.mapThreshold, let p = MappingRecycler.shared.take(Self.pageRounded(count)) {
            if populate { _ = madvise(p, Self.pageRounded(count), 23) }  // MADV_POPULATE_WRITE: a grown tail
            bytes = UnsafeMutableRawBufferPointer(start: p, count: count)
            mapped = true
        } else if count >= Self.mapThreshold,
           let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0), -1, 0),
           p != MAP_FAILED {
            bytes = UnsafeMutableRawBufferPointer(start: p, count: count)
            mapped = true
        } else {
            bytes = .allocate(byteCount: max(count, 1), alignment: 16)
            mapped = false
        }
    }

    /// Faults in the pages of the first `prefix` bytes in one call (MADV_POPULATE_WRITE, Linux
    /// 5.14), cheaper than one fault per page as they are written; a no-op elsewhere.
    public func populate(prefix: Int) {
        guard mapped, prefix > 0 else { return }
        let length = min(count, prefix + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        _ = madvise(bytes.baseAddress, length, 23)  // MADV_POPULATE_WRITE
    }

    /// Keeps only the first `newCount` bytes and returns the pages after them to the system.
    /// Only before the buffer is shared.
    public func shrink(to newCount: Int) {
        precondition(newCount <= count)
        if mapped {
            let keep = (newCount + Self.pageSize - 1) / Self.pageSize * Self.pageSize
            let mappedEnd = (count + Self.pageSize - 1) / Self.pageSize * Self.pageSize
            if keep < mappedEnd { munmap(bytes.baseAddress! + keep, mappedEnd - keep) }
        }
        bytes = UnsafeMutableRawBufferPointer(start: bytes.baseAddress, count: newCount)
        count = newCount
    }

    static func pageRounded(_ n: Int) -> Int { (n + pageSize - 1) / pageSize * pageSize }

    deinit {
        if mapped {
            if count > 0 { MappingRecycler.shared.give(bytes.baseAddress!, Self.pageRounded(count)) }
        } else {
            bytes.deallocate()
        }
    }

    /// The loaded bytes.
    public var contents: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[0..<count]) }
}

/// Mappings of buffers let go of, kept for the next buffers: a first pass over a large member
/// evicts a chunk for each chunk it inflates, and a fresh mapping costs the allocation, zeroing
/// and unmapping of its pages (a third of the server's time in a first pass, measured with perf).
/// A kept mapping is resized to what the next buffer needs (mremap). At most `capacity` mappings
/// of at most `largest` bytes are kept: 8 MiB beyond the cache's budget at most.
final class MappingRecycler: @unchecked Sendable {
    // @unchecked: `kept` is guarded by `lock`.
    static let shared = MappingRecycler()
    static let capacity = 4
    static let largest = 2 << 20
    private let lock = ConditionLock()
    private var kept: [(base: UnsafeMutableRawPointer, length: Int)] = []

    // mremap(2) is variadic in C (a fifth argument only with MREMAP_FIXED), which Swift cannot
    // call: looked up at run time and called with its four fixed arguments, as the C library's
    // own wrapper is (the same way as mallopt in MemoryLimits).
    private typealias Mremap = @convention(c) (UnsafeMutableRawPointer?, Int, Int, Int32) -> UnsafeMutableRawPointer?
    private static let mremap: Mremap? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mremap").map {
        unsafeBitCast($0, to: Mremap.self)
    }

    /// A kept mapping resized to `length` bytes (a multiple of the page size), or nil.
    func take(_ length: Int) -> UnsafeMutableRawPointer? {
        guard let mremap = Self.mremap, let m = lock.withLock({ kept.popLast() }) else { return nil }
        if m.length == length { return m.base }
        guard let p = mremap(m.base, m.length, length, 1 /* MREMAP_MAYMOVE */), p != MAP_FAILED else {
            munmap(m.base, m.length)
            return nil
        }
        return p
    }

    /// Keeps the mapping of `length` bytes at `base` for a later buffer, or unmaps it.
    func give(_ base: UnsafeMutableRawPointer, _ length: Int) {
        let keep = Self.mremap != nil && length <= Self.largest && lock.withLock { () -> Bool in
            guard kept.count < Self.capacity else { return false }
            kept.append((base, length))
            return true
        }
        if !keep { munmap(base, length) }
    }
}

/// Counters of a cache, for `pyzfs stats`.
public struct CacheStatistics: Sendable, Equatable {
    public var budget = 0
    public var bytesHeld = 0
    public var membersHeld = 0
    public var hits: UInt64 = 0
    public var misses: UInt64 = 0
    public var waits: UInt64 = 0
    public var evictions: UInt64 = 0
    /// Bytes counted against the budget outside the cache's buffers (checkpoint windows).
    public var pinnedBytes = 0
    public var decompressions: UInt64 = 0
    public var decompressionNanoseconds: UInt64 = 0
    public var decompressedBytes: UInt64 = 0
}

/// Decompressed members in memory, at most `budget` bytes of them, least recently used evicted
/// first. Each member is loaded once even when many threads ask for it together; the others wait
/// (or, when they may not wait, are told so).
public final class MemberCache: @unchecked Sendable {
    // @unchecked: every field below is guarded by `lock`.
    public let budget: Int
    private let lock = ConditionLock()
    private var buffers: [Int: MemberBuffer] = [:]
    private var loading: Set<Int> = []
    private var reserved = 0  // bytes of loaded and loading members
    private var sizes: [Int: Int] = [:]
    // An intrusive LRU list over member indexes; `head` is the most recent.
    private var previous: [Int: Int] = [:]
    private var next: [Int: Int] = [:]
    private var head: Int? = nil
    private var tail: Int? = nil
    private var stats = CacheStatistics()

    public init(budget: Int) {
        self.budget = budget
        stats.budget = budget
    }

    /// Whether a member of `size` bytes can be held at all; larger ones are streamed.
    public func fits(_ size: UInt64) -> Bool { size <= UInt64(budget) }

    /// The member `key`, loading it with `load` into a buffer of `size` bytes if it is not held.
    /// The bytes are counted against the budget before the buffer is allocated. A failed load
    /// keeps nothing: the caller's integrity record remembers the failure.
    /// - Parameters:
    ///   - mayWait: when false, returns nil instead of waiting for another thread's load of the
    ///     same key or for loading members to leave room (the request loop never waits).
    ///   - evicting: when false, returns nil instead of evicting held members to make room.
    ///   - populate: fault in only this many leading bytes at allocation (nil: all of them).
    ///   - load: fills the buffer; returns how many bytes it produced (at most `size`; the
    ///     rest is returned to the system and to the budget).
    public func buffer(for key: Int, size: Int, mayWait: Bool = true, evicting: Bool = true, populate: Int? = nil,
                       load: (UnsafeMutableRawBufferPointer) throws(MemberError) -> Int) throws(MemberError) -> MemberBuffer? {
        precondition(size <= budget, "member larger than the cache budget must be streamed")
        lock.lock()
        var waited = false
        while true {
            if let b = buffers[key] {
                touch(key)
                if waited { stats.waits += 1 } else { stats.hits += 1 }
                lock.unlock()
                return b
            }
            if loading.contains(key) {
                guard mayWait else { lock.unlock(); return nil }
                waited = true
                lock.wait()
                continue
            }
            if !evicting && reserved + size > budget { lock.unlock(); return nil }
            // Make room: evict loaded members; if only loading ones hold the budget, wait for them.
            while reserved + size > budget, let victim = tail {
                evict(victim)
            }
            if reserved + size > budget {
                guard mayWait else { lock.unlock(); return nil }
                lock.wait()
                continue
            }
            break
        }
        stats.misses += 1
        loading.insert(key)
        reserved += size
        lock.unlock()

        let buffer = MemberBuffer(count: size, populate: populate == nil)
        if let populate { buffer.populate(prefix: populate) }
        let start = monotonicNanoseconds()
        var failure: MemberError? = nil
        var produced = 0
        do {
            produced = try load(UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[0..<size]))
            precondition(produced <= size)
            if produced < size { buffer.shrink(to: produced) }
        } catch {
            failure = error
        }
        let elapsed = monotonicNanoseconds() - start

        lock.lock()
        loading.remove(key)
        stats.decompressions += 1
        stats.decompressionNanoseconds += elapsed
        if let failure {
            reserved -= size
            lock.broadcast()
            lock.unlock()
            throw failure
        }
        reserved -= size - produced
        stats.decompressedBytes += UInt64(produced)
        buffers[key] = buffer
        sizes[key] = produced
        insertAtHead(key)
        lock.broadcast()
        lock.unlock()
        return buffer
    }

    /// Counts `bytes` held outside the cache's buffers (for good) against the budget, evicting
    /// members to make room, and waiting for loads in flight when only they hold the rest.
    public func pin(_ bytes: Int) {
        precondition(bytes <= budget, "pinned bytes larger than the cache budget")
        lock.lock()
        defer { lock.unlock() }
        while reserved + bytes > budget {
            if let victim = tail {
                evict(victim)
            } else if loading.isEmpty {
                break  // everything else is pinned already: the budget is exceeded, not waited for
            } else {
                lock.wait()
            }
        }
        reserved += bytes
        stats.pinnedBytes += bytes
    }

    /// Whether member `key` is held now (loaded, not loading).
    public func contains(_ key: Int) -> Bool { lock.withLock { buffers[key] != nil } }

    /// Member `key` if it is held now, counted as a hit; nil (and nothing counted) otherwise.
    public func held(_ key: Int) -> MemberBuffer? {
        lock.withLock {
            guard let b = buffers[key] else { return nil }
            touch(key)
            stats.hits += 1
            return b
        }
    }

    /// Whether member `key` is loaded or being loaded.
    public func isPresentOrLoading(_ key: Int) -> Bool {
        lock.withLock { buffers[key] != nil || loading.contains(key) }
    }

    public var statistics: CacheStatistics {
        lock.withLock {
            var s = stats
            s.bytesHeld = reserved
            s.membersHeld = buffers.count
            return s
        }
    }

    // MARK: LRU list (lock held)

    private func touch(_ key: Int) {
        guard head != key else { return }
        unlink(key)
        insertAtHead(key)
    }

    private func insertAtHead(_ key: Int) {
        previous[key] = nil
        next[key] = head
        if let h = head { previous[h] = key }
        head = key
        if tail == nil { tail = key }
    }

    private func unlink(_ key: Int) {
        let p = previous[key], n = next[key]
        if let p { next[p] = n } else { head = n }
        if let n { previous[n] = p } else { tail = p }
        previous[key] = nil
        next[key] = nil
    }

    private func evict(_ key: Int) {
        unlink(key)
        buffers[key] = nil
        reserved -= sizes.removeValue(forKey: key) ?? 0
        stats.evictions += 1
    }
}
