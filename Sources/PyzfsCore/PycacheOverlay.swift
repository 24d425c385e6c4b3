#if canImport(Glibc)
import Glibc
#endif

/// Bytecode written by CPython into `__pycache__` directories, held in memory for the life of the
/// mount. Archives without pycs (shiv leaves them out, pex compiles nothing by default) would
/// otherwise be compiled from source on every start. Only what `importlib` does to cache
/// bytecode is allowed: create a `__pycache__` directory, create `NAME.pyc` or its temporary
/// `NAME.pyc.NNN` inside one, write it, rename the temporary over its final name, unlink it.
/// Everything else stays read-only, and the archive's own members are never replaced.
public final class PycacheOverlay: @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    public struct Node: Sendable {
        public var parent: UInt64
        public var name: [UInt8]
        public var isDirectory: Bool
        public var data: [UInt8]
        public var mtime: Int64
        /// Renamed onto its final name: no longer writable.
        public var sealed: Bool = false
    }

    /// Bytes the overlay may hold: pyc data, plus each entry's name and `entryCost`.
    public let budget: Int
    /// Inode numbers of overlay nodes start here (after the archive's).
    public let firstInode: UInt64
    /// What one entry costs the budget besides its name and data: its node, its slots in the two
    /// tables and the name's allocation. Measured: 400,000 entries with 25-byte names grew a
    /// process by about 290 bytes each, the tables' growth slack included; 384 leaves room. It
    /// bounds the number of entries too: at most `budget / entryCost`.
    public static let entryCost = 384
    private let lock = ConditionLock()
    // Live nodes by inode. A removed node is dropped (its memory goes back), and its inode number
    // is never given again: the kernel may still hold it, and must then get ENOENT, not another
    // file. Numbers are 64-bit and only grow, so they cannot run out.
    private var nodes: [UInt64: Node] = [:]
    private var nextInode: UInt64
    private var names: [UInt64: [[UInt8]: UInt64]] = [:]
    private var bytes = 0
    private var entryBytes = 0
    private var written = 0

    public init(budget: Int, firstInode: UInt64) {
        self.budget = budget
        self.firstInode = firstInode
        self.nextInode = firstInode
    }

    public func contains(_ ino: UInt64) -> Bool { ino >= firstInode }

    /// The overlay node `ino`, if it exists.
    public func node(_ ino: UInt64) -> Node? {
        lock.withLock { nodes[ino] }
    }

    /// The overlay child of directory `parent` (an archive or overlay inode) named `name`.
    public func lookup(parent: UInt64, name: [UInt8]) -> UInt64? {
        lock.withLock { names[parent]?[name] }
    }

    /// Overlay children of `parent`, in order of creation.
    public func children(of parent: UInt64) -> [(name: [UInt8], ino: UInt64, isDirectory: Bool)] {
        lock.withLock {
            (names[parent] ?? [:]).map { ($0.key, $0.value, nodes[$0.value]?.isDirectory ?? false) }
                .sorted { $0.ino < $1.ino }
        }
    }

    /// Statistics: pyc files held, their bytes, pycs written; entries (files and directories)
    /// and the budget they take besides data.
    public var statistics: (files: Int, bytes: Int, written: Int, entries: Int, entryBytes: Int) {
        lock.withLock { (nodes.values.filter { !$0.isDirectory }.count, bytes, written, nodes.count, entryBytes) }
    }

    /// Slots allocated by the overlay's tables (for tests: churn must not grow them).
    var tableCapacity: Int {
        lock.withLock { nodes.capacity + names.capacity + names.values.reduce(0) { $0 + $1.capacity } }
    }

    static func isPycacheName(_ name: [UInt8]) -> Bool { name.elementsEqual("__pycache__".utf8) }

    /// `NAME.pyc`, or (when `temporary`) importlib's temporary `NAME.pyc.DIGITS`.
    static func isPycName(_ name: [UInt8], temporary: Bool) -> Bool {
        guard name.first != UInt8(ascii: "."), !name.contains(UInt8(ascii: "/")), !name.contains(0) else { return false }
        let pyc = Array(".pyc".utf8)
        if name.count > 4 && name.suffix(4).elementsEqual(pyc) { return true }
        guard temporary else { return false }
        // NAME.pyc.DIGITS: digits back to a ".pyc".
        var end = name.count
        while end > 0, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(name[end - 1]) { end -= 1 }
        guard end < name.count, end > 5, name[end - 1] == UInt8(ascii: ".") else { return false }
        return name[(end - 5)..<(end - 1)].elementsEqual(pyc)
    }

    /// FUSE `mkdir`: only `__pycache__`, in a directory of the archive.
    public func mkdir(parent: UInt64, name: [UInt8], now: Int64) throws(FSError) -> UInt64 {
        guard name.count <= PathRules.maxComponentLength else { throw .nameTooLong }
        guard Self.isPycacheName(name) else { throw .readOnly }
        return try lock.withLock { () throws(FSError) -> UInt64 in
            if names[parent]?[name] != nil { throw .exists }
            return try add(Node(parent: parent, name: name, isDirectory: true, data: [], mtime: now))
        }
    }

    /// FUSE `create`: a pyc (or its temporary) inside a `__pycache__` directory.
    public func create(parent: UInt64, parentIsPycache: Bool, name: [UInt8], now: Int64) throws(FSError) -> UInt64 {
        guard name.count <= PathRules.maxComponentLength else { throw .nameTooLong }
        guard parentIsPycache, Self.isPycName(name, temporary: true) else { throw .readOnly }
        return try lock.withLock { () throws(FSError) -> UInt64 in
            if names[parent]?[name] != nil { throw .exists }
            return try add(Node(parent: parent, name: name, isDirectory: false, data: [], mtime: now))
        }
    }

    /// Under the lock.
    private func add(_ node: Node) throws(FSError) -> UInt64 {
        let cost = Self.entryCost + node.name.count
        guard bytes + entryBytes + cost <= budget else { throw .noSpace }
        let ino = nextInode
        nextInode += 1
        nodes[ino] = node
        names[node.parent, default: [:]][node.name] = ino
        entryBytes += cost
        return ino
    }

    /// Under the lock: drops node `ino` and gives back what it took.
    private func remove(_ ino: UInt64) {
        guard let node = nodes.removeValue(forKey: ino) else { return }
        bytes -= node.data.count
        entryBytes -= Self.entryCost + node.name.count
        if names[node.parent]?[node.name] == ino { names[node.parent]?[node.name] = nil }
    }

    /// FUSE `write` to an overlay file; ENOSPC past the budget (importlib then just skips caching).
    public func write(_ ino: UInt64, offset: UInt64, bytes data: UnsafeRawBufferPointer, now: Int64) throws(FSError) -> Int {
        try lock.withLock { () throws(FSError) -> Int in
            guard var node = nodes[ino], !node.isDirectory, !node.sealed else { throw .readOnly }
            // Offsets come from the kernel unchecked: anything past the budget cannot fit anyway,
            // and checked this way no sum below can overflow.
            guard offset <= UInt64(budget), data.count <= budget - Int(offset) else { throw .noSpace }
            let end = Int(offset) + data.count
            let growth = max(0, end - node.data.count)
            guard growth <= budget - bytes - entryBytes else { throw .noSpace }
            nodes[ino] = nil  // the array below is then uniquely referenced: no copy
            if end > node.data.count { node.data += [UInt8](repeating: 0, count: end - node.data.count) }
            node.data.withUnsafeMutableBytes { dst in
                if data.count > 0 { (dst.baseAddress! + Int(offset)).copyMemory(from: data.baseAddress!, byteCount: data.count) }
            }
            node.mtime = now
            nodes[ino] = node
            bytes += growth
            return data.count
        }
    }

    /// FUSE `setattr` with a size: truncate or extend an overlay file.
    public func truncate(_ ino: UInt64, to size: UInt64) throws(FSError) {
        try lock.withLock { () throws(FSError) in
            guard var node = nodes[ino], !node.isDirectory, !node.sealed else { throw .readOnly }
            guard size <= UInt64(budget) else { throw .noSpace }
            let old = node.data.count
            guard Int(size) <= budget - bytes - entryBytes + old else { throw .noSpace }
            nodes[ino] = nil
            if Int(size) < old { node.data.removeLast(old - Int(size)) } else {
                node.data += [UInt8](repeating: 0, count: Int(size) - old)
            }
            nodes[ino] = node
            bytes += Int(size) - old
        }
    }

    /// FUSE `read` of an overlay file.
    public func read<R>(_ ino: UInt64, offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) -> R) throws(FSError) -> R {
        try lock.withLock { () throws(FSError) -> R in
            guard let node = nodes[ino] else { throw .notFound }
            guard !node.isDirectory else { throw .isDirectory }
            let data = node.data
            let start = Int(min(offset, UInt64(data.count))), end = start + min(data.count - start, max(0, count))
            return data.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
        }
    }

    /// FUSE `rename` within one `__pycache__` directory: importlib's temporary `NAME.pyc.NNN` onto
    /// `NAME.pyc`, which is then sealed (read-only).
    /// - Parameter targetInArchive: whether the archive has a member of the new name (never replaced).
    public func rename(parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], targetInArchive: Bool) throws(FSError) {
        guard name.count <= PathRules.maxComponentLength, newName.count <= PathRules.maxComponentLength
        else { throw .nameTooLong }
        guard parent == newParent, Self.isPycName(newName, temporary: false), !targetInArchive,
              name.count > newName.count + 1, name.starts(with: newName), name[newName.count] == UInt8(ascii: ".")
        else { throw .readOnly }
        try lock.withLock { () throws(FSError) in
            guard let ino = names[parent]?[name], var node = nodes[ino], !node.isDirectory, !node.sealed
            else { throw .readOnly }
            if let old = names[parent]?[newName], old != ino {
                guard nodes[old]?.isDirectory == false else { throw .readOnly }
                remove(old)
            }
            names[parent]?[name] = nil
            names[parent]?[newName] = ino
            entryBytes -= name.count - newName.count
            node.name = newName
            node.sealed = true
            nodes[ino] = node
            written += 1
        }
    }

    /// FUSE `unlink` of a temporary (importlib removes one it could not finish).
    public func unlink(parent: UInt64, name: [UInt8]) throws(FSError) {
        try lock.withLock { () throws(FSError) in
            guard let ino = names[parent]?[name], let node = nodes[ino], !node.isDirectory, !node.sealed
            else { throw .readOnly }
            remove(ino)
        }
    }
}
