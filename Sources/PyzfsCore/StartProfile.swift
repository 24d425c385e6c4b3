/// The start profile that `pyzfs optimize --profile` stores in an archive: the members an app's
/// start read first, in the order it first read them, so that a mount can decode them ahead of
/// the app's reads.
///
/// It is the root member `.pyzfs-profile`: a name that is no Python identifier (it can never be
/// imported, not even as a namespace package), and that the tree hides (no lookup finds it, no
/// listing shows it). Its text is versioned and bounded:
/// ```
/// pyzfs-profile 1
/// pkg/__init__.py
/// pkg/__pycache__/__init__.cpython-311.pyc
/// ```
/// one path a line, relative to the root, `\n`-terminated, at most `maximumBytes` in all.
/// The member is untrusted input: `members(in:of:)` ignores what it cannot use.
public enum StartProfile {
    /// The member's name, at the archive's root.
    public static let memberName = ".pyzfs-profile"
    /// The first line: the format and its version.
    public static let header = "pyzfs-profile 1"
    /// The most bytes a profile holds (also the most a Linux extended attribute carries, which
    /// is how the server hands its record to `pyzfs optimize`).
    public static let maximumBytes = 65536
    /// The longest line that can name a member (PATH_MAX).
    public static let maximumLineBytes = 4096

    /// The profile text for `paths` in that order: those that cannot be a line (empty, with a
    /// newline or NUL, too long) are left out, and the list stops before the text would exceed
    /// `maximumBytes`.
    public static func encode(_ paths: some Sequence<String>) -> [UInt8] {
        var out = Array((header + "\n").utf8)
        for p in paths {
            let bytes = Array(p.utf8)
            guard isUsableLine(bytes[...]) else { continue }
            if out.count + bytes.count + 1 > maximumBytes { break }
            out += bytes
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// The file nodes of `tree` that profile `bytes` names, in its order, each once. Anything
    /// unusable is ignored: text past `maximumBytes`, a wrong header (then nothing at all),
    /// lines too long, names the tree does not hold or hides (the profile itself), directories
    /// and symlinks, duplicates.
    public static func members(in bytes: some Collection<UInt8>, of tree: Tree) -> [Int] {
        let text = Array(bytes.prefix(maximumBytes))
        var lines = text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        // A text cut at `maximumBytes` may end inside a line: that line does not count.
        if bytes.count > maximumBytes || text.last != UInt8(ascii: "\n") { lines.removeLast() }
        guard let first = lines.first, first.elementsEqual(header.utf8) else { return [] }
        var seen = Set<Int>()
        var found: [Int] = []
        for line in lines.dropFirst() where isUsableLine(line) {
            guard let node = lookup(line, in: tree), tree.nodes[node].kind == .file,
                  seen.insert(node).inserted else { continue }
            found.append(node)
        }
        return found
    }

    private static func isUsableLine(_ line: ArraySlice<UInt8>) -> Bool {
        !line.isEmpty && line.count <= maximumLineBytes && !line.contains(0) && !line.contains(UInt8(ascii: "\n"))
    }

    /// The visible node at `path` (split on the byte `/`), without making a String of it.
    private static func lookup(_ path: ArraySlice<UInt8>, in tree: Tree) -> Int? {
        var cur = Tree.root
        for part in path.split(separator: UInt8(ascii: "/")) {
            guard tree.nodes[cur].kind == .directory,
                  let c = Array(part).withUnsafeBytes({ tree.child(of: cur, named: $0) }) else { return nil }
            cur = c
        }
        return cur == Tree.root ? nil : cur
    }
}

/// The order in which members were first read, kept by the server for `pyzfs optimize
/// --profile`: a bit per node, and the nodes in order until their profile text would exceed
/// `StartProfile.maximumBytes` (the record stops there).
final class FirstReads: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = ConditionLock()
    private var seen: [UInt64]
    private var order: [Int32] = []
    private var bytes = StartProfile.header.utf8.count + 1
    private var full = false

    init(nodes: Int) { seen = [UInt64](repeating: 0, count: (nodes + 63) / 64) }

    /// Node `i`, whose path is `pathLength` bytes, is being read.
    func note(_ i: Int, pathLength: () -> Int) {
        let word = i >> 6, bit = UInt64(1) << UInt64(i & 63)
        lock.withLock {
            guard seen[word] & bit == 0, !full else { return }
            seen[word] |= bit
            let length = pathLength() + 1
            if bytes + length > StartProfile.maximumBytes { full = true; return }
            bytes += length
            order.append(Int32(i))
        }
    }

    /// The nodes recorded, in order.
    var nodes: [Int] { lock.withLock { order.map(Int.init) } }
}
