import CLinux
import PyzfsApps
import PyzfsCore
import PyzfsDigest
#if canImport(Glibc)
import Glibc
#endif

/// Where FUSE cannot be had, `pyzfs run --fallback=extract` runs the app from a copy extracted
/// once into a content-addressed cache.
///
/// - Key: SHA-256 of the central directory (every name, size, CRC and offset), the archive's
///   size and the options that shape the tree (`symlinks=`, `umask=`, `uid=`, `gid=`): known
///   without reading the archive. Each entry records the SHA-256 of the whole archive and the
///   file identities (device, inode, size, mtime) already checked against it, so a later start
///   of the same file reads nothing more, and another file with the same directory is hashed
///   once before its entry is trusted (CRC-32s are easy to forge).
/// - Layout: `KEY/` holds `manifest` and the tree in `app/`; `KEY.lock` is its build lock;
///   `KEY.tmp-XXXXXX` is a build, or an entry being removed.
/// - Concurrency: a start takes a shared lock on the entry's directory and keeps it across exec
///   into the app (so `pyzfs cache clean` sees it in use); only a build takes `KEY.lock`
///   exclusively, so a start waits for a build, never for a running app. A build extracts into
///   a new temporary directory, syncs it and renames it into place.
/// - Safety: only the tree's normalised names are created (no `..`, no `/`, no absolute
///   names, no links out of the tree), each relative to its parent directory's descriptor with
///   O_NOFOLLOW, so nothing is written outside the entry whatever the member names.
public enum ExtractionCache {
    /// The cache directory, and a note when it is not the first choice.
    public static func root() throws(Failure) -> (path: String, note: String?) {
        var candidates: [(String, String)] = []
        if let x = absoluteEnvironment("XDG_CACHE_HOME") {
            candidates.append((x + "/pyzfs", "$XDG_CACHE_HOME"))
        } else if let home = absoluteEnvironment("HOME") {
            candidates.append((home + "/.cache/pyzfs", "$HOME/.cache"))
        }
        if let r = absoluteEnvironment("XDG_RUNTIME_DIR") { candidates.append((r + "/pyzfs", "$XDG_RUNTIME_DIR")) }
        candidates.append(("/tmp/pyzfs-\(getuid())", "/tmp"))
        var skipped: [String] = []
        for (path, what) in candidates {
            if let reason = unusableReason(path) {
                skipped.append("\(what) \(reason)")
                continue
            }
            // Only the place chosen is made.
            guard makePrivateDirectory(path) else {
                skipped.append("\(what) is not writable (\(errnoText(errno)))")
                continue
            }
            return (path, skipped.isEmpty ? nil : "\(skipped.joined(separator: ", ")); using \(path)")
        }
        throw Failure(Exit.runFailed, "no cache directory can be used: \(skipped.joined(separator: ", ")); set XDG_CACHE_HOME to an absolute path of a writable directory on a file system mounted without noexec")
    }

    /// Why `path` cannot hold the cache (nil when it can), creating nothing: a path that
    /// exists must be this user's directory, else its nearest existing ancestor must take
    /// new entries; either must be on a file system that allows exec.
    static func unusableReason(_ path: String) -> String? {
        var existing = path
        var st = stat()
        while lstat(existing, &st) != 0 {
            guard errno == ENOENT, existing != "/" else { return "is not writable (\(errnoText(errno)))" }
            existing = parentOf(existing)
            if existing.isEmpty { existing = "/" }
        }
        if existing == path {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { return "is not writable (\(errnoText(ENOTDIR)))" }
            guard st.st_uid == getuid() else { return "is not writable (\(errnoText(EPERM)))" }
        }
        guard isWritableDirectory(existing) else { return "is not writable (\(errnoText(errno == 0 ? EROFS : errno)))" }
        // Extension modules are mapped executable: from a noexec file system every .so fails.
        guard pyzfs_is_noexec(existing) == 0 else { return "is on a noexec file system" }
        return nil
    }

    /// Creates `path` (and its parents) as this user's, mode 0700; refuses one owned by someone
    /// else or a symlink (in /tmp, another user could have made it first).
    static func makePrivateDirectory(_ path: String) -> Bool {
        var built = ""
        for part in path.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o700) != 0 && errno != EEXIST { return false }
        }
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { errno = ENOTDIR; return false }
        guard st.st_uid == getuid() else { errno = EPERM; return false }
        return isWritableDirectory(path)
    }

    /// The entry key of an archive opened with some options: SHA-256 of its central directory,
    /// its size and the options that change the tree.
    public static func key(of opened: OpenedArchive) -> String {
        var hasher = SHA256()
        let index = opened.index
        if let directory = try? opened.file.readExactly(Int(index.centralDirectorySize), at: index.centralDirectoryOffset) {
            hasher.update(directory)
        }
        withUnsafeBytes(of: opened.file.size.littleEndian) { hasher.update($0) }
        let fs = opened.filesystem
        let options = fs.tree.options
        hasher.update(Array("symlinks=\(options.symlinks.rawValue) umask=\(options.umask) uid=\(fs.ownership.uid) gid=\(fs.ownership.gid)".utf8))
        return hex(hasher.finalize()).prefix(40).description
    }

    /// SHA-256 of the whole archive file.
    static func fullHash(of file: ArchiveFile) throws(Failure) -> String {
        do { return try sha256(of: file) } catch {
            throw Failure(Exit.runFailed, "cannot read the archive to key the extraction cache: \(error); check that the archive is readable and not being rewritten")
        }
    }

    static func identity(of file: ArchiveFile) -> String {
        "\(file.device):\(file.inode):\(file.size):\(file.modificationTime)"
    }

    /// The directory of the extracted app, extracting it first if need be. A shared lock on
    /// its entry is held by this process (and the app it becomes).
    /// - Parameter pin: the `sha256=` the archive was checked against: an entry is then used
    ///   only when its manifest records that hash and its tree is the archive's
    ///   (`mismatch`), and is rebuilt otherwise.
    static func prepare(_ opened: OpenedArchive, pin: String? = nil) throws(Failure) -> String {
        let (root, note) = try root()
        if let note { log.warning("\(note)") }
        var key = key(of: opened)
        for _ in 0..<2 {
            let entry = root + "/" + key
            var before = stat()
            let seen = lstat(entry, &before) == 0 ? before : nil  // before it is read: a rename after shows
            var found = try openEntry(entry, opened, pin: pin)
            if found.needsBuild {
                let buildLock = try lock(entry + ".lock", LOCK_EX)!  // waits: never nil
                // Another start may have built it meanwhile; a directory found altered that is still
                // there is not compared again.
                var now = stat()
                let stillAltered = if case .altered = found, let seen, lstat(entry, &now) == 0 {
                    now.st_ino == seen.st_ino && now.st_dev == seen.st_dev
                } else { false }
                if !stillAltered { found = try openEntry(entry, opened, pin: pin) }
                if found.needsBuild {
                    if case let .altered(why) = found { log.warning("the cache entry \(entry) is not \(opened.path)'s as pinned (\(why)); extracting it again") }
                    try build(opened, entry: entry, pin: pin)
                    // Just made from the pinned archive under the build lock: not read back.
                    found = try openEntry(entry, opened, pin: pin, verifying: false)
                }
                close(buildLock)
            }
            switch found {
            case let .ready(fd):
                _ = fcntl(fd, F_SETFD, 0)  // the app keeps the shared lock
                utimes(entry, nil)
                return entry + "/app"
            case let .collision(fullHash):
                key = fullHash  // same directory, other bytes: keyed by the whole file instead
            case .missing, .altered:
                throw Failure(Exit.runFailed, "cannot use the cache entry \(entry): it vanished or changed as it was made; clear the cache with pyzfs cache clean")
            }
        }
        throw Failure(Exit.runFailed, "cannot prepare a cache entry for \(opened.path): its entries keep colliding; clear the cache with pyzfs cache clean")
    }

    enum Found {
        case ready(Int32), missing, collision(String)
        /// Under a pin: not the pinned archive's (why); rebuilt.
        case altered(String)

        var needsBuild: Bool {
            switch self {
            case .missing, .altered: return true
            case .ready, .collision: return false
            }
        }
    }

    /// Looks for a complete entry made from this archive, and share-locks it (`.ready` holds
    /// the locked descriptor of its directory). With `pin`, the manifest's hash must be the pin
    /// and (when `verifying`) the tree the archive's, else `.altered`.
    static func openEntry(_ entry: String, _ opened: OpenedArchive, pin: String? = nil, verifying: Bool = true) throws(Failure) -> Found {
        while true {
            let fd = open(entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT { return .missing }
                throw Failure(Exit.runFailed, "cannot open the cache entry \(entry): \(errnoText(errno)); check the cache directory's permissions, or clear it with pyzfs cache clean")
            }
            flock(fd, LOCK_SH)
            // `cache clean` renames an entry away under its exclusive lock: this one may be gone.
            guard isSameFile(fd, entry) else { close(fd); continue }
            let manifest = entry + "/manifest"
            var st = stat()
            guard let text = readSmallFile(manifest), text.hasPrefix("sha256 "),
                  lstat(entry + "/app", &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                close(fd)
                return .missing
            }
            let lines = text.split(separator: "\n").map(String.init)
            if let pin {
                // The archive's bytes were checked against the pin; the entry's are checked
                // against the archive, whatever its manifest says (anyone who can write the
                // cache can write the manifest too).
                guard lines.first == "sha256 " + pin else { close(fd); return .altered("its manifest records another archive") }
                if verifying, let why = mismatch(opened, in: entry + "/app") { close(fd); return .altered(why) }
                return .ready(fd)
            }
            let identity = identity(of: opened.file)
            if lines.dropFirst(2).contains(identity) { return .ready(fd) }
            let full = try fullHash(of: opened.file)
            guard lines.first == "sha256 " + full else { close(fd); return .collision(full) }
            _ = writeFile(manifest, identity + "\n", flags: O_APPEND | O_NOFOLLOW)
            return .ready(fd)
        }
    }

    /// With the entry's build lock held: extracts into a new temporary directory beside the
    /// entry, syncs it and renames it into place; on any failure nothing is left.
    /// `pin`: the archive's hash, known already.
    static func build(_ opened: OpenedArchive, entry: String, pin: String? = nil) throws(Failure) {
        var st = stat()
        if lstat(entry, &st) == 0 {
            // Incomplete, of an older layout, or not the pinned archive's.
            guard try discard(entry) else {
                throw Failure(Exit.runFailed, "cannot replace the cache entry \(entry) (incomplete, or not the pinned archive's): an app is using it; run again when it has exited")
            }
        }
        let full: String
        if let pin { full = pin } else { full = try fullHash(of: opened.file) }
        let temporary = try makeTemporary(entry)
        do throws(Failure) {
            try extract(opened, into: temporary + "/app")
            let text = "sha256 \(full)\narchive \(opened.path)\n\(identity(of: opened.file))\n"
            guard writeFile(temporary + "/manifest", text, flags: O_CREAT | O_EXCL | O_NOFOLLOW) else {
                throw Failure(Exit.runFailed, "cannot write \(temporary)/manifest: \(errnoText(errno)); check the free space of the cache directory")
            }
            // One syncfs for the whole tree: an fsync per file costs seconds on a large app.
            let fd = open(temporary, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let synced = fd >= 0 && pyzfs_syncfs(fd) == 0
            if fd >= 0 { close(fd) }
            guard synced, rename(temporary, entry) == 0, syncDirectory(parentOf(entry)) else {
                throw Failure(Exit.runFailed, "cannot complete the cache entry \(entry): \(errnoText(errno)); check the free space and permissions of the cache directory")
            }
        } catch let failure {
            _ = removeTree(temporary)
            throw failure
        }
    }

    /// A new, empty `ENTRY.tmp-XXXXXX` directory.
    static func makeTemporary(_ entry: String) throws(Failure) -> String {
        let key = entry.split(separator: "/").last.map(String.init) ?? entry
        guard let made = makeUniqueDirectory(in: parentOf(entry), prefix: key + ".tmp") else {
            throw Failure(Exit.runFailed, "cannot create a directory beside \(entry): \(errnoText(errno)); check the free space and permissions of the cache directory")
        }
        return made
    }

    /// Removes an entry unless an app uses it (the caller holds its build lock): renamed to a
    /// temporary name first, so that no start sees it half removed. False when it is in use.
    static func discard(_ entry: String) throws(Failure) -> Bool {
        let fd = open(entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(Exit.runFailed, "cannot open \(entry): \(errnoText(errno))") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return false }
        let temporary = try makeTemporary(entry)
        // Onto the empty directory mkdtemp made: rename(2) replaces an empty directory.
        guard rename(entry, temporary) == 0 else {
            throw Failure(Exit.runFailed, "cannot move \(entry) aside: \(errnoText(errno)); check the cache directory's permissions")
        }
        let e = removeTree(temporary)
        guard e == 0 else { throw Failure(Exit.runFailed, "cannot remove \(temporary): \(errnoText(e)); check who owns it") }
        return true
    }

    /// Opens (creating it) and locks the lock file `path` with `operation`, retrying until the
    /// file locked is the one the name holds (`cache clean` unlinks a lock it holds).
    /// Returns nil when `operation` has LOCK_NB and someone else holds it.
    public static func lock(_ path: String, _ operation: Int32) throws(Failure) -> Int32? {
        while true {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw Failure(Exit.runFailed, "cannot lock \(path): \(errnoText(errno)); check the cache directory's permissions, or clear it with pyzfs cache clean") }
            guard flock(fd, operation) == 0 else {
                let e = errno
                close(fd)
                if e == EWOULDBLOCK { return nil }
                throw Failure(Exit.runFailed, "cannot lock \(path): \(errnoText(e))")
            }
            if isSameFile(fd, path) { return fd }
            close(fd)
        }
    }

    /// Whether descriptor `fd` is the file `path` names now.
    static func isSameFile(_ fd: Int32, _ path: String) -> Bool {
        var held = stat(), named = stat()
        return fstat(fd, &held) == 0 && lstat(path, &named) == 0 && held.st_dev == named.st_dev && held.st_ino == named.st_ino
    }

    static func parentOf(_ path: String) -> String {
        String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
    }

    static func syncDirectory(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }

    /// Extracts every node of the tree into `directory` (which must not exist), depth first
    /// with one directory open at a time, so that no depth or width runs out of descriptors.
    public static func extract(_ opened: OpenedArchive, into directory: String) throws(Failure) {
        let fs = opened.filesystem
        let tree = fs.tree
        guard mkdir(directory, 0o700) == 0 else { throw Failure(Exit.runFailed, "cannot create \(directory): \(errnoText(errno))") }
        let total = tree.nodes.reduce(UInt64(0)) { $0.addingSaturating($1.kind == .file ? tree.index.entries[Int($1.entry)].uncompressedSize : 0) }
        let progress = Progress(total: total, label: "extracting \(opened.path)")
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        func fail(_ verb: String, _ i: Int) -> Failure {
            Failure(Exit.runFailed, "cannot \(verb) \(directory)/\(tree.path(of: i)): \(errnoText(errno)); check the free space of the cache directory and the limits (ulimit) of this process")
        }
        try walkArchiveTree(tree, at: directory, fail: { i in fail("open", i) }, finish: { fd, node throws(Failure) in
            // Its contents are complete: its mode can be set (a read-only directory refuses
            // new entries).
            let mode = node == Tree.root ? 0o700 : mode_t(fs.attributes(of: node).mode & 0o777)
            guard fchmod(fd, mode) == 0 else { throw fail("set the mode of", node) }
        }, enter: { fd, name, i throws(Failure) in
            guard mkdirat(fd, name, 0o700) == 0 else { throw fail("create", i) }
        }, leaf: { fd, name, i throws(Failure) in
            if tree.nodes[i].kind == .symlink {
                let target = (tree.symlinkTargets[UInt32(i)] ?? []).map { CChar(bitPattern: $0) } + [0]
                guard symlinkat(target, fd, name) == 0 else { throw fail("create", i) }
                return
            }
            let file = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard file >= 0 else { throw fail("create", i) }
            defer { close(file) }
            let attributes = fs.attributes(of: i)
            var offset: UInt64 = 0
            while offset < attributes.size {
                let n = try readMember(fs, i, at: offset, into: &buffer)
                guard buffer.withUnsafeBytes({ writeAll(file, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) else { throw fail("write", i) }
                offset += UInt64(n)
                progress.advance(UInt64(n))
            }
            var times = [timespec(tv_sec: Int(attributes.mtime), tv_nsec: 0), timespec(tv_sec: Int(attributes.mtime), tv_nsec: 0)]
            guard fchmod(file, mode_t(attributes.mode & 0o777)) == 0, futimens(file, &times) == 0 else { throw fail("set the mode of", i) }
        })
        progress.finish()
    }

    /// Up to `buffer.count` bytes of member node `i` from `offset`, checked as the mount checks
    /// them. - Returns: how many (more than 0).
    private static func readMember(_ fs: ArchiveFileSystem, _ i: Int, at offset: UInt64, into buffer: inout [UInt8]) throws(Failure) -> Int {
        let n: Int
        do {
            n = try fs.read(i, offset: offset, count: buffer.count) { bytes -> Int in
                buffer.withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
                return bytes.count
            }
        } catch {
            throw Failure(Exit.runFailed, "cannot extract \(fs.tree.path(of: i)): \(error)")
        }
        guard n > 0 else { throw Failure(Exit.runFailed, "cannot extract \(fs.tree.path(of: i)): it ends before its size") }
        return n
    }

    /// Why the extracted tree at `directory` is not exactly the archive's (nil when it is): each
    /// node's type and mode, each file's size and bytes (read from the archive and checked as
    /// the mount checks them) and each link's target, and no other entry anywhere in it.
    static func mismatch(_ opened: OpenedArchive, in directory: String) -> String? {
        let fs = opened.filesystem
        let tree = fs.tree
        var expected = [UInt8](repeating: 0, count: 1 << 20), found = [UInt8](repeating: 0, count: 1 << 20)
        struct Mismatch: Error { let why: String }
        func differs(_ i: Int, _ why: String) -> Mismatch { Mismatch(why: "\(tree.path(of: i)) \(why)") }
        func check(_ fd: Int32, _ name: [CChar], _ i: Int, _ kind: mode_t) throws(Mismatch) -> stat {
            var st = stat()
            guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw differs(i, "cannot be read (\(errnoText(errno)))") }
            guard st.st_mode & S_IFMT == kind else { throw differs(i, "is another kind of file") }
            guard kind == S_IFLNK || st.st_mode & 0o7777 == mode_t(fs.attributes(of: i).mode & 0o777) else { throw differs(i, "has another mode") }
            return st
        }
        do throws(Mismatch) {
            try walkArchiveTree(tree, at: directory, fail: { i in differs(i, "cannot be opened (\(errnoText(errno)))") }, finish: { fd, node throws(Mismatch) in
                guard let names = directoryNames(in: fd) else { throw differs(node, "cannot be listed") }
                guard names.count == tree.children(of: node).count else { throw differs(node, "holds other entries") }
            }, enter: { fd, name, i throws(Mismatch) in
                _ = try check(fd, name, i, S_IFDIR)
            }, leaf: { fd, name, i throws(Mismatch) in
                if tree.nodes[i].kind == .symlink {
                    _ = try check(fd, name, i, S_IFLNK)
                    let target = tree.symlinkTargets[UInt32(i)] ?? []
                    var bytes = [CChar](repeating: 0, count: target.count + 1)
                    guard readlinkat(fd, name, &bytes, bytes.count) == target.count,
                          bytes.prefix(target.count).map({ UInt8(bitPattern: $0) }) == target else { throw differs(i, "links elsewhere") }
                    return
                }
                let st = try check(fd, name, i, S_IFREG)
                let size = fs.attributes(of: i).size
                guard UInt64(st.st_size) == size else { throw differs(i, "has another size") }
                let file = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard file >= 0 else { throw differs(i, "cannot be opened (\(errnoText(errno)))") }
                defer { close(file) }
                var offset: UInt64 = 0
                while offset < size {
                    guard let n = try? readMember(fs, i, at: offset, into: &expected) else { throw differs(i, "cannot be read from the archive") }
                    guard pread(file, &found, n, off_t(offset)) == n, memcmp(found, expected, n) == 0 else { throw differs(i, "has other bytes") }
                    offset += UInt64(n)
                }
            })
        } catch {
            return error.why
        }
        return nil
    }

    /// Walks `tree` as it is laid out under `directory`, depth first with one directory open at
    /// a time (so that no depth or width runs out of descriptors): `enter` (then the walk opens
    /// it) for each directory, `leaf` for each file or link, each with its parent's descriptor
    /// and its name; `finish` with a directory's own descriptor once its contents are done.
    /// `fail` makes the error of a directory that cannot be opened (errno set).
    static func walkArchiveTree<E: Error>(_ tree: Tree, at directory: String, fail: (Int) -> E,
                                          finish: (Int32, Int) throws(E) -> Void,
                                          enter: (Int32, [CChar], Int) throws(E) -> Void,
                                          leaf: (Int32, [CChar], Int) throws(E) -> Void) throws(E) {
        var fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw fail(Tree.root) }
        defer { close(fd) }
        // The directories being walked, each with the position of its next child.
        var stack: [(node: Int, next: Int)] = [(Tree.root, 0)]
        while let top = stack.last {
            let (node, next) = top
            let children = tree.children(of: node)
            guard next < children.count else {
                stack.removeLast()
                // `..` is opened first: `finish` may set a mode that forbids the lookup.
                let parent = stack.isEmpty ? -1 : openat(fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard stack.isEmpty || parent >= 0 else { throw fail(node) }
                do { try finish(fd, node) } catch {
                    if parent >= 0 { close(parent) }
                    throw error
                }
                if parent >= 0 {
                    close(fd)
                    fd = parent
                }
                continue
            }
            stack[stack.count - 1].next += 1
            let i = Int(children[children.startIndex + next])
            let name = Array(tree.name(of: i)).map { CChar(bitPattern: $0) } + [0]
            guard tree.nodes[i].kind == .directory else {
                try leaf(fd, name, i)
                continue
            }
            try enter(fd, name, i)
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { throw fail(i) }
            close(fd)
            fd = child
            stack.append((i, 0))
        }
    }

    /// Removes the tree at `path`, making read-only directories writable first; never leaves
    /// its file system. Returns 0 or the errno of the first failure.
    public static func removeTree(_ path: String) -> Int32 {
        let e = walkTree(path, entering: { fd in
            var st = stat()
            // A read-only directory (0555 in the archive) refuses the removal of its contents.
            return fstat(fd, &st) == 0 && (st.st_mode & 0o700 == 0o700 || fchmod(fd, 0o700) == 0)
        }, visit: { parent, name, st in
            unlinkat(parent, name, (st.st_mode & S_IFMT) == S_IFDIR ? AT_REMOVEDIR : 0) == 0
        })
        guard e == 0 else { return e }
        return rmdir(path) == 0 ? 0 : errno
    }

    /// Bytes allocated to the tree at `path`, as du counts them.
    public static func diskUsage(_ path: String) -> UInt64 {
        var total: UInt64 = 0
        var st = stat()
        if lstat(path, &st) == 0 { total += UInt64(st.st_blocks) * 512 }
        _ = walkTree(path, entering: { _ in true }, visit: { _, _, st in
            total += UInt64(st.st_blocks) * 512
            return true
        })
        return total
    }

    /// Walks the tree at `path` depth first with one directory open at a time (and one listing),
    /// calling `entering` with each directory's descriptor before its contents and `visit` with
    /// every entry below `path` (a directory after its contents), its parent's descriptor and
    /// its lstat. Does not descend into another file system. Returns 0 or the first errno.
    static func walkTree(_ path: String, entering: (Int32) -> Bool, visit: (Int32, String, stat) -> Bool) -> Int32 {
        var fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var top = stat()
        guard fstat(fd, &top) == 0, entering(fd), let names = directoryNames(in: fd) else { return errno }
        var stack: [(name: String, names: [String])] = [("", names)]
        while !stack.isEmpty {
            if let name = stack[stack.count - 1].names.popLast() {
                var st = stat()
                guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return errno }
                guard (st.st_mode & S_IFMT) == S_IFDIR else {
                    guard visit(fd, name, st) else { return errno }
                    continue
                }
                guard st.st_dev == top.st_dev else { return EXDEV }
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { return errno }
                close(fd)
                fd = child
                guard entering(fd), let inner = directoryNames(in: fd) else { return errno }
                stack.append((name, inner))
            } else {
                let done = stack.removeLast()
                guard !stack.isEmpty else { break }
                var st = stat()
                let parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard parent >= 0, fstat(fd, &st) == 0 else { return errno }
                close(fd)
                fd = parent
                guard visit(fd, done.name, st) else { return errno }
            }
        }
        return 0
    }

}

/// Progress on a terminal for long work (nothing when stderr is not a terminal or the work is small).
public final class Progress {
    public let total: UInt64
    public let label: String
    private var done: UInt64 = 0
    private var shown = -1
    private let enabled: Bool

    public init(total: UInt64, label: String) {
        self.total = total
        self.label = label
        enabled = isatty(2) != 0 && total >= 64 << 20
    }

    func advance(_ n: UInt64) {
        guard enabled else { return }
        done = done.addingSaturating(n)
        // Divided first: `done * 100` could overflow for a total near 2^64 (a saturated sum).
        let percent = Int(min(100, total >= 100 ? done / (total / 100) : done * 100 / max(total, 1)))
        if percent != shown {
            shown = percent
            writeAll(2, "\rpyzfs: \(label): \(percent)% (\(formatSize(done)) of \(formatSize(total)))")
        }
    }

    public func finish() { if enabled && shown >= 0 { writeAll(2, "\n") } }
}
