/// Decompresses shared libraries before they are read, on background threads.
///
/// A cold start of a deflated app spends most of its extra time inflating `.so` members one
/// after another as the dynamic loader asks for them. These signals say which are coming:
/// - the first read in a package directory `D` (or its `__pycache__`): the extension modules
///   in `D` are likely imported next;
/// - the first read below a directory `X` with an auditwheel `X.libs/` beside it: the vendored
///   libraries there are loaded with X's extensions;
/// - a looked-up member named like a shared library (`*.so`, `*.so.N`): it is about to be mapped
///   (entries that readdirplus already gave the kernel are not looked up, hence the rules above);
/// - a decompressed ELF member's DT_NEEDED names, found through its DT_RUNPATH/DT_RPATH
///   (`$ORIGIN/../X.libs`) inside the archive.
/// Only compressed members that fit a quarter of the cache and are at least `minimumSize`
/// bytes are worth it.
public final class Prefetcher: @unchecked Sendable {
    // @unchecked: `scheduled` is guarded by `lock`; `fs` is set once, before use.
    private let pool: WorkerPool
    private let lock = ConditionLock()
    private var scheduled: Set<Int> = []
    private var seenDirectories: Set<Int> = []
    weak var fs: ArchiveFileSystem?
    public let minimumSize: UInt64

    public init(threads: Int, minimumSize: UInt64 = 64 << 10) {
        pool = WorkerPool(name: "prefetch", count: threads, niceness: 10)
        self.minimumSize = minimumSize
    }

    /// Members prefetched (scheduled) so far.
    public var prefetched: Int { lock.withLock { scheduled.count } }

    /// A lookup resolved to node `i`.
    func lookedUp(_ i: Int) {
        guard let fs else { return }
        let tree = fs.tree
        switch tree.nodes[i].kind {
        case .file:
            if Self.looksLikeSharedLibrary(tree.name(of: i)) { schedule(node: i) }
        case .directory:
            if i != Tree.root { scheduleCompanionLibraries(of: i) }
        case .symlink:
            break
        }
    }

    /// The mount is ready: while the interpreter starts up, inflate the shared libraries a start
    /// usually maps: the vendored libraries of auditwheel `X.libs/` directories first, then
    /// extension modules, larger first, up to half the cache in all.
    func mounted() {
        // The scan runs on a prefetch thread: it must not delay the mount's readiness.
        pool.submit { [weak self] in self?.scheduleLikelyLibraries() }
    }

    private func scheduleLikelyLibraries() {
        guard let fs else { return }
        let tree = fs.tree
        var vendored: [Int] = [], extensions: [Int] = []
        for (i, n) in tree.nodes.enumerated() where n.kind == .file && !n.isHidden {
            let name = tree.name(of: i)
            guard Self.looksLikeSharedLibrary(name) else { continue }
            let directory = tree.name(of: Int(n.parent))
            if directory.count > 5, directory.suffix(5).elementsEqual(".libs".utf8) {
                vendored.append(i)
            } else if Self.looksLikeExtensionModule(name) && !tree.path(of: i).contains("/tests/") {
                extensions.append(i)
            }
        }
        func size(_ i: Int) -> UInt64 { tree.index.entries[Int(tree.nodes[i].entry)].uncompressedSize }
        var allowance = UInt64(fs.cache.budget / 2)
        for i in vendored.sorted(by: { size($0) > size($1) }) + extensions.sorted(by: { size($0) > size($1) }) {
            guard size(i) <= allowance else { continue }
            if schedule(node: i) { allowance -= size(i) }
        }
    }

    /// Node `i` is being read (called for every read; cheap after the first in a directory).
    func reading(_ i: Int) {
        guard let fs else { return }
        let tree = fs.tree
        var directory = Int(tree.nodes[i].parent)
        let first = lock.withLock { seenDirectories.insert(directory).inserted }
        guard first else { return }
        if tree.name(of: directory).elementsEqual("__pycache__".utf8) { directory = Int(tree.nodes[directory].parent) }
        for c in tree.children(of: directory) where Self.looksLikeExtensionModule(tree.name(of: Int(c))) {
            schedule(node: Int(c))
        }
        var ancestor = directory
        while ancestor != Tree.root {
            scheduleCompanionLibraries(of: ancestor)
            ancestor = Int(tree.nodes[ancestor].parent)
        }
    }

    /// The shared libraries in `X.libs/` beside directory `X`, once.
    private func scheduleCompanionLibraries(of directory: Int) {
        guard let fs else { return }
        let tree = fs.tree
        var libs = Array(tree.name(of: directory))
        libs += Array(".libs".utf8)
        guard let companion = libs.withUnsafeBytes({ tree.child(of: Int(tree.nodes[directory].parent), named: $0) }),
              tree.nodes[companion].kind == .directory,
              lock.withLock({ seenDirectories.insert(-1 - companion).inserted }) else { return }
        for c in tree.children(of: companion) where Self.looksLikeSharedLibrary(tree.name(of: Int(c))) {
            schedule(node: Int(c))
        }
    }

    /// Member `index` was decompressed: prefetch the libraries it names that the archive holds.
    func decoded(_ index: Int, _ buffer: MemberBuffer) {
        guard let fs, ELFDependencies.isELF(buffer.contents),
              let deps = ELFDependencies.parse(buffer.contents),
              let node = fs.node(ofEntry: index) else { return }
        let directory = fs.tree.path(of: Int(fs.tree.nodes[node].parent))
        for name in deps.needed where !name.contains("/") {
            for dir in deps.searchPath {
                let expanded = dir.replacingOrigin(with: directory)
                guard let resolved = expanded, let target = fs.tree.lookup(path: resolved + "/" + name) else { continue }
                schedule(node: target)
                break
            }
        }
    }

    @discardableResult
    private func schedule(node i: Int) -> Bool {
        guard let fs else { return false }
        let n = fs.tree.nodes[i]
        guard n.kind == .file, n.entry >= 0 else { return false }
        let index = Int(n.entry)
        let entry = fs.tree.index.entries[index]
        guard entry.method != 0, !entry.isEncrypted, entry.uncompressedSize >= minimumSize,
              entry.uncompressedSize <= UInt64(fs.cache.budget / 4) else { return false }
        let fresh = lock.withLock { () -> Bool in
            scheduled.insert(index).inserted
        }
        guard fresh, !fs.cache.isPresentOrLoading(index) else { return false }
        pool.submit { [weak fs] in _ = try? fs?.load(index, reason: "prefetch") }
        return true
    }

    /// `name.so`, `name.so.1.2`, `name.cpython-311-x86_64-linux-gnu.so`.
    static func looksLikeSharedLibrary(_ name: ArraySlice<UInt8>) -> Bool {
        if name.suffix(3).elementsEqual(".so".utf8) { return true }
        return name.count > 4 && name.contains(UInt8(ascii: "s")) && String(decoding: name, as: UTF8.self).contains(".so.")
    }

    /// An importable extension module (`*.so`), not a test module (`_*_tests.*.so`), whose
    /// import is a guess that usually holds.
    static func looksLikeExtensionModule(_ name: ArraySlice<UInt8>) -> Bool {
        guard name.suffix(3).elementsEqual(".so".utf8) else { return false }
        let s = String(decoding: name, as: UTF8.self)
        return !s.contains("_tests.") && !s.hasPrefix("test")
    }

    /// Runs `job` on a prefetch thread (read-ahead of large members).
    func background(_ job: @escaping @Sendable () -> Void) { pool.submit(job) }
}

extension String {
    /// A DT_RUNPATH entry with `$ORIGIN`/`${ORIGIN}` replaced by `origin` (a path relative to the
    /// mount's root) and normalised; nil when it is absolute or climbs out of the mount.
    func replacingOrigin(with origin: String) -> String? {
        var s = self
        for token in ["${ORIGIN}", "$ORIGIN"] where s.hasPrefix(token) {
            s = origin + s.dropFirst(token.count)
            if s.hasPrefix("/") { s.removeFirst() }
        }
        if s.hasPrefix("/") || s.contains("$") { return nil }
        var parts: [Substring] = []
        for c in s.split(separator: "/") {
            if c == "." { continue }
            if c == ".." {
                if parts.isEmpty { return nil }
                parts.removeLast()
                continue
            }
            parts.append(c)
        }
        return parts.joined(separator: "/")
    }
}
