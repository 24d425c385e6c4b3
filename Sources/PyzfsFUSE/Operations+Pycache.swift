import CFuse3
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

// Handlers for the in-memory bytecode cache (`-o pycache=memory`): the only writes a mount
// accepts. Without an overlay each of them is EROFS.
extension Operations {
    func isOverlay(_ ino: fuse_ino_t) -> Bool { fs.overlay?.contains(UInt64(ino)) ?? false }

    private var now: Int64 { Int64(time(nil)) }

    func overlayStat(_ ino: UInt64, _ node: PycacheOverlay.Node) -> stat {
        var st = Glibc.stat()
        st.st_ino = __ino_t(ino)
        // What the overlay creates follows -o umask, as the archive's members do.
        let permissions = UInt32((node.isDirectory ? 0o755 : 0o644) & ~fs.tree.options.umask)
        st.st_mode = (node.isDirectory ? S_IFDIR : S_IFREG) | permissions
        st.st_nlink = node.isDirectory ? 2 : 1
        st.st_uid = fs.ownership.uid
        st.st_gid = fs.ownership.gid
        st.st_size = node.data.count
        st.st_blocks = (node.data.count + 511) / 512
        st.st_blksize = 4096
        st.st_mtim = timespec(tv_sec: Int(node.mtime), tv_nsec: 0)
        st.st_atim = st.st_mtim
        st.st_ctim = st.st_mtim
        return st
    }

    /// Overlay nodes change (a file grows while written): the kernel keeps no attributes.
    func overlayEntry(_ ino: UInt64) -> fuse_entry_param? {
        guard let node = fs.overlay?.node(ino) else { return nil }
        var e = fuse_entry_param()
        e.ino = fuse_ino_t(ino)
        e.generation = 1
        e.attr = overlayStat(ino, node)
        e.attr_timeout = 0
        e.entry_timeout = Self.timeout
        return e
    }

    func overlayLookup(_ r: some Responder, parent: fuse_ino_t, name: [UInt8]) {
        if let ino = fs.overlay?.lookup(parent: UInt64(parent), name: name), let e = overlayEntry(ino) {
            return r.entry(e)
        }
        var e = fuse_entry_param()
        e.entry_timeout = Self.timeout
        r.entry(e)
    }

    func overlayGetattr(_ r: some Responder, ino: fuse_ino_t) {
        guard let o = fs.overlay, let node = o.node(UInt64(ino)) else { return fail(r, .notFound) }
        r.attr(overlayStat(UInt64(ino), node), timeout: 0)
    }

    func overlayOpen(_ r: some Responder, ino: fuse_ino_t, fi: UnsafeMutablePointer<fuse_file_info>?) {
        guard let o = fs.overlay, let node = o.node(UInt64(ino)) else { return fail(r, .notFound) }
        if node.isDirectory { return fail(r, .isDirectory) }
        let flags = fi?.pointee.flags ?? O_RDONLY
        let writes = flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0
        if writes && !mayChange(r) { return fail(r, .permissionDenied) }
        // A pyc renamed onto its final name is sealed: cached bytecode cannot be rewritten.
        if writes && node.sealed { return fail(r, .readOnly) }
        if flags & O_TRUNC != 0 {
            do { try o.truncate(UInt64(ino), to: 0) } catch { return fail(r, error) }
        }
        r.open(fi, keepCache: false, cacheDirectory: false)
    }

    func overlayRead(_ r: some Responder, ino: fuse_ino_t, size: Int, offset: Int) {
        guard let o = fs.overlay else { return fail(r, .notFound) }
        do {
            try o.read(UInt64(ino), offset: UInt64(max(0, offset)), count: size) { r.data($0) }
        } catch {
            fail(r, error)
        }
    }

    func overlayReaddir(_ r: some Responder, ino: fuse_ino_t, size: Int, offset: Int, plus: Bool) {
        guard let o = fs.overlay, let node = o.node(UInt64(ino)), node.isDirectory else { return fail(r, .notDirectory) }
        let entries: [(name: [UInt8], ino: UInt64, isDirectory: Bool)] =
            [(Array(".".utf8), UInt64(ino), true), (Array("..".utf8), node.parent, true)] + o.children(of: UInt64(ino))
        let out = DirectoryBuffer(size: size, plus: plus)
        for k in max(0, offset)..<max(max(0, offset), entries.count) {
            // Plain entries (inode 0 in readdirplus): the kernel looks each up when used.
            var e = DirectoryBuffer.plainEntry(ino: entries[k].ino, isDirectory: entries[k].isDirectory)
            if !out.add(entries[k].name, &e, next: k + 1) { break }
        }
        r.data(out.contents)
    }

    /// Whether directory inode `ino` (of the archive or the overlay) is a `__pycache__`.
    func isPycacheDirectory(_ ino: fuse_ino_t) -> Bool {
        if let o = fs.overlay, o.contains(UInt64(ino)) {
            return o.node(UInt64(ino)).map { $0.isDirectory && $0.name.elementsEqual("__pycache__".utf8) } ?? false
        }
        guard let n = fs.node(ofInode: UInt64(ino)) else { return false }
        return fs.isPycacheDirectory(n)
    }

    /// Whether the archive itself has `name` in directory `parent`.
    func archiveHas(parent: fuse_ino_t, name: [UInt8]) -> Bool {
        guard let p = fs.node(ofInode: UInt64(parent)), fs.tree.nodes[p].kind == .directory else { return false }
        return name.withUnsafeBytes { fs.tree.child(of: p, named: $0) } != nil
    }

    /// Whether the caller of request `r` may change the mount: only the user who made it, and
    /// root. Others could otherwise write bytecode that the owner's python3 then runs, whatever
    /// modes the archive claims (and `-o uid=`, which only changes what `st_uid` shows).
    func mayChange(_ r: some Responder) -> Bool { r.uid == 0 || r.uid == mountOwner }

    /// The first refusal of a change to `names` in `parent`: a name too long, a mount without
    /// the overlay, a caller other than the owner; nil when the overlay may decide.
    private func refusal(_ r: some Responder, _ names: [UInt8]...) -> FSError? {
        if names.contains(where: { $0.count > PathRules.maxComponentLength }) { return .nameTooLong }
        if fs.overlay == nil { return .readOnly }
        if !mayChange(r) { return .permissionDenied }
        return nil
    }

    /// FUSE `mkdir`: a `__pycache__` directory in a directory of the archive.
    public func mkdir(_ r: some Responder, parent: fuse_ino_t, name: UnsafePointer<CChar>) {
        let bytes = Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
        if let refused = refusal(r, bytes) { return fail(r, refused) }
        guard let o = fs.overlay, fs.node(ofInode: UInt64(parent)).map({ fs.tree.nodes[$0].kind == .directory }) == true
        else { return fail(r, .readOnly) }
        if archiveHas(parent: parent, name: bytes) { return fail(r, .exists) }
        do {
            let ino = try o.mkdir(parent: UInt64(parent), name: bytes, now: now)
            r.entry(overlayEntry(ino)!)
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `create`: a pyc, or importlib's temporary for one, in a `__pycache__` directory.
    public func create(_ r: some Responder, parent: fuse_ino_t, name: UnsafePointer<CChar>,
                       fi: UnsafeMutablePointer<fuse_file_info>?) {
        let bytes = Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
        if let refused = refusal(r, bytes) { return fail(r, refused) }
        guard let o = fs.overlay else { return fail(r, .readOnly) }
        if archiveHas(parent: parent, name: bytes) { return fail(r, .exists) }
        do {
            let ino = try o.create(parent: UInt64(parent), parentIsPycache: isPycacheDirectory(parent), name: bytes, now: now)
            r.created(overlayEntry(ino)!, fi)
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `write`: into an overlay file only.
    public func write(_ r: some Responder, ino: fuse_ino_t, bytes: UnsafeRawBufferPointer, offset: Int) {
        guard let o = fs.overlay, o.contains(UInt64(ino)) else { return fail(r, .readOnly) }
        guard mayChange(r) else { return fail(r, .permissionDenied) }
        do {
            r.written(try o.write(UInt64(ino), offset: UInt64(max(0, offset)), bytes: bytes, now: now))
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `rename`: a temporary pyc onto its final name in the same `__pycache__`.
    public func rename(_ r: some Responder, parent: fuse_ino_t, name: UnsafePointer<CChar>,
                       newParent: fuse_ino_t, newName: UnsafePointer<CChar>, flags: UInt32) {
        let from = Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
        let to = Array(UnsafeRawBufferPointer(start: newName, count: strlen(newName)))
        if let refused = refusal(r, from, to) { return fail(r, refused) }
        guard let o = fs.overlay, flags == 0 else { return fail(r, .readOnly) }
        do {
            try o.rename(parent: UInt64(parent), name: from, newParent: UInt64(newParent), newName: to,
                         targetInArchive: archiveHas(parent: newParent, name: to))
            r.error(0)
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `unlink`: an overlay file only.
    public func unlink(_ r: some Responder, parent: fuse_ino_t, name: UnsafePointer<CChar>) {
        let bytes = Array(UnsafeRawBufferPointer(start: name, count: strlen(name)))
        if let refused = refusal(r, bytes) { return fail(r, refused) }
        guard let o = fs.overlay, !archiveHas(parent: parent, name: bytes) else { return fail(r, .readOnly) }
        do {
            try o.unlink(parent: UInt64(parent), name: bytes)
            r.error(0)
        } catch {
            fail(r, error)
        }
    }

    /// FUSE `setattr`: an overlay file may be truncated; its mode and times are what they are.
    public func setattr(_ r: some Responder, ino: fuse_ino_t, attr: UnsafeMutablePointer<stat>?, toSet: Int32) {
        guard let o = fs.overlay, o.contains(UInt64(ino)) else { return fail(r, .readOnly) }
        guard mayChange(r) else { return fail(r, .permissionDenied) }
        do {
            if toSet & FUSE_SET_ATTR_SIZE != 0, let attr {
                try o.truncate(UInt64(ino), to: UInt64(max(0, attr.pointee.st_size)))
            }
            overlayGetattr(r, ino: ino)
        } catch {
            fail(r, error)
        }
    }
}
