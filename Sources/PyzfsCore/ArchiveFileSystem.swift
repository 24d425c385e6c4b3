import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The attributes of one node, as `stat` shows them.
public struct Attributes: Sendable, Equatable {
    public var inode: UInt64
    /// File type and permission bits.
    public var mode: UInt32
    public var linkCount: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var mtime: Int64
    public var blocks: UInt64 { (size + 511) / 512 }
}

/// Who owns what the mount shows.
public struct Ownership: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public init(uid: UInt32, gid: UInt32) { self.uid = uid; self.gid = gid }
}

/// Figures for `statfs`.
public struct VolumeStatistics: Sendable, Equatable {
    public var blockSize: UInt64 = 4096
    public var blocks: UInt64
    public var files: UInt64
    public var nameMax: UInt64 = UInt64(PathRules.maxComponentLength)
}

/// The mounted archive as a read-only filesystem, without FUSE: every operation the kernel can
/// ask, answered from the tree, the archive and the cache. Safe to call from many threads.
public final class ArchiveFileSystem: @unchecked Sendable {
    // @unchecked: the lets are immutable or Sendable; mutable state is behind `lock`.
    public let tree: Tree
    public let reader: MemberReader
    public let cache: MemberCache
    public let ownership: Ownership
    let volume: VolumeStatistics
    /// Sources whose mtime comes from their pyc.
    public let bytecode: BytecodeIndex
    var source: any ByteSource { reader.source }

    private let lock = ConditionLock()
    private var dataOffsets: [Int: UInt64] = [:]
    /// The integrity state of every member (`MemberIntegrity`): one bit for each verified one,
    /// the cause for each failed one, and the record of each first pass under way.
    private var verifiedMembers: [UInt64]
    private var failures: [Int: MemberError] = [:]
    private var passes: [Int: MemberIntegrity] = [:]
    private var streams = StreamPool()
    private var sourceMtimes: [Int: Int64] = [:]
    private var archiveChanged = false
    private var opened = 0
    /// Members larger than the cache budget (served by streaming).
    public let membersOverBudget: Int
    /// Streams opened on members larger than the budget.
    public var streamsOpened: Int { lock.withLock { opened } }

    /// Members that could not be served for what the archive holds, for `pyzfs stats`: those
    /// that failed their integrity check (a CRC, size or data error), and those refused because
    /// the archive file was modified under the mount.
    public var failedMemberCount: Int { lock.withLock { failures.count + refusedAfterChange.count } }
    private var refusedAfterChange: Set<Int> = []

    /// Background decompression of shared libraries, once started.
    public var prefetcher: Prefetcher? { lock.withLock { _prefetcher } }
    private var _prefetcher: Prefetcher?
    private let entryNodes: [Int32]
    private let firstReads: FirstReads

    let logger: Logger
    /// Resumable inflate for members larger than the cache, when available.
    let inflater: (any CheckpointInflater)?
    private var largeIndexes: [Int: LargeMemberIndex] = [:]
    /// Bytecode written by the interpreter, when the mount accepts it (`-o pycache=memory`).
    public let overlay: PycacheOverlay?

    /// - Parameter pycacheBudget: bytes of bytecode the mount accepts into `__pycache__`
    ///   directories; nil keeps every directory read-only.
    public init(tree: Tree, reader: MemberReader, cacheBudget: Int, ownership: Ownership,
                pycacheBudget: Int? = nil, bytecode: BytecodeIndex? = nil, inflater: (any CheckpointInflater)? = nil,
                logger: Logger = Logger(label: "pyzfs")) {
        self.logger = logger
        self.inflater = inflater
        self.overlay = pycacheBudget.map { PycacheOverlay(budget: $0, firstInode: UInt64(tree.nodes.count) + 1) }
        self.tree = tree
        self.reader = reader
        self.cache = MemberCache(budget: cacheBudget)
        self.ownership = ownership
        var entryNodes = [Int32](repeating: -1, count: tree.index.entries.count)
        for (i, n) in tree.nodes.enumerated() where n.entry >= 0 && n.kind == .file { entryNodes[Int(n.entry)] = Int32(i) }
        self.entryNodes = entryNodes
        firstReads = FirstReads(nodes: tree.nodes.count)
        verifiedMembers = [UInt64](repeating: 0, count: (tree.index.entries.count + 63) / 64)
        self.bytecode = bytecode ?? BytecodeIndex(tree: tree)
        var bytes: UInt64 = 0
        var over = 0
        for e in tree.index.entries {
            bytes = bytes.addingSaturating(e.uncompressedSize)
            if e.method != 0 && e.uncompressedSize > UInt64(cacheBudget) { over += 1 }
        }
        membersOverBudget = over
        volume = VolumeStatistics(blocks: bytes / 4096 + (bytes % 4096 == 0 ? 0 : 1), files: UInt64(tree.nodes.count))
    }

    /// Starts `threads` threads that decompress shared libraries ahead of their reads. Threads
    /// do not survive `fork`: call this in the process that serves.
    public func startPrefetching(threads: Int) {
        guard threads > 0 else { return }
        let p = Prefetcher(threads: threads)
        p.fs = self
        let first = lock.withLock { () -> Bool in
            guard _prefetcher == nil else { return false }
            _prefetcher = p
            return true
        }
        if first { p.mounted() }
    }

    /// The paths of the members read so far, in the order of their first reads, as a start
    /// profile's text (`StartProfile`; bounded, the record stops when it is full).
    public var firstReadProfile: [UInt8] { StartProfile.encode(firstReads.nodes.map { tree.path(of: $0) }) }

    /// The members the archive's start profile names, in its order (empty without a usable
    /// one). Reads and decodes the hidden member: call it off the request loop.
    public func profiledMembers() -> [Int] {
        guard let p = tree.profileNode else { return [] }
        let size = tree.index.entries[Int(tree.nodes[p].entry)].uncompressedSize
        guard size <= UInt64(StartProfile.maximumBytes) else {
            logger.warning("cannot use the start profile \(StartProfile.memberName): \(size) bytes, more than \(StartProfile.maximumBytes); no preload")
            return []
        }
        do {
            let bytes = try read(p, offset: 0, count: Int(size)) { Array($0) }
            return StartProfile.members(in: bytes, of: tree)
        } catch {
            logger.warning("cannot read the start profile \(StartProfile.memberName): \(error); no preload")
            return []
        }
    }

    /// The file node that serves member `index`, if any.
    public func node(ofEntry index: Int) -> Int? {
        let n = entryNodes[index]
        return n >= 0 ? Int(n) : nil
    }

    /// Tells the prefetcher what was looked up (a hint; returns at once).
    public func noteLookup(_ i: Int) { prefetcher?.lookedUp(i) }

    // MARK: metadata

    /// Inode number of node `i` (FUSE's root is 1).
    @inline(__always) public static func inode(of i: Int) -> UInt64 { UInt64(i) + 1 }
    /// Node index of inode `ino`, if it exists.
    @inline(__always) public func node(ofInode ino: UInt64) -> Int? {
        ino >= 1 && ino <= UInt64(tree.nodes.count) ? Int(ino - 1) : nil
    }

    /// `stat` of node `i`. For a `.py` with a pyc beside it, this reads the pyc's header once.
    public func attributes(of i: Int) -> Attributes {
        let n = tree.nodes[i]
        var a = Attributes(inode: Self.inode(of: i), mode: UInt32(n.permissions) | fileType(of: i), linkCount: 1,
                           uid: ownership.uid, gid: ownership.gid, size: 0, mtime: modificationTime(of: i))
        switch n.kind {
        case .directory: a.linkCount = 2 + n.subdirectoryCount
        case .file: a.size = tree.index.entries[Int(n.entry)].uncompressedSize
        case .symlink: a.size = UInt64(tree.symlinkTargets[UInt32(i)]?.count ?? 0)
        }
        return a
    }

    /// The `S_IFMT` bits of node `i` (what a plain directory entry carries), from the tree alone.
    public func fileType(of i: Int) -> UInt32 {
        switch tree.nodes[i].kind {
        case .directory: return UInt32(S_IFDIR)
        case .file: return UInt32(S_IFREG)
        case .symlink: return UInt32(S_IFLNK)
        }
    }

    /// Whether `attributes(of:)` is answered without reading the archive.
    public func attributesAreKnown(_ i: Int) -> Bool {
        guard bytecode.candidates[UInt32(i)] != nil else { return true }
        return lock.withLock { sourceMtimes[i] != nil }
    }

    /// The mtime of node `i`: for a source with a matching timestamp pyc, the mtime that pyc
    /// records (so CPython accepts it whatever the zone or rounding), else the archive's. A pyc
    /// matches when it records the source's size and a time that differs from the source's zip
    /// time only as DOS times do (`BytecodeIndex.explains`): a stale pyc is recompiled, as
    /// zipimport and an extracted tree would.
    public func modificationTime(of i: Int) -> Int64 {
        guard bytecode.candidates[UInt32(i)] != nil else { return tree.mtimes[i] }
        if let known = lock.withLock({ sourceMtimes[i] }) { return known }
        return (try? resolveModificationTime(of: i, mayWait: true)) ?? tree.mtimes[i]
    }

    /// Reads the headers of node `i`'s pycs if that has not been done.
    /// - Throws: `.wouldBlock` when `mayWait` is false and a header needs a long read.
    @discardableResult
    public func resolveModificationTime(of i: Int, mayWait: Bool) throws(FSError) -> Int64 {
        guard let pycs = bytecode.candidates[UInt32(i)] else { return tree.mtimes[i] }
        if let known = lock.withLock({ sourceMtimes[i] }) { return known }
        let size = tree.index.entries[Int(tree.nodes[i].entry)].uncompressedSize
        var mtime = tree.mtimes[i]
        for pyc in pycs {
            let fields: (mtime: UInt32, size: UInt32)?
            do {
                fields = try read(Int(pyc), offset: 0, count: 16, mayWait: mayWait) { BytecodeIndex.timestampFields(ofHeader: $0) }
            } catch .wouldBlock {
                throw .wouldBlock
            } catch {
                continue  // an unreadable pyc leaves the archive's time
            }
            if let fields, UInt64(fields.size) == size & 0xFFFF_FFFF,
               BytecodeIndex.explains(pycMtime: fields.mtime, zipTime: tree.mtimes[i],
                                      exact: tree.index.entries[Int(tree.nodes[i].entry)].extendedMtime != nil) {
                mtime = Int64(fields.mtime)
                break
            }
        }
        lock.withLock { sourceMtimes[i] = mtime }
        return mtime
    }

    /// Whether node `i` is a directory named `__pycache__`.
    public func isPycacheDirectory(_ i: Int) -> Bool {
        tree.nodes[i].kind == .directory && tree.name(of: i).elementsEqual("__pycache__".utf8)
    }

    /// FUSE `lookup`: the child of directory `parent` named `name`.
    public func lookup(parent: Int, name: UnsafeRawBufferPointer) throws(FSError) -> Int {
        guard tree.nodes[parent].kind == .directory else { throw .notDirectory }
        if name.count == 1 && name[0] == UInt8(ascii: ".") { return parent }
        if name.count == 2 && name[0] == UInt8(ascii: ".") && name[1] == UInt8(ascii: ".") {
            return Int(tree.nodes[parent].parent)
        }
        guard let c = tree.child(of: parent, named: name) else { throw .notFound }
        return c
    }

    /// FUSE `opendir`/`readdir`: the visible children of `i`.
    public func children(of i: Int) throws(FSError) -> ArraySlice<UInt32> {
        guard tree.nodes[i].kind == .directory else { throw .notDirectory }
        return tree.children(of: i)
    }

    /// FUSE `open`: refuses write intent and directories.
    public func open(_ i: Int, flags: Int32) throws(FSError) {
        if flags & O_ACCMODE != O_RDONLY || flags & (O_TRUNC | O_CREAT | O_APPEND) != 0 { throw .readOnly }
        switch tree.nodes[i].kind {
        case .directory: throw .isDirectory
        case .symlink: throw .invalidArgument
        case .file: return
        }
    }

    /// FUSE `readlink`.
    public func readlink(_ i: Int) throws(FSError) -> [UInt8] {
        guard tree.nodes[i].kind == .symlink, let t = tree.symlinkTargets[UInt32(i)] else { throw .invalidArgument }
        return t
    }

    /// FUSE `statfs`.
    public var statistics: VolumeStatistics { volume }

    // MARK: data

    /// FUSE `read`: calls `body` with up to `count` bytes of node `i` from `offset` (fewer at the
    /// end, none past it) and returns its result.
    /// - Parameter mayWait: when false, throws `.wouldBlock` instead of decompressing, streaming
    ///   or reading the archive from disk, so a single request loop is never held up.
    public func read<R>(_ i: Int, offset: UInt64, count: Int, mayWait: Bool = true,
                        _ body: (UnsafeRawBufferPointer) -> R) throws(FSError) -> R {
        let n = tree.nodes[i]
        switch n.kind {
        case .directory: throw .isDirectory
        case .symlink: throw .invalidArgument
        case .file: break
        }
        let index = Int(n.entry)
        let entry = tree.index.entries[index]
        if let damage = entry.damage { throw .member(.corrupt(damage)) }  // impossible numbers (ZipIndex)
        let size = entry.uncompressedSize
        if !n.isHidden {
            firstReads.note(i) { tree.path(of: i).utf8.count }
            if offset == 0 { prefetcher?.reading(i) }
        }
        // An empty member still has a CRC to check (0); a mismatch says the directory lies.
        if size == 0 && entry.crc32 != 0 { throw .member(.crcMismatch(expected: entry.crc32, actual: 0)) }
        if offset >= size || count <= 0 { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let length = Int(min(UInt64(count), size - offset))
        if entry.isEncrypted { throw .member(.encrypted) }
        do {
            if entry.method == 0 {
                try ensureArchiveUnchanged()
                guard let r = try readStored(index, entry, offset: offset, length: length, mayWait: mayWait, body) else {
                    throw FSError.wouldBlock
                }
                return r
            }
            try MemberReader.checkPlausible(entry)
            if cache.fits(size) {
                // Held means decoded whole and CRC-checked.
                let buffer: MemberBuffer
                if let held = cache.held(index) {
                    buffer = held
                } else {
                    if let f = failure(of: index) { throw f }
                    guard mayWait || isQuickToDecode(index, entry), let loaded = try load(index, mayWait: mayWait) else {
                        throw FSError.wouldBlock
                    }
                    buffer = loaded
                }
                return body(UnsafeRawBufferPointer(rebasing: buffer.contents[Int(offset)..<Int(offset) + length]))
            }
            // Making the index reads the member's local header: not on the request loop.
            guard mayWait || lock.withLock({ largeIndexes[index] != nil }) else { throw FSError.wouldBlock }
            if let large = try largeIndex(index, entry) {
                guard let r = try readLarge(large, offset: offset, length: length, mayWait: mayWait, body) else {
                    throw FSError.wouldBlock
                }
                return r
            }
            guard mayWait else { throw FSError.wouldBlock }
            try ensureArchiveUnchanged()
            let location = try locate(index, entry)
            try verifyStreamed(location)
            do {
                return try readStreamed(location, offset: offset, length: length, body)
            } catch {
                throw fail(index, error)
            }
        } catch let error as FSError {
            throw error
        } catch let error as MemberError {
            if error == .archiveChanged { lock.withLock { _ = refusedAfterChange.insert(index) } }
            throw .member(error)
        } catch {
            throw .member(.corrupt("\(error)"))
        }
    }

    // MARK: integrity

    /// The record of member `index`'s first pass (created on first use; kept only until the
    /// member is settled, so that a mount read whole holds one bit per member, not an object).
    /// A settled member's record says so too, for threads that held it meanwhile.
    func record(_ index: Int) -> MemberIntegrity {
        lock.withLock {
            if let r = passes[index] { return r }
            let r = MemberIntegrity()
            if let f = failures[index] { r.state = .failed(f) } else if isVerifiedLocked(index) { r.state = .verified }
            if r.state == .unverified { passes[index] = r }
            return r
        }
    }

    private func isVerifiedLocked(_ index: Int) -> Bool { verifiedMembers[index >> 6] & (1 << UInt64(index & 63)) != 0 }

    /// Whether member `index` matched its CRC whole.
    func isVerified(_ index: Int) -> Bool { lock.withLock { isVerifiedLocked(index) } }

    /// The failure recorded for member `index`, if any.
    func failure(of index: Int) -> MemberError? { lock.withLock { failures[index] } }

    /// Records that member `index`'s bytes failed their check with `error` (a passing failure
    /// of the file is not remembered), drops its pages from the kernel's cache, and returns the
    /// error for `throw`.
    /// - Parameter holding: the member's pass record when the caller holds its lock.
    @discardableResult
    func fail(_ index: Int, _ error: MemberError, holding: MemberIntegrity? = nil) -> MemberError {
        guard MemberIntegrity.isPermanent(error) else { return error }
        let (first, pass) = lock.withLock { () -> (Bool, MemberIntegrity?) in
            guard failures[index] == nil else { return (false, nil) }
            failures[index] = error
            return (true, passes.removeValue(forKey: index))
        }
        if let pass {
            if pass === holding { pass.state = .failed(error) } else { pass.lock.withLock { pass.state = .failed(error) } }
        }
        if first { corrupted(index) }
        return error
    }

    /// Records that member `index` matched its CRC whole.
    /// - Parameter holding: the member's pass record when the caller holds its lock.
    func verified(_ index: Int, holding: MemberIntegrity? = nil) {
        let pass = lock.withLock { () -> MemberIntegrity? in
            guard failures[index] == nil else { return nil }
            verifiedMembers[index >> 6] |= 1 << UInt64(index & 63)
            return passes.removeValue(forKey: index)
        }
        guard let pass else { return }
        if pass === holding {
            if pass.state == .unverified { pass.state = .verified }
        } else {
            pass.lock.withLock { if pass.state == .unverified { pass.state = .verified } }
        }
    }

    /// A member served by streaming is read to its end once, which checks its size and CRC,
    /// before any of its bytes is served: streams restart from the start, so a pass cannot be
    /// continued cheaply once broken.
    private func verifyStreamed(_ location: MemberLocation) throws(MemberError) {
        let r = record(location.index)
        r.lock.lock()
        if let f = r.failure { r.lock.unlock(); throw f }
        if r.state == .verified { r.lock.unlock(); return }
        var failure: MemberError? = nil
        do throws(MemberError) {
            guard let stream = try reader.openStream(location) else { throw .unsupportedMethod(location.entry.method) }
            lock.withLock { opened += 1 }
            let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { piece.deallocate() }
            while try stream.read(into: piece) > 0 {}
            if stream.position != location.entry.uncompressedSize {
                throw .sizeMismatch(declared: location.entry.uncompressedSize, actual: stream.position)
            }
        } catch {
            failure = error
        }
        r.lock.unlock()
        if let failure { throw fail(location.index, failure) }
        verified(location.index)  // also marks `r`, for threads waiting on its lock
    }

    /// A large member through its checkpoint index: during the first in-order pass its chunks
    /// are served as the index reaches them (each byte went through the CRC in order); an ELF
    /// member, or a read that breaks the pass, waits until the index reached the end (the CRC).
    private func readLarge<R>(_ large: LargeMemberIndex, offset: UInt64, length: Int, mayWait: Bool,
                              _ body: (UnsafeRawBufferPointer) -> R) throws(MemberError) -> R? {
        let r = large.integrity
        guard let inflater else { return nil }
        if !large.isComplete { try ensureArchiveUnchanged() }
        let pool = prefetcher
        let readAhead = pool.map { p in { (job: @escaping @Sendable () -> Void) in p.background(job) } }
        func serve() throws(MemberError) -> R? {
            try large.read(offset: offset, length: length, cache: cache, inflater: inflater, mayWait: mayWait,
                           readAhead: readAhead, body)
        }
        let (state, knownELF) = r.lock.withLock { (r.state, r.isELF) }
        if case let .failed(e) = state { throw e }
        if state == .verified { return try serve() }
        // The first bytes say whether the loader will map it.
        let isELF: Bool
        if let knownELF {
            isELF = knownELF
        } else {
            guard let magic = try large.read(offset: 0, length: Int(min(4, large.size)), cache: cache, inflater: inflater,
                                             mayWait: mayWait, readAhead: nil, { MemberIntegrity.isELF($0) })
            else { return nil }
            r.lock.withLock { r.isELF = magic }
            isELF = magic
        }
        let continues = r.lock.withLock { () -> Bool in
            guard r.continuesPass(at: offset) else { return false }
            r.covered = max(r.covered, offset + UInt64(length))
            return true
        }
        if isELF || !continues {
            guard mayWait else { return nil }
            // Returns only once the CRC matched over the whole member (or throws its failure).
            try large.completeIndex(cache: cache, inflater: inflater)
        }
        return try serve()
    }

    /// The checkpoint index of a member too large for the cache, if its method can be indexed
    /// and its chunks fit a quarter of the cache.
    private func largeIndex(_ index: Int, _ entry: ZipEntry) throws(MemberError) -> LargeMemberIndex? {
        guard let inflater, inflater.indexes(method: entry.method),
              LargeMemberIndex.chunkCapacity(LargeMemberIndex.spacing(for: entry.uncompressedSize, budget: cache.budget))
                <= cache.budget / 4
        else { return nil }
        if let known = lock.withLock({ largeIndexes[index] }) { return known }
        let location = try locate(index, entry)
        let fresh = LargeMemberIndex(member: location, integrity: record(index), budget: cache.budget)
        fresh.crc32Continue = reader.checksum
        fresh.onFailure = { [weak self] error in self?.fail(index, error) }
        fresh.onVerified = { [weak self] in self?.verified(index) }
        let (kept, won) = lock.withLock { () -> (LargeMemberIndex, Bool) in
            if let raced = largeIndexes[index] { return (raced, false) }
            largeIndexes[index] = fresh
            return (fresh, true)
        }
        // Its checkpoints' windows live as long as the mount: counted against the budget once.
        if won { cache.pin(fresh.windowReservation) }
        return kept
    }

    /// Fails once the archive file was modified in place: what was decompressed from it is still
    /// served (it was verified against its CRC), nothing more is read from it.
    func ensureArchiveUnchanged() throws(MemberError) {
        if lock.withLock({ archiveChanged }) { throw .archiveChanged }
        guard reader.source.isUnchanged() else {
            let first = lock.withLock { () -> Bool in
                defer { archiveChanged = true }
                return !archiveChanged
            }
            if first { logger.error("the archive file was modified while mounted: reads that need it now fail (EIO); remount to see the new file") }
            throw .archiveChanged
        }
    }

    /// Members this small are decompressed on the request loop when their compressed bytes are in
    /// the page cache: inflating a few KiB costs less than handing the request to another thread.
    public static let inlineDecodeLimit: UInt64 = 256 << 10

    private func isQuickToDecode(_ index: Int, _ entry: ZipEntry) -> Bool {
        guard entry.compressedSize <= Self.inlineDecodeLimit, entry.uncompressedSize <= 4 * Self.inlineDecodeLimit,
              !cache.isPresentOrLoading(index),
              let location = try? locate(index, entry, mayWait: false) else { return false }
        let probe = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, Int(entry.compressedSize)), alignment: 16)
        defer { probe.deallocate() }
        let cached = try? source.readIfCached(into: UnsafeMutableRawBufferPointer(rebasing: probe[0..<Int(entry.compressedSize)]),
                                               at: location.dataOffset)
        return cached != nil  // try? flattens: nil is "not in the page cache" or unreadable
    }

    /// Member `index` decompressed whole into the cache, its size and CRC checked (waiting for
    /// it when another thread is at it, unless `mayWait` is false: then nil).
    /// - Parameter evicting: when false, nil instead of evicting members to make room (a preload
    ///   never evicts what it decoded to decode more).
    func load(_ index: Int, reason: String = "read", mayWait: Bool = true, evicting: Bool = true) throws(MemberError) -> MemberBuffer? {
        let entry = tree.index.entries[index]
        try MemberReader.checkPlausible(entry)
        if let f = failure(of: index) { throw f }
        if !cache.contains(index) { try ensureArchiveUnchanged() }
        var decoded = false
        let start = monotonicNanoseconds()
        let buffer: MemberBuffer?
        do {
            buffer = try cache.buffer(for: index, size: Int(entry.uncompressedSize), mayWait: mayWait, evicting: evicting) { (destination) throws(MemberError) -> Int in
                // A load that waited for a failed one must not decode it again.
                if let f = failure(of: index) { throw f }
                let location = try locate(index, entry)
                try reader.decode(location, into: destination)
                decoded = true
                return destination.count
            }
        } catch {
            throw fail(index, error)
        }
        if decoded, let buffer {
            verified(index)
            if logger.logLevel <= .debug {
                let ms = Double(monotonicNanoseconds() - start) / 1e6
                logger.debug("decompressed \(tree.index.nameString(of: entry)) (\(reason)): \(entry.compressedSize) -> \(entry.uncompressedSize) bytes, \(compressionMethodName(entry.method)), \((ms * 100).rounded() / 100) ms")
            }
            prefetcher?.decoded(index, buffer)
        }
        return buffer
    }

    /// The data offset of a member, read from its local header once.
    /// - Returns: nil when `mayWait` is false and the header is not in the page cache.
    public func locate(_ index: Int, _ entry: ZipEntry, mayWait: Bool) throws(MemberError) -> MemberLocation? {
        if let known = lock.withLock({ dataOffsets[index] }) {
            return MemberLocation(index: index, entry: entry, dataOffset: known)
        }
        if !mayWait {
            var header = [UInt8](repeating: 0, count: 30)
            let cached = try? withMutableBytes(&header) { (p) throws(ArchiveError) -> Int? in
                try source.readIfCached(into: p, at: entry.localHeaderOffset)
            }
            guard cached != nil else { return nil }
        }
        return try locate(index, entry)
    }

    /// The data offset of a member, read from its local header once.
    public func locate(_ index: Int, _ entry: ZipEntry) throws(MemberError) -> MemberLocation {
        if let known = lock.withLock({ dataOffsets[index] }) {
            return MemberLocation(index: index, entry: entry, dataOffset: known)
        }
        let offset = try tree.index.dataOffset(of: entry, in: source)
        lock.withLock { dataOffsets[index] = offset }
        return MemberLocation(index: index, entry: entry, dataOffset: offset)
    }

    /// A stored member's bytes with `pread`; nil when `mayWait` is false and they are not in the
    /// page cache (or the member's local header has not been read yet, or its check is busy).
    ///
    /// Integrity (`MemberIntegrity`): an ELF member is checked whole before its first byte is
    /// served; any other member is checked as its first pass reads it in order, and a read that
    /// breaks the pass checks the rest of the member before it is answered.
    private func readStored<R>(_ index: Int, _ entry: ZipEntry, offset: UInt64, length: Int, mayWait: Bool,
                               _ body: (UnsafeRawBufferPointer) -> R) throws(MemberError) -> R? {
        guard entry.compressedSize == entry.uncompressedSize else {
            throw .sizeMismatch(declared: entry.uncompressedSize, actual: entry.compressedSize)
        }
        guard let location = try locate(index, entry, mayWait: mayWait) else { return nil }
        let size = entry.uncompressedSize
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 16)
        defer { scratch.deallocate() }
        /// Reads member bytes at `at`; false when that would wait and waiting is not allowed.
        func fill(_ buffer: UnsafeMutableRawBufferPointer, at: UInt64) throws(MemberError) -> Bool {
            let got: Int
            do {
                if mayWait {
                    got = try source.readFully(into: buffer, at: location.dataOffset + at)
                } else {
                    guard let n = try source.readIfCached(into: buffer, at: location.dataOffset + at) else { return false }
                    got = n
                }
            } catch {
                if case let .io(_, e) = error { throw .io(e) }
                throw .corrupt("\(error)")
            }
            guard got == buffer.count else { throw .corrupt("the archive ends inside the member") }
            return true
        }

        if isVerified(index) {
            guard try fill(scratch, at: offset) else { return nil }
            return body(UnsafeRawBufferPointer(scratch))
        }
        if let f = failure(of: index) { throw f }
        let r = record(index)
        // The request loop never waits, not even for another thread's check of this member.
        if mayWait { r.lock.lock() } else if !r.lock.tryLock() { return nil }
        defer { r.lock.unlock() }
        if let f = r.failure { throw f }
        if r.state == .unverified {
            if r.isELF == nil {
                var magic = [UInt8](repeating: 0, count: Int(min(4, size)))
                guard try withMutableBytes(&magic, { (p) throws(MemberError) -> Bool in try fill(p, at: 0) }) else { return nil }
                r.isELF = magic.withUnsafeBytes { MemberIntegrity.isELF($0) }
            }
            let end = offset + UInt64(length)
            let whole = r.isELF == true || !r.continuesPass(at: offset)
            let target = whole ? size : end
            if r.covered < target {
                if whole {
                    // Read and check in order the rest of the member (on the request loop only
                    // when that is little, and in the page cache).
                    guard mayWait || size - r.covered <= 1 << 20 else { return nil }
                    let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(min(size - r.covered, 1 << 20)), alignment: 16)
                    defer { piece.deallocate() }
                    while r.covered < size {
                        let n = Int(min(UInt64(piece.count), size - r.covered))
                        guard try fill(UnsafeMutableRawBufferPointer(rebasing: piece[0..<n]), at: r.covered) else { return nil }
                        r.crc = reader.checksum(r.crc, UnsafeRawBufferPointer(rebasing: piece[0..<n]))
                        r.covered += UInt64(n)
                    }
                } else {
                    // This read continues the pass: its bytes past the checked prefix join the CRC.
                    guard try fill(scratch, at: offset) else { return nil }
                    r.crc = reader.checksum(r.crc, UnsafeRawBufferPointer(rebasing: scratch[Int(r.covered - offset)...]))
                    r.covered = end
                    if end == size { try settle(index, r, entry) }
                    return body(UnsafeRawBufferPointer(scratch))
                }
            }
            if r.covered == size { try settle(index, r, entry) }
        }
        guard try fill(scratch, at: offset) else { return nil }
        return body(UnsafeRawBufferPointer(scratch))
    }

    /// A stored member's pass reached its end: compare the CRC (record lock held).
    private func settle(_ index: Int, _ r: MemberIntegrity, _ entry: ZipEntry) throws(MemberError) {
        guard r.state == .unverified else { return }
        if r.crc == entry.crc32 {
            r.state = .verified
            verified(index, holding: r)
            return
        }
        let error = MemberError.crcMismatch(expected: entry.crc32, actual: r.crc)
        r.state = .failed(error)
        throw fail(index, error, holding: r)
    }

    /// Called once when a member turns out corrupt after some of its bytes were served, so the
    /// kernel can drop what it cached (then every later read fails). Set before serving.
    public var onCorruption: (@Sendable (_ node: Int) -> Void)? {
        get { lock.withLock { _onCorruption } }
        set { lock.withLock { _onCorruption = newValue } }
    }
    private var _onCorruption: (@Sendable (Int) -> Void)?
    private var reportedCorrupt: Set<Int> = []

    func corrupted(_ index: Int) {
        guard let node = node(ofEntry: index) else { return }
        let handler = lock.withLock { () -> (@Sendable (Int) -> Void)? in
            reportedCorrupt.insert(index).inserted ? _onCorruption : nil
        }
        handler?(node)
    }

    private func readStreamed<R>(_ location: MemberLocation, offset: UInt64, length: Int,
                                 _ body: (UnsafeRawBufferPointer) -> R) throws(MemberError) -> R {
        let index = location.index
        var cursor: StreamCursor
        if let reused = lock.withLock({ streams.take(index, atOrBefore: offset) }) {
            cursor = reused
        } else {
            guard let s = try reader.openStream(location) else { throw .unsupportedMethod(location.entry.method) }
            cursor = StreamCursor(index: index, stream: s)
            lock.withLock { opened += 1 }
        }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(length, 65536), alignment: 16)
        defer { scratch.deallocate() }
        // Skip forward to `offset`.
        while cursor.stream.position < offset {
            let want = Int(min(UInt64(scratch.count), offset - cursor.stream.position))
            let n = try cursor.stream.read(into: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<want]))
            if n == 0 { throw .sizeMismatch(declared: location.entry.uncompressedSize, actual: cursor.stream.position) }
        }
        var done = 0
        while done < length {
            let n = try cursor.stream.read(into: UnsafeMutableRawBufferPointer(rebasing: scratch[done..<length]))
            if n == 0 { throw .sizeMismatch(declared: location.entry.uncompressedSize, actual: cursor.stream.position) }
            done += n
        }
        if cursor.stream.position == location.entry.uncompressedSize {
            // Reach the end so the decoder checks size and CRC before these last bytes are served.
            var probe: UInt8 = 0
            let extra = try withUnsafeMutableBytes(of: &probe) { (p) throws(MemberError) -> Int in try cursor.stream.read(into: p) }
            if extra != 0 { throw .sizeMismatch(declared: location.entry.uncompressedSize, actual: location.entry.uncompressedSize + 1) }
        } else {
            // A stream pushed out is closed after the lock: closing may wait for its libzip handle.
            let evicted = lock.withLock { streams.put(cursor) }
            withExtendedLifetime(evicted) {}
        }
        return body(UnsafeRawBufferPointer(rebasing: scratch[0..<length]))
    }
}

/// A stream checked out by one thread at a time.
final class StreamCursor: @unchecked Sendable {
    // @unchecked: a cursor is used by the one thread that took it from the pool.
    let index: Int
    let stream: any MemberStream
    var lastUse: UInt64 = 0
    init(index: Int, stream: any MemberStream) {
        self.index = index
        self.stream = stream
    }
}

/// Idle streams of large members, so sequential reads continue instead of restarting.
struct StreamPool {
    /// Each idle stream holds its decoder's state (zlib ~44 KiB, bzip2 up to 3.6 MiB).
    static let capacity = 4
    private var idle: [StreamCursor] = []
    private var tick: UInt64 = 0

    /// The idle stream of member `index` positioned closest before `offset`.
    mutating func take(_ index: Int, atOrBefore offset: UInt64) -> StreamCursor? {
        var best: Int? = nil
        for (k, c) in idle.enumerated() where c.index == index && c.stream.position <= offset {
            if best == nil || idle[best!].stream.position < c.stream.position { best = k }
        }
        guard let b = best else { return nil }
        return idle.remove(at: b)
    }

    /// Keeps `cursor`; returns the one pushed out to make room, for the caller to drop.
    mutating func put(_ cursor: StreamCursor) -> StreamCursor? {
        tick += 1
        cursor.lastUse = tick
        var evicted: StreamCursor? = nil
        if idle.count >= Self.capacity, let oldest = idle.indices.min(by: { idle[$0].lastUse < idle[$1].lastUse }) {
            evicted = idle.remove(at: oldest)
        }
        idle.append(cursor)
        return evicted
    }
}
