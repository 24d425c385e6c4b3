import CFuse3
import Logging
import PyzfsCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The FUSE low-level operations over an `ArchiveFileSystem`: each handler turns a request into
/// one reply. They take a `Responder`, so tests call them without a kernel.
public final class Operations: @unchecked Sendable {
    // @unchecked: `reported` is guarded by `lock`; everything else is immutable.
    public let fs: ArchiveFileSystem
    let logger: Logger
    /// Seconds the kernel may cache names, attributes and negative lookups: the tree never changes.
    public static let timeout: Double = 365 * 86400
    private let lock = ConditionLock()
    private var reported: Set<Int> = []
    /// Prefix of the control attributes on the root (read by `pyzfs list` and `pyzfs stats`).
    public static let controlPrefix = "user.pyzfs."
    let archivePath: String
    /// Set in INIT when the kernel accepts ENOSYS for open/opendir: it then opens every file
    /// with the page cache kept and every directory with its listing cached, without a message.
    let zeroMessageOpens = Atomic<Bool>(false)
    /// Requests answered with a member's failure (EIO, EACCES), for `pyzfs stats`.
    let readErrors = Atomic<UInt64>(0)
    /// The requests the kernel has sent (every operation but INIT; `pyzfs stats` reads add theirs).
    let requests = Atomic<UInt64>(0)

    /// Threads for requests that must wait (a decompression, disk I/O). Without them every
    /// request is answered on the thread that received it.
    var workers: WorkerPool? { _workers.load() }
    // Set once, then read by every lookup, getattr and read: an atomic load, not a lock.
    private let _workers = AtomicLazyReference<WorkerPool>()

    /// The user who made the mount: with root, the only caller who may write bytecode into it.
    public let mountOwner: UInt32

    /// - Parameter mountOwner: the user who made the mount (the server's real uid by default;
    ///   `-o uid=` does not change it).
    public init(fs: ArchiveFileSystem, archivePath: String, logger: Logger, mountOwner: UInt32 = getuid()) {
        self.fs = fs
        self.archivePath = archivePath
        self.logger = logger
        self.mountOwner = mountOwner
    }

    /// Starts the worker threads (in the process that serves: threads do not survive `fork`).
    public func startWorkers(threads: Int) {
        guard threads > 0, _workers.load() == nil else { return }
        _ = _workers.storeIfNil(WorkerPool(name: "requests", count: threads))
    }

    /// Runs `body` once node `n`'s mtime is known: now when its pyc header is at hand, else on a worker.
    func afterModificationTime(of n: Int, _ body: @escaping @Sendable () -> Void) {
        do {
            try fs.resolveModificationTime(of: n, mayWait: workers == nil)
            body()
        } catch {
            answer(true) {
                _ = self.fs.modificationTime(of: n)
                body()
            }
        }
    }

    /// Runs `body` now if it need not wait, else on a worker: the request loop never blocks on
    /// a decompression or the disk.
    @inline(__always)
    func answer(_ mustWait: Bool, _ body: @escaping @Sendable () -> Void) {
        if mustWait, let workers { workers.submit(body) } else { body() }
    }

    // MARK: the one errno mapping

    /// The errno for a filesystem error; member failures are logged once per node with their cause.
    public func errno(for error: FSError, node: Int? = nil) -> Int32 {
        switch error {
        case .notFound: return ENOENT
        case .notDirectory: return ENOTDIR
        case .isDirectory: return EISDIR
        case .invalidArgument: return EINVAL
        case .readOnly: return EROFS
        case .noAttribute: return ENODATA
        case .rangeTooSmall: return ERANGE
        case .exists: return EEXIST
        case .noSpace: return ENOSPC
        case .nameTooLong: return ENAMETOOLONG
        case .permissionDenied: return EACCES
        case .notImplemented: return ENOSYS
        case .wouldBlock:
            // Handlers retry such calls on a worker; this answer never reaches the kernel.
            return EAGAIN
        case let .member(cause):
            readErrors.add(1, ordering: .relaxed)
            if let node {
                let first = lock.withLock { reported.insert(node).inserted }
                if first { logger.error("cannot read \(fs.tree.path(of: node)): \(cause)") }
            }
            if case .encrypted = cause { return EACCES }
            return EIO
        }
    }

    /// Answers request `r` with the errno of `error`: every failed reply goes through here.
    @inline(__always)
    func fail(_ r: some Responder, _ error: FSError, node: Int? = nil) {
        r.error(errno(for: error, node: node))
    }

    // MARK: attributes

    func stat(of node: Int) -> stat {
        let a = fs.attributes(of: node)
        var st = Glibc.stat()
        st.st_ino = __ino_t(a.inode)
        st.st_mode = a.mode
        st.st_nlink = UInt(a.linkCount)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_size = Int(a.size)
        st.st_blocks = Int(a.blocks)
        st.st_blksize = 4096
        st.st_mtim = timespec(tv_sec: Int(a.mtime), tv_nsec: 0)
        st.st_atim = st.st_mtim
        st.st_ctim = st.st_mtim
        return st
    }

    func entryParam(_ node: Int) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = ArchiveFileSystem.inode(of: node)
        e.generation = 1
        e.attr = stat(of: node)
        e.attr_timeout = Self.timeout
        e.entry_timeout = Self.timeout
        return e
    }

    @inline(__always)
    func node(_ r: some Responder, _ ino: fuse_ino_t) -> Int? {
        guard let n = fs.node(ofInode: UInt64(ino)) else {
            fail(r, .notFound)
            return nil
        }
        return n
    }

    // MARK: handlers

    /// FUSE `lookup`. A miss is answered with inode 0 and a timeout, so the kernel caches it.
    public func lookup(_ r: some Responder, parent: fuse_ino_t, name: UnsafePointer<CChar>) {
        let bytes = UnsafeRawBufferPointer(start: name, count: strlen(name))
        // The kernel lets names up to 1024 bytes through; no node here has one over 255.
        guard bytes.count <= PathRules.maxComponentLength else { return fail(r, .nameTooLong) }
        if isOverlay(parent) { return overlayLookup(r, parent: parent, name: Array(bytes)) }
        guard let p = node(r, parent) else { return }
        do {
            let c = try fs.lookup(parent: p, name: bytes)
            afterModificationTime(of: c) { r.entry(self.entryParam(c)) }
            fs.noteLookup(c)
        } catch .notFound {
            overlayLookup(r, parent: parent, name: Array(bytes))  // a file written into __pycache__, or a cached miss
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `forget`: inodes live as long as the mount, so there is nothing to release.
    public func forget(_ r: some Responder) { r.none() }

    /// FUSE `getattr`.
    public func getattr(_ r: some Responder, ino: fuse_ino_t) {
        if isOverlay(ino) { return overlayGetattr(r, ino: ino) }
        guard let n = node(r, ino) else { return }
        afterModificationTime(of: n) { r.attr(self.stat(of: n), timeout: Self.timeout) }
    }

    /// FUSE `open`: read-only, the page cache kept across opens.
    public func open(_ r: some Responder, ino: fuse_ino_t, fi: UnsafeMutablePointer<fuse_file_info>?) {
        if isOverlay(ino) { return overlayOpen(r, ino: ino, fi: fi) }
        guard let n = node(r, ino) else { return }
        if zeroMessageOpens.load(ordering: .relaxed) { return fail(r, .notImplemented) }
        do {
            try fs.open(n, flags: fi?.pointee.flags ?? O_RDONLY)
            r.open(fi, keepCache: true, cacheDirectory: false)
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `read`.
    public func read(_ r: some Responder, ino: fuse_ino_t, size: Int, offset: Int) {
        if isOverlay(ino) { return overlayRead(r, ino: ino, size: size, offset: offset) }
        guard let n = node(r, ino) else { return }
        guard offset >= 0 else { return fail(r, .invalidArgument) }
        do {
            try fs.read(n, offset: UInt64(offset), count: size, mayWait: workers == nil) { bytes in r.data(bytes) }
        } catch .wouldBlock {
            answer(true) {
                do throws(FSError) {
                    try self.fs.read(n, offset: UInt64(offset), count: size) { bytes in r.data(bytes) }
                } catch {
                    self.fail(r, error, node: n)
                }
            }
        } catch {
            fail(r, error, node: n)
        }
    }

    /// FUSE `release` and `releasedir`: no per-handle state.
    public func release(_ r: some Responder) { r.error(0) }

    /// FUSE `opendir`: listings cached by the kernel.
    public func opendir(_ r: some Responder, ino: fuse_ino_t, fi: UnsafeMutablePointer<fuse_file_info>?) {
        if isOverlay(ino) { return r.open(fi, keepCache: false, cacheDirectory: false) }
        guard let n = node(r, ino) else { return }
        guard fs.tree.nodes[n].kind == .directory else { return fail(r, .notDirectory) }
        if zeroMessageOpens.load(ordering: .relaxed) { return fail(r, .notImplemented) }
        // With bytecode written into the mount, listings change: the kernel must ask again.
        r.open(fi, keepCache: fs.overlay == nil, cacheDirectory: fs.overlay == nil)
    }

    /// FUSE `readdir` and `readdirplus`. Offsets: 0 is the start, entry k (`.`, `..`, then the
    /// children in archive order) carries offset k + 1, the offset of the entry after it.
    public func readdir(_ r: some Responder, ino: fuse_ino_t, size: Int, offset: Int, plus: Bool) {
        if isOverlay(ino) { return overlayReaddir(r, ino: ino, size: size, offset: offset, plus: plus) }
        guard let n = node(r, ino) else { return }
        let children: ArraySlice<UInt32>
        do { children = try fs.children(of: n) } catch { return fail(r, error) }
        let added = fs.overlay?.children(of: UInt64(ino)) ?? []
        let total = children.count + 2 + added.count
        guard offset >= 0 else { return fail(r, .invalidArgument) }
        if offset >= total { return r.data(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let out = DirectoryBuffer(size: size, plus: plus)
        for k in offset..<total {
            var e: fuse_entry_param
            let fits: Bool
            switch k {
            case 0:
                e = directoryEntry(n, plus: plus)
                fits = out.add(".".utf8, &e, next: k + 1)
            case 1:
                e = directoryEntry(Int(fs.tree.nodes[n].parent), plus: plus)
                fits = out.add("..".utf8, &e, next: k + 1)
            case (children.count + 2)...:
                // Bytecode directories and files written into this directory: plain entries.
                let a = added[k - children.count - 2]
                e = DirectoryBuffer.plainEntry(ino: a.ino, isDirectory: a.isDirectory)
                fits = out.add(a.name, &e, next: k + 1)
            default:
                let child = Int(children[children.startIndex + k - 2])
                e = directoryEntry(child, plus: plus)
                fits = out.add(fs.tree.name(of: child), &e, next: k + 1)
            }
            if !fits { break }
        }
        r.data(out.contents)
    }

    /// The entry a listing gives node `i`: with its attributes in readdirplus when they are known
    /// without waiting, else a plain one (inode and type: the kernel looks it up when used).
    private func directoryEntry(_ i: Int, plus: Bool) -> fuse_entry_param {
        if plus && !fs.attributesAreKnown(i) {
            // A source's mtime comes from its pyc's header: read it now when that needs no
            // wait (a stored pyc in the page cache, a decompressed one in the cache), to
            // save the LOOKUP that Python's stat of the source would otherwise cost.
            _ = try? fs.resolveModificationTime(of: i, mayWait: false)
        }
        if plus && fs.attributesAreKnown(i) { return entryParam(i) }
        // Only the type: attributes(of:) could read a pyc here.
        var e = fuse_entry_param()
        e.attr.st_ino = __ino_t(ArchiveFileSystem.inode(of: i))
        e.attr.st_mode = fs.fileType(of: i)
        return e
    }

    /// FUSE `readlink`.
    public func readlink(_ r: some Responder, ino: fuse_ino_t) {
        if isOverlay(ino) { return fail(r, .invalidArgument) }
        guard let n = node(r, ino) else { return }
        do {
            var target = try fs.readlink(n)
            target.append(0)
            target.withUnsafeBytes { r.readlink($0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `statfs`.
    public func statfs(_ r: some Responder) {
        let v = fs.statistics
        var st = statvfs()
        st.f_bsize = UInt(v.blockSize)
        st.f_frsize = UInt(v.blockSize)
        st.f_blocks = UInt(v.blocks)
        st.f_files = UInt(v.files)
        st.f_namemax = UInt(v.nameMax)
        r.statfs(st)
    }

    /// FUSE `getxattr`. Members carry no attributes; the root answers pyzfs's control names
    /// (not listed, so copying tools do not carry them).
    public func getxattr(_ r: some Responder, ino: fuse_ino_t, name: UnsafePointer<CChar>, size: Int) {
        if isOverlay(ino) { return fail(r, fs.overlay?.node(UInt64(ino)) == nil ? .notFound : .noAttribute) }
        guard let n = node(r, ino) else { return }
        guard n == Tree.root, let value = controlAttribute(string(fromCString: name)) else { return fail(r, .noAttribute) }
        let bytes = Array(value.utf8)
        if size == 0 { return r.xattrSize(bytes.count) }
        guard size >= bytes.count else { return fail(r, .rangeTooSmall) }
        bytes.withUnsafeBytes { r.data($0) }
    }

    /// FUSE `listxattr`: no attributes.
    public func listxattr(_ r: some Responder, ino: fuse_ino_t, size: Int) {
        guard isOverlay(ino) || node(r, ino) != nil else { return }
        if size == 0 { r.xattrSize(0) } else { r.data(UnsafeRawBufferPointer(start: nil, count: 0)) }
    }

    /// Every operation that would change the tree.
    public func refuseWrite(_ r: some Responder) { fail(r, .readOnly) }

    /// Values of the control attributes on the root.
    func controlAttribute(_ name: String) -> String? {
        guard name.hasPrefix(Self.controlPrefix) else { return nil }
        switch name.dropFirst(Self.controlPrefix.count) {
        case "pid": return String(getpid())
        case "archive": return archivePath
        case "stats": return statisticsJSON()
        default: return nil
        }
    }

    func statisticsJSON() -> String {
        let s = fs.cache.statistics
        let pyc = fs.overlay?.statistics ?? (files: 0, bytes: 0, written: 0, entries: 0, entryBytes: 0)
        return """
        {"pid":\(getpid()),"archive":\(jsonString(archivePath)),"budget":\(s.budget),"bytes_held":\(s.bytesHeld),\
        "members_held":\(s.membersHeld),"hits":\(s.hits),"misses":\(s.misses),"waits":\(s.waits),\
        "evictions":\(s.evictions),"decompressions":\(s.decompressions),\
        "decompression_seconds":\(Double(s.decompressionNanoseconds) / 1e9),"decompressed_bytes":\(s.decompressedBytes),\
        "failures":\(fs.failedMemberCount),"read_errors":\(readErrors.load(ordering: .relaxed)),"requests":\(requests.load(ordering: .relaxed)),"prefetched":\(fs.prefetcher?.prefetched ?? 0),\
        "members_over_budget":\(fs.membersOverBudget),"streams_opened":\(fs.streamsOpened),\
        "pycache_files":\(pyc.files),"pycache_bytes":\(pyc.bytes),"pycs_written":\(pyc.written),\
        "pycache_entries":\(pyc.entries),"pycache_entry_bytes":\(pyc.entryBytes)}
        """
    }
}

/// A JSON string literal.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// Reads one of a server's control attributes on its mount's root; nil when the server is gone
/// or the mount is not pyzfs's.
public func readControlAttribute(mountpoint: String, name: String) -> String? {
    var buffer = [UInt8](repeating: 0, count: 65536)
    let n = buffer.withUnsafeMutableBytes { getxattr(mountpoint, Operations.controlPrefix + name, $0.baseAddress, $0.count) }
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n], as: UTF8.self)
}

/// The reply buffer of a readdir or readdirplus: entries are added until one does not fit.
final class DirectoryBuffer {
    let size: Int
    let plus: Bool
    private let buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    private var name = [CChar](repeating: 0, count: PathRules.maxComponentLength + 1)

    init(size: Int, plus: Bool) {
        self.size = size
        self.plus = plus
        buffer = .allocate(byteCount: max(size, 1), alignment: 8)
    }

    deinit { buffer.deallocate() }

    /// A plain entry (no dentry, no attributes in readdirplus: inode 0 in its fuse_entry_out).
    static func plainEntry(ino: UInt64, isDirectory: Bool) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.attr.st_ino = __ino_t(ino)
        e.attr.st_mode = isDirectory ? S_IFDIR : S_IFREG
        return e
    }

    /// Adds `entry` under `name`, `next` being the offset of the entry after it; false when it
    /// does not fit (nothing is added). A name over 255 bytes is left out of the listing (true:
    /// the listing goes on): no program could use it, and `name` holds no more.
    func add(_ bytes: some Collection<UInt8>, _ entry: inout fuse_entry_param, next: Int) -> Bool {
        guard bytes.count < name.count else { return true }
        var j = 0
        for b in bytes { name[j] = CChar(bitPattern: b); j += 1 }
        name[j] = 0
        let remaining = size - used
        let start = buffer.baseAddress!.assumingMemoryBound(to: CChar.self) + used
        let needed = plus ? fuse_add_direntry_plus(nil, start, remaining, name, &entry, off_t(next))
                          : fuse_add_direntry(nil, start, remaining, name, &entry.attr, off_t(next))
        if needed > remaining { return false }
        used += needed
        return true
    }

    var contents: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<used]) }
}
