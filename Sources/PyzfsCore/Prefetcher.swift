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
/// An archive with a start profile (`StartProfile`) is preloaded instead of guessed at: its
/// members are decoded in the profile's order, within the cache's budget.
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

    /// What the preload of a start profile did, for `pyzfs stats`.
    public struct PreloadStatistics: Sendable, Equatable {
        /// Compressed members of the profile that the preload took on, within the budget.
        public var members = 0
        /// Members the preload decoded itself (not those a read had already decoded).
        public var decoded = 0
        /// Members taken on but not yet done (plus one while the profile is being read): 0
        /// once the preload has finished.
        public var pending = 0
        public init(members: Int = 0, decoded: Int = 0, pending: Int = 0) {
            self.members = members
            self.decoded = decoded
            self.pending = pending
        }
    }
    public var preload: PreloadStatistics { lock.withLock { preloadStatistics } }
    private var preloadStatistics = PreloadStatistics(pending: 1)
    private var preloadStopped = false

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
        pool.submit { [weak self] in
            guard let self, let fs = self.fs else { return }
            let profiled = fs.profiledMembers()
            if profiled.isEmpty { self.scheduleLikelyLibraries() } else { self.preload(profiled) }
            self.lock.withLock { self.preloadStatistics.pending -= 1 }
        }
    }

    /// Decodes the compressed members among `nodes`, in that order, on the prefetch threads (a
    /// read of one of them waits for its decode, as for any load), until their sizes reach the
    /// cache's budget, or a member finds no room without evicting (then the preload stops: it
    /// never evicts to decode more). A member that fails is failed for every read.
    private func preload(_ nodes: [Int]) {
        guard let fs else { return }
        var allowance = UInt64(fs.cache.budget)
        var indexes: [Int] = []
        for i in nodes {
            let index = Int(fs.tree.nodes[i].entry)
            let entry = fs.tree.index.entries[index]
            guard entry.method != 0, !entry.isEncrypted, entry.damage == nil else { continue }
            guard entry.uncompressedSize <= allowance else { break }
            allowance -= entry.uncompressedSize
            indexes.append(index)
        }
        lock.withLock {
            preloadStatistics.members = indexes.count
            preloadStatistics.pending += indexes.count
            for index in indexes { scheduled.insert(index) }
        }
        for index in indexes {
            pool.submit { [weak self, weak fs] in
                guard let self else { return }
                defer { self.lock.withLock { self.preloadStatistics.pending -= 1 } }
                guard let fs, !self.lock.withLock({ self.preloadStopped }), !fs.cache.isPresentOrLoading(index) else { return }
                do {
                    if try fs.load(index, reason: "preload", evicting: false) == nil {
                        self.lock.withLock { self.preloadStopped = true }
                    } else {
                        self.lock.withLock { self.preloadStatistics.decoded += 1 }
                    }
                } catch {
                    // `load` has failed the member for every later read.
                }
            }
        }
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
