#if canImport(Glibc)
import Glibc
#endif

/// What a node of the mounted tree is.
public enum NodeKind: UInt8, Sendable {
    case directory, file, symlink
}

/// One file, directory or symlink of the mount. Inode number = index + 1; the root is index 0.
public struct Node: Sendable {
    /// Index of the parent node (the root is its own parent).
    public internal(set) var parent: UInt32
    var nameOffset: UInt32
    var nameLength: UInt16
    public internal(set) var kind: NodeKind
    /// Permission bits only (never setuid, setgid or sticky).
    public internal(set) var permissions: UInt16
    /// Index of the member in `ZipIndex.entries`, or -1 for a directory with no entry of its own.
    public internal(set) var entry: Int32
    var childStart: UInt32
    public internal(set) var childCount: UInt32
    public internal(set) var subdirectoryCount: UInt32
    /// Hidden nodes (escaping symlinks) are in no listing and found by no lookup.
    public internal(set) var isHidden: Bool
}

/// What to do with symlinks that point out of the tree.
public enum SymlinkPolicy: String, Sendable, CaseIterable {
    /// Show links that resolve inside the mount; hide the others with a warning.
    case inside
    /// Show every link as it is (the kernel follows whatever a mount shows).
    case all
}

/// Settings that shape the tree.
public struct TreeOptions: Sendable {
    /// Bits cleared from every mode.
    public var umask: UInt16 = 0
    public var symlinks: SymlinkPolicy = .inside
    /// Modification time of directories that have no entry of their own.
    public var defaultTime: Int64 = 0
    public init(umask: UInt16 = 0, symlinks: SymlinkPolicy = .inside, defaultTime: Int64 = 0) {
        self.umask = umask
        self.symlinks = symlinks
        self.defaultTime = defaultTime
    }
}

/// A member that did not become a node, or became one differently from what it says.
public struct TreeWarning: Sendable, Equatable, CustomStringConvertible {
    public let name: String
    public let reason: String
    /// The name shortened to 120 characters for a log line.
    public var description: String {
        let shown = name.count > 120 ? String(name.prefix(60)) + "…" + String(name.suffix(40)) + " (\(name.utf8.count) bytes)" : name
        return "\(shown): \(reason)"
    }
}

/// The immutable directory tree of an archive: built once, then read from any thread.
public struct Tree: Sendable {
    public let index: ZipIndex
    public private(set) var nodes: [Node]
    /// Modification time of each node, seconds since the epoch.
    public private(set) var mtimes: [Int64]
    private var children: [UInt32] = []
    private var slots: [UInt32]
    private var slotMask: Int
    /// Targets of symlink nodes, by node index.
    public private(set) var symlinkTargets: [UInt32: [UInt8]] = [:]
    public private(set) var warnings: [TreeWarning] = []
    public let options: TreeOptions
    /// The hidden file node of the start profile (`StartProfile.memberName` at the root), if any.
    public private(set) var profileNode: Int?

    static let emptySlot = UInt32.max

    /// The root directory's node index.
    public static let root = 0

    /// The name of node `i` (empty for the root).
    public func name(of i: Int) -> ArraySlice<UInt8> {
        let n = nodes[i]
        return index.names[Int(n.nameOffset)..<Int(n.nameOffset) + Int(n.nameLength)]
    }

    /// The slash-separated path of node `i` relative to the root.
    public func path(of i: Int) -> String {
        var parts: [String] = []
        var cur = i
        while cur != Tree.root {
            parts.append(String(decoding: name(of: cur), as: UTF8.self))
            cur = Int(nodes[cur].parent)
        }
        return parts.reversed().joined(separator: "/")
    }

    /// The visible children of directory `i`, in archive order.
    public func children(of i: Int) -> ArraySlice<UInt32> {
        let n = nodes[i]
        return children[Int(n.childStart)..<Int(n.childStart + n.childCount)]
    }

    /// The child of `parent` named `name`, if visible.
    public func child(of parent: Int, named name: UnsafeRawBufferPointer) -> Int? {
        guard let i = find(parent: UInt32(parent), name: name), !nodes[Int(i)].isHidden else { return nil }
        return Int(i)
    }

    /// Convenience for tests.
    public func child(of parent: Int, named name: String) -> Int? {
        var s = name
        return s.withUTF8 { child(of: parent, named: UnsafeRawBufferPointer($0)) }
    }

    /// Looks up a slash-separated relative path (split on the byte `/`: splitting Characters
    /// would join a `/` with a combining mark after it).
    public func lookup(path: String) -> Int? {
        var cur = Tree.root
        for part in Array(path.utf8).split(separator: UInt8(ascii: "/")) {
            guard nodes[cur].kind == .directory,
                  let c = Array(part).withUnsafeBytes({ child(of: cur, named: $0) }) else { return nil }
            cur = c
        }
        return cur
    }

    /// Builds the tree of `index`.
    /// - Parameter symlinkTarget: the bytes of a symlink member (its target), or nil when they
    ///   cannot be read; such a link is hidden with a warning.
    public init(index: ZipIndex, options: TreeOptions = TreeOptions(),
                symlinkTarget: (Int) -> [UInt8]? = { _ in nil }) {
        self.index = index
        self.options = options
        let capacity = Tree.slotCount(for: index.entries.count * 2 + 16)
        slots = [UInt32](repeating: Tree.emptySlot, count: capacity)
        slotMask = capacity - 1
        nodes = [Node(parent: 0, nameOffset: 0, nameLength: 0, kind: .directory, permissions: 0o755 & ~options.umask,
                      entry: -1, childStart: 0, childCount: 0, subdirectoryCount: 0, isHidden: false)]
        nodes.reserveCapacity(index.entries.count + 16)
        mtimes = [options.defaultTime]
        mtimes.reserveCapacity(index.entries.count + 16)
        var times = LocalTimeConverter()
        var parts: [Range<Int>] = []
        var symlinkNodes: [UInt32] = []

        index.names.withUnsafeBytes { names in
            for (i, entry) in index.entries.enumerated() {
                let nameStart = Int(entry.nameOffset)
                let raw = UnsafeRawBufferPointer(rebasing: names[nameStart..<nameStart + Int(entry.nameLength)])
                let isDirectoryName: Bool
                switch PathRules.split(raw, into: &parts) {
                case let .skip(reason):
                    warn(entry, "skipped: \(reason)")
                    continue
                case let .path(isDirectory):
                    isDirectoryName = isDirectory
                }
                var (kind, permissions, note) = Tree.classify(entry, isDirectoryName: isDirectoryName)
                if let note { warn(entry, note) }
                if let damage = entry.damage, kind == .file { warn(entry, "listed, but every read fails (EIO): \(damage); the archive is damaged: rebuild it, or check it with python3 -m zipfile -t") }
                permissions &= ~options.umask
                let mtime = times.unixTime(of: entry)

                var parent: UInt32 = 0
                for part in parts.dropLast() {
                    let name = UnsafeRawBufferPointer(rebasing: raw[part])
                    if let c = find(parent: parent, name: name) {
                        if nodes[Int(c)].kind != .directory {
                            warn(entry, "a file and a directory share the path \(path(of: Int(c))); the directory is kept")
                            makeImplicitDirectory(Int(c))
                        }
                        parent = c
                    } else {
                        parent = add(parent: parent, nameOffset: UInt32(nameStart + part.lowerBound),
                                     nameLength: part.count, name: name, kind: .directory,
                                     permissions: 0o755 & ~options.umask, entry: -1, mtime: options.defaultTime)
                    }
                }
                let last = parts[parts.count - 1]
                let lastName = UnsafeRawBufferPointer(rebasing: raw[last])
                if let c = find(parent: parent, name: lastName) {
                    let existing = nodes[Int(c)]
                    if kind == .directory {
                        if existing.kind != .directory {
                            warn(entry, "a file and a directory share this path; the directory is kept")
                        }
                        nodes[Int(c)].kind = .directory
                        nodes[Int(c)].entry = Int32(i)
                        nodes[Int(c)].permissions = permissions
                        mtimes[Int(c)] = mtime
                    } else if existing.kind == .directory {
                        warn(entry, "skipped: a directory of the same path exists, and directories are kept")
                    } else {
                        // As CPython's zipfile does, the last of duplicate names wins.
                        warn(entry, "duplicate name; the last member of this name is used")
                        nodes[Int(c)].kind = kind
                        nodes[Int(c)].entry = Int32(i)
                        nodes[Int(c)].permissions = permissions
                        mtimes[Int(c)] = mtime
                        if kind == .symlink { symlinkNodes.append(c) }
                    }
                } else {
                    let c = add(parent: parent, nameOffset: UInt32(nameStart + last.lowerBound),
                                nameLength: last.count, name: lastName, kind: kind,
                                permissions: permissions, entry: Int32(i), mtime: mtime)
                    if kind == .symlink { symlinkNodes.append(c) }
                }
            }
        }

        for s in symlinkNodes where nodes[Int(s)].kind == .symlink {
            let entry = Int(nodes[Int(s)].entry)
            guard let target = symlinkTarget(entry), !target.isEmpty, !target.contains(0) else {
                warn(index.entries[entry], "skipped: the symlink's target cannot be read")
                nodes[Int(s)].isHidden = true
                continue
            }
            symlinkTargets[s] = target
        }
        if options.symlinks == .inside {
            var escaping: [UInt32] = []
            var resolution = SymlinkResolution()
            for (s, _) in symlinkTargets.sorted(by: { $0.key < $1.key }) where !nodes[Int(s)].isHidden {
                if resolve(link: s, &resolution) == nil { escaping.append(s) }
            }
            for s in escaping {
                nodes[Int(s)].isHidden = true
                let target = String(decoding: symlinkTargets[s]!, as: UTF8.self)
                warnings.append(TreeWarning(name: path(of: Int(s)),
                    reason: "hidden: the symlink points out of the mount (\(target)); -o symlinks=all shows it"))
            }
        }
        // The start profile is pyzfs's, not the app's: no lookup or listing shows it.
        if let p = StartProfile.memberName.utf8CString.withUnsafeBytes({ find(parent: 0, name: UnsafeRawBufferPointer(rebasing: $0.dropLast())) }),
           nodes[Int(p)].kind == .file {
            nodes[Int(p)].isHidden = true
            profileNode = Int(p)
        }
        buildChildren()
    }

    private mutating func warn(_ entry: ZipEntry, _ reason: String) {
        warnings.append(TreeWarning(name: index.nameString(of: entry), reason: reason))
    }

    private mutating func makeImplicitDirectory(_ i: Int) {
        nodes[i].kind = .directory
        nodes[i].entry = -1
        nodes[i].permissions = 0o755 & ~options.umask
        mtimes[i] = options.defaultTime
    }

    /// Kind and permission bits of a member, and a note when its stored type was not kept.
    static func classify(_ entry: ZipEntry, isDirectoryName: Bool) -> (NodeKind, UInt16, String?) {
        let mode = entry.unixMode ?? 0
        let type = mode & 0o170000
        var note: String? = nil
        let kind: NodeKind
        if isDirectoryName || type == 0o040000 {
            kind = .directory
        } else if type == 0o120000 {
            kind = .symlink
        } else {
            kind = .file
            if type != 0 && type != 0o100000 {
                note = "a device, FIFO or socket in the archive is served as a regular file"
            }
        }
        // Never group- or other-writable: under allow_other, a writable directory would let
        // another user put code where the mount's owner imports it (docs/names.md).
        let stored = UInt16(mode & 0o755)
        let permissions: UInt16
        switch kind {
        case .symlink: permissions = 0o777
        case .directory: permissions = stored == 0 ? 0o755 : stored
        case .file: permissions = stored == 0 ? 0o644 : stored
        }
        return (kind, permissions, note)
    }

    // MARK: hash table of (parent, name) -> node

    static func slotCount(for n: Int) -> Int {
        var c = 64
        while c < n * 2 { c <<= 1 }
        return c
    }

    @inline(__always)
    static func hash(parent: UInt32, name: UnsafeRawBufferPointer) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(parent) &* 0x9E37_79B9_7F4A_7C15
        for b in name {
            h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3
        }
        h ^= h >> 29
        return Int(truncatingIfNeeded: h)
    }

    private func find(parent: UInt32, name: UnsafeRawBufferPointer) -> UInt32? {
        var slot = Tree.hash(parent: parent, name: name) & slotMask
        return index.names.withUnsafeBytes { names -> UInt32? in
            while true {
                let i = slots[slot]
                if i == Tree.emptySlot { return nil }
                let n = nodes[Int(i)]
                if n.parent == parent && Int(n.nameLength) == name.count {
                    let candidate = UnsafeRawBufferPointer(rebasing: names[Int(n.nameOffset)..<Int(n.nameOffset) + name.count])
                    if name.count == 0 || memcmpEqual(candidate, name) { return i }
                }
                slot = (slot + 1) & slotMask
            }
        }
    }

    private mutating func add(parent: UInt32, nameOffset: UInt32, nameLength: Int, name: UnsafeRawBufferPointer,
                              kind: NodeKind, permissions: UInt16, entry: Int32, mtime: Int64) -> UInt32 {
        if (nodes.count + 1) * 2 > slots.count { grow() }
        let i = UInt32(nodes.count)
        nodes.append(Node(parent: parent, nameOffset: nameOffset, nameLength: UInt16(nameLength), kind: kind,
                          permissions: permissions, entry: entry, childStart: 0, childCount: 0,
                          subdirectoryCount: 0, isHidden: false))
        mtimes.append(mtime)
        var slot = Tree.hash(parent: parent, name: name) & slotMask
        while slots[slot] != Tree.emptySlot { slot = (slot + 1) & slotMask }
        slots[slot] = i
        return i
    }

    private mutating func grow() {
        let capacity = slots.count * 2
        slots = [UInt32](repeating: Tree.emptySlot, count: capacity)
        slotMask = capacity - 1
        index.names.withUnsafeBytes { names in
            for i in 1..<nodes.count {
                let n = nodes[i]
                let name = UnsafeRawBufferPointer(rebasing: names[Int(n.nameOffset)..<Int(n.nameOffset) + Int(n.nameLength)])
                var slot = Tree.hash(parent: n.parent, name: name) & slotMask
                while slots[slot] != Tree.emptySlot { slot = (slot + 1) & slotMask }
                slots[slot] = UInt32(i)
            }
        }
    }

    private mutating func buildChildren() {
        var counts = [UInt32](repeating: 0, count: nodes.count)
        for i in 1..<nodes.count where !nodes[i].isHidden {
            counts[Int(nodes[i].parent)] += 1
            if nodes[i].kind == .directory { nodes[Int(nodes[i].parent)].subdirectoryCount += 1 }
        }
        var start: UInt32 = 0
        for i in 0..<nodes.count {
            nodes[i].childStart = start
            start += counts[i]
        }
        children = [UInt32](repeating: 0, count: Int(start))
        var fill = [UInt32](repeating: 0, count: nodes.count)
        for i in 1..<nodes.count where !nodes[i].isHidden {
            let p = Int(nodes[i].parent)
            children[Int(nodes[p].childStart + fill[p])] = UInt32(i)
            fill[p] += 1
        }
        for i in 0..<nodes.count { nodes[i].childCount = counts[i] }
    }

    // MARK: symlinks

    /// Where each link leads, computed once per link: a link met again while it is being
    /// resolved is a loop (the kernel answers ELOOP, which leaves nothing). Without this, a link
    /// like `l -> l/l` takes time exponential in its length.
    struct SymlinkResolution {
        enum State { case resolving, resolved(Int?) }
        var states: [UInt32: State] = [:]
    }

    /// The node link `s` leads to; nil when following it leaves the mount (an absolute target,
    /// or `..` above the root, following the tree's own links on the way).
    private func resolve(link s: UInt32, _ resolution: inout SymlinkResolution) -> Int? {
        let origin = Int(nodes[Int(s)].parent)
        switch resolution.states[s] {
        case .resolving: return origin
        case let .resolved(r): return r
        case nil: break
        }
        resolution.states[s] = .resolving
        let result: Int?
        if let target = symlinkTargets[s] { result = resolve(from: origin, target: target, &resolution) } else { result = origin }
        resolution.states[s] = .resolved(result)
        return result
    }

    /// The directory (or node) a target leads to; nil when it leaves the mount. Missing
    /// components continue lexically, so `missing/../..` is judged by its `..` count.
    private func resolve(from start: Int, target: [UInt8], _ resolution: inout SymlinkResolution) -> Int? {
        if target.first == UInt8(ascii: "/") { return nil }
        var cur = start
        var virtualDepth = 0  // components below `cur` that do not exist
        for part in target.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                if virtualDepth > 0 { virtualDepth -= 1; continue }
                if cur == Tree.root { return nil }
                cur = Int(nodes[cur].parent)
                continue
            }
            if virtualDepth > 0 || nodes[cur].kind != .directory { virtualDepth += 1; continue }
            let found = Array(part).withUnsafeBytes { find(parent: UInt32(cur), name: $0) }
            guard let c = found else { virtualDepth += 1; continue }
            switch nodes[Int(c)].kind {
            case .directory: cur = Int(c)
            case .file: virtualDepth += 1
            case .symlink:
                guard symlinkTargets[c] != nil else { virtualDepth += 1; continue }
                guard let next = resolve(link: c, &resolution) else { return nil }
                cur = next
            }
        }
        return cur
    }
}

@inline(__always)
func memcmpEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
}
