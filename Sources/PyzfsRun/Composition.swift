import Logging
import PyzfsApps
import PyzfsCore
import PyzfsDigest
import PyzfsFUSE
import PyzfsInflate
import PyzfsZip
#if canImport(Glibc)
import Glibc
#endif

extension OpenedArchive {
    /// How a server mounts and serves this archive with `options` (pyzfs mount and pyzfs run).
    func serverConfiguration(_ options: MountOptions) -> ServerConfiguration {
        var c = ServerConfiguration()
        // Zero-message opens need the kernel to refuse write intent: only on a read-only mount.
        c.zeroMessageOpens = !acceptsBytecode
        if let n = options.prefetchThreads { c.prefetchThreads = n }
        if let n = options.workerThreads { c.workerThreads = n }
        var fuse = [acceptsBytecode ? "rw" : "ro", "nosuid", "nodev", "default_permissions"]
        if options.libfuseValue("fsname") == nil { fuse.append("fsname=" + escapeOption(path)) }
        if options.libfuseValue("subtype") == nil { fuse.append("subtype=pyzfs") }
        c.libfuseOptions = fuse + options.libfuse
        return c
    }
}

/// The descriptor of `-o log=FILE` opened for appending, -1 when there is none or it cannot be opened.
func openLogFile(_ options: MountOptions) -> Int32 {
    guard let file = options.logFile else { return -1 }
    return open(absolutePath(file), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
}

/// Opens and indexes an archive and builds what serves it.
/// - Throws: a `Failure` with exit code 66 (cannot read) or 65 (not a zip, damaged).
public func openArchive(_ path: String, options: MountOptions) throws(Failure) -> OpenedArchive {
    let absolute = absolutePath(path)
    let file: ArchiveFile
    let index: ZipIndex
    do {
        file = try ArchiveFile(path: absolute, watchesChangeTime: options.sha256 != nil)
        // A pinned archive is hashed before any of its bytes is parsed.
        if let pin = options.sha256 {
            let actual = try sha256(of: file)
            guard actual == pin, file.isUnchanged() else {
                throw Failure(Exit.badArchive, "\(path) does not match -o sha256=\(pin): its SHA-256 is \(actual)\(file.isUnchanged() ? "" : " (and it changed while being hashed)"); it was replaced or damaged: check where it came from")
            }
        }
        index = try ZipIndex.read(from: file, path: path)
    } catch let failure as Failure {
        throw failure
    } catch let error as ArchiveError {
        throw Failure(error, path: path)
    } catch {
        throw Failure(Exit.software, "\(error)")
    }
    let decoders: [any MemberDecoder] = [DeflateDecoder(source: file), LibzipDecoder(archive: file, index: index)]
    let reader = MemberReader(source: file, index: index, decoders: decoders, checksum: crc32)
    let treeOptions = TreeOptions(umask: options.umask ?? 0, symlinks: options.symlinks,
                                  defaultTime: file.modificationTime)
    let tree = Tree(index: index, options: treeOptions) { i in try? reader.readWhole(i, limit: 4096) }
    report(tree.warnings)
    let budget = options.cacheSize ?? MemoryLimits.defaultCacheSize()
    let bytecode = BytecodeIndex(tree: tree)
    if options.readOnly && options.pycache == .memory {
        log.warning("pycache=memory ignored: ro makes the mount read-only")
    }
    let pycache = options.acceptsBytecode { bytecode.sources(in: tree) }
    let filesystem = ArchiveFileSystem(
        tree: tree, reader: reader, cacheBudget: Int(clamping: budget),
        ownership: Ownership(uid: options.uid ?? getuid(), gid: options.gid ?? getgid()),
        pycacheBudget: pycache ? Int(clamping: options.pycacheSize) : nil, bytecode: bytecode,
        inflater: ZlibCheckpointInflater(source: file), logger: log)
    return OpenedArchive(path: absolute, file: file, index: index, filesystem: filesystem)
}

/// Logs the members that were skipped or changed, the first few in full.
public func report(_ warnings: [TreeWarning]) {
    let shown = 10
    for w in warnings.prefix(shown) { log.warning("\(w)") }
    if warnings.count > shown {
        log.warning("\(warnings.count - shown) more members skipped or changed (the first \(shown) are above)")
    }
}

/// SHA-256 of the whole file, as sha256sum prints it.
public func sha256(of file: ArchiveFile) throws(ArchiveError) -> String {
    var hasher = SHA256()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var offset: UInt64 = 0
    while offset < file.size {
        let n = try withMutableBytes(&buffer) { (p) throws(ArchiveError) -> Int in try file.read(into: p, at: offset) }
        if n == 0 { break }
        buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        offset += UInt64(n)
    }
    return hex(hasher.finalize())
}

/// Lower-case hexadecimal digits of `bytes`.
public func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
    bytes.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
}
