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
        public var live: Bool
        /// Renamed onto its final name: no longer writable.
        public var sealed: Bool = false
    }

    /// Bytes of pyc data the overlay may hold.
    public let budget: Int
    /// Inode numbers of overlay nodes start here (after the archive's).
    public let firstInode: UInt64
    private let lock = ConditionLock()
    private var nodes: [Node] = []
    private var names: [UInt64: [[UInt8]: UInt64]] = [:]
    private var bytes = 0
    private var written = 0

    public init(budget: Int, firstInode: UInt64) {
        self.budget = budget
        self.firstInode = firstInode
    }

    public func contains(_ ino: UInt64) -> Bool { ino >= firstInode }

    /// The overlay node `ino`, if it exists.
    public func node(_ ino: UInt64) -> Node? {
        lock.withLock {
            let i = Int(ino - firstInode)
            return ino >= firstInode && i < nodes.count && nodes[i].live ? nodes[i] : nil
        }
    }

    /// The overlay child of directory `parent` (an archive or overlay inode) named `name`.
    public func lookup(parent: UInt64, name: [UInt8]) -> UInt64? {
        lock.withLock { names[parent]?[name] }
    }

    /// Overlay children of `parent`, by name order of creation.
    public func children(of parent: UInt64) -> [(name: [UInt8], ino: UInt64, isDirectory: Bool)] {
        lock.withLock {
            (names[parent] ?? [:]).map { ($0.key, $0.value, nodes[Int($0.value - firstInode)].isDirectory) }
                .sorted { $0.ino < $1.ino }
        }
    }

    /// Statistics: pyc files held, and their bytes.
    public var statistics: (files: Int, bytes: Int, written: Int) {
        lock.withLock { (nodes.filter { $0.live && !$0.isDirectory }.count, bytes, written) }
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
        guard Self.isPycacheName(name) else { throw .readOnly }
        return try lock.withLock { () throws(FSError) -> UInt64 in
            if names[parent]?[name] != nil { throw .exists }
            return add(Node(parent: parent, name: name, isDirectory: true, data: [], mtime: now, live: true))
        }
    }

    /// FUSE `create`: a pyc (or its temporary) inside a `__pycache__` directory.
    public func create(parent: UInt64, parentIsPycache: Bool, name: [UInt8], now: Int64) throws(FSError) -> UInt64 {
        guard parentIsPycache, Self.isPycName(name, temporary: true) else { throw .readOnly }
        return try lock.withLock { () throws(FSError) -> UInt64 in
            if names[parent]?[name] != nil { throw .exists }
            return add(Node(parent: parent, name: name, isDirectory: false, data: [], mtime: now, live: true))
        }
    }

    private func add(_ node: Node) -> UInt64 {
        let ino = firstInode + UInt64(nodes.count)
        nodes.append(node)
        names[node.parent, default: [:]][node.name] = ino
        return ino
    }

    /// FUSE `write` to an overlay file; ENOSPC past the budget (importlib then just skips caching).
    public func write(_ ino: UInt64, offset: UInt64, bytes data: UnsafeRawBufferPointer, now: Int64) throws(FSError) -> Int {
        try lock.withLock { () throws(FSError) -> Int in
            let i = Int(ino - firstInode)
            guard ino >= firstInode, i < nodes.count, nodes[i].live, !nodes[i].isDirectory, !nodes[i].sealed else { throw .readOnly }
            // Offsets come from the kernel unchecked: anything past the budget cannot fit anyway.
            guard offset <= UInt64(budget), data.count <= budget else { throw .noSpace }
            let end = Int(offset) + data.count
            let growth = max(0, end - nodes[i].data.count)
            guard bytes + growth <= budget else { throw .noSpace }
            if end > nodes[i].data.count { nodes[i].data += [UInt8](repeating: 0, count: end - nodes[i].data.count) }
            nodes[i].data.withUnsafeMutableBytes { dst in
                if data.count > 0 { (dst.baseAddress! + Int(offset)).copyMemory(from: data.baseAddress!, byteCount: data.count) }
            }
            nodes[i].mtime = now
            bytes += growth
            return data.count
        }
    }

    /// FUSE `setattr` with a size: truncate or extend an overlay file.
    public func truncate(_ ino: UInt64, to size: UInt64) throws(FSError) {
        try lock.withLock { () throws(FSError) in
            let i = Int(ino - firstInode)
            guard ino >= firstInode, i < nodes.count, nodes[i].live, !nodes[i].isDirectory, !nodes[i].sealed else { throw .readOnly }
            guard size <= UInt64(budget) else { throw .noSpace }
            let old = nodes[i].data.count
            guard bytes - old + Int(size) <= budget else { throw .noSpace }
            if Int(size) < old { nodes[i].data.removeLast(old - Int(size)) } else {
                nodes[i].data += [UInt8](repeating: 0, count: Int(size) - old)
            }
            bytes += Int(size) - old
        }
    }

    /// FUSE `read` of an overlay file.
    public func read<R>(_ ino: UInt64, offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) -> R) throws(FSError) -> R {
        try lock.withLock { () throws(FSError) -> R in
            let i = Int(ino - firstInode)
            guard ino >= firstInode, i < nodes.count, nodes[i].live else { throw .notFound }
            guard !nodes[i].isDirectory else { throw .isDirectory }
            let data = nodes[i].data
            let start = min(Int(offset), data.count), end = min(data.count, start + count)
            return data.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
        }
    }

    /// FUSE `rename` within one `__pycache__` directory: importlib's temporary `NAME.pyc.NNN` onto
    /// `NAME.pyc`, which is then sealed (read-only).
    /// - Parameter targetInArchive: whether the archive has a member of the new name (never replaced).
    public func rename(parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], targetInArchive: Bool) throws(FSError) {
        guard parent == newParent, Self.isPycName(newName, temporary: false), !targetInArchive,
              name.count > newName.count + 1, name.starts(with: newName), name[newName.count] == UInt8(ascii: ".")
        else { throw .readOnly }
        try lock.withLock { () throws(FSError) in
            guard let ino = names[parent]?[name], !nodes[Int(ino - firstInode)].isDirectory,
                  !nodes[Int(ino - firstInode)].sealed else { throw .readOnly }
            if let old = names[parent]?[newName], old != ino {
                let o = Int(old - firstInode)
                bytes -= nodes[o].data.count
                nodes[o].live = false
                nodes[o].data = []
            }
            names[parent]?[name] = nil
            names[parent]?[newName] = ino
            nodes[Int(ino - firstInode)].name = newName
            nodes[Int(ino - firstInode)].sealed = true
            written += 1
        }
    }

    /// FUSE `unlink` of a temporary (importlib removes one it could not finish).
    public func unlink(parent: UInt64, name: [UInt8]) throws(FSError) {
        try lock.withLock { () throws(FSError) in
            guard let ino = names[parent]?[name], !nodes[Int(ino - firstInode)].isDirectory,
                  !nodes[Int(ino - firstInode)].sealed else { throw .readOnly }
            let i = Int(ino - firstInode)
            bytes -= nodes[i].data.count
            nodes[i].live = false
            nodes[i].data = []
            names[parent]?[name] = nil
        }
    }
}
