import CFuse3
import Glibc
import Logging
import PyzfsCore
import PyzfsFUSE
import PyzfsTestSupport
import Testing

/// What a handler answered.
enum Answer: Equatable {
    case entry(ino: UInt64, entryTimeout: Double, mode: UInt32, size: Int)
    case attr(ino: UInt64, mode: UInt32, timeout: Double)
    case error(Int32)
    case none
    case open(keepCache: Bool, cacheDirectory: Bool)
    case data([UInt8])
    case readlink(String)
    case statfs(files: UInt)
    case xattrSize(Int)
    case created(ino: UInt64)
    case written(Int)
}

// @unchecked: a recorder is used by one test on one thread (no workers are started).
final class Recorder: Responder, @unchecked Sendable {
    /// The caller's uid (root unless a test says otherwise).
    let uid: UInt32
    init(uid: UInt32 = 0) { self.uid = uid }
    var answers: [Answer] = []
    var last: Answer? { answers.last }
    func entry(_ e: fuse_entry_param) {
        answers.append(.entry(ino: UInt64(e.ino), entryTimeout: e.entry_timeout, mode: e.attr.st_mode, size: Int(e.attr.st_size)))
    }
    func attr(_ st: stat, timeout: Double) { answers.append(.attr(ino: UInt64(st.st_ino), mode: st.st_mode, timeout: timeout)) }
    func error(_ errno: Int32) { answers.append(.error(errno)) }
    func none() { answers.append(.none) }
    func open(_ fi: UnsafeMutablePointer<fuse_file_info>?, keepCache: Bool, cacheDirectory: Bool) {
        answers.append(.open(keepCache: keepCache, cacheDirectory: cacheDirectory))
    }
    func data(_ bytes: UnsafeRawBufferPointer) { answers.append(.data(Array(bytes))) }
    func readlink(_ target: UnsafePointer<CChar>) { answers.append(.readlink(String(cString: target))) }
    func statfs(_ st: statvfs) { answers.append(.statfs(files: st.f_files)) }
    func xattrSize(_ size: Int) { answers.append(.xattrSize(size)) }
    func created(_ e: fuse_entry_param, _ fi: UnsafeMutablePointer<fuse_file_info>?) { answers.append(.created(ino: UInt64(e.ino))) }
    func written(_ count: Int) { answers.append(.written(count)) }
}

@Suite("FUSE handlers without a kernel")
struct HandlerTests {
    let ops: Operations

    init() throws {
        var w = ZipWriter()
        w.add("__main__.py", "print(1)\n")
        w.add("pkg/mod.py", "X = 1\n")
        for i in 0..<40 { w.add("many/file-with-a-longish-name-\(i).txt", "\(i)") }
        w.add("link", "pkg/mod.py", mode: 0o120777)
        ops = Operations(fs: try memoryFileSystem(w), archivePath: "/srv/app.pyz", logger: Logger(label: "test"))
    }

    func ino(_ path: String) -> fuse_ino_t { fuse_ino_t(ArchiveFileSystem.inode(of: ops.fs.tree.lookup(path: path)!)) }

    @Test func lookupHitAndCachedMiss() {
        let r = Recorder()
        ops.lookup(r, parent: 1, name: "pkg")
        #expect(r.last == .entry(ino: UInt64(ino("pkg")), entryTimeout: Operations.timeout, mode: 0o040755, size: 0))
        ops.lookup(r, parent: ino("pkg"), name: "mod.py")
        #expect(r.last == .entry(ino: UInt64(ino("pkg/mod.py")), entryTimeout: Operations.timeout, mode: 0o100644, size: 6))
        // A miss is inode 0 with a timeout: the kernel caches it instead of asking again.
        ops.lookup(r, parent: 1, name: "nope.py")
        #expect(r.last == .entry(ino: 0, entryTimeout: Operations.timeout, mode: 0, size: 0))
        ops.lookup(r, parent: ino("__main__.py"), name: "x")
        #expect(r.last == .error(ENOTDIR))
        ops.lookup(r, parent: 99999, name: "x")
        #expect(r.last == .error(ENOENT))
    }

    @Test func getattrAndForget() {
        let r = Recorder()
        ops.getattr(r, ino: 1)
        #expect(r.last == .attr(ino: 1, mode: 0o040755, timeout: Operations.timeout))
        ops.forget(r)
        #expect(r.last == Answer.none)
    }

    @Test("open: read-only with the page cache kept; write intent is EROFS")
    func open() {
        let r = Recorder()
        var fi = fuse_file_info()
        fi.flags = O_RDONLY
        ops.open(r, ino: ino("__main__.py"), fi: &fi)
        #expect(r.last == .open(keepCache: true, cacheDirectory: false))
        for flags in [O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC, O_WRONLY | O_APPEND] {
            fi.flags = flags
            ops.open(r, ino: ino("__main__.py"), fi: &fi)
            #expect(r.last == .error(EROFS))
        }
        ops.open(r, ino: ino("pkg"), fi: &fi)
        #expect(r.last == .error(EROFS))
        fi.flags = O_RDONLY
        ops.open(r, ino: ino("pkg"), fi: &fi)
        #expect(r.last == .error(EISDIR))
        ops.opendir(r, ino: ino("pkg"), fi: &fi)
        #expect(r.last == .open(keepCache: true, cacheDirectory: true))
        ops.refuseWrite(r)
        #expect(r.last == .error(EROFS))
    }

    @Test("read: ranges, and nothing at or past the end")
    func read() {
        let r = Recorder()
        ops.read(r, ino: ino("__main__.py"), size: 4096, offset: 0)
        #expect(r.last == .data(Array("print(1)\n".utf8)))
        ops.read(r, ino: ino("__main__.py"), size: 3, offset: 6)
        #expect(r.last == .data(Array("1)\n".utf8)))
        ops.read(r, ino: ino("__main__.py"), size: 4096, offset: 9)
        #expect(r.last == .data([]))
        ops.read(r, ino: ino("pkg"), size: 10, offset: 0)
        #expect(r.last == .error(EISDIR))
    }

    /// Names in a readdir buffer (struct fuse_dirent: ino, off, namelen, type, name, padded to 8).
    func names(_ bytes: [UInt8], plus: Bool) -> [(String, Int)] {
        var out: [(String, Int)] = []
        var p = 0
        let header = plus ? 128 : 0  // a fuse_entry_out (128 bytes) precedes each dirent in readdirplus
        while p + header + 24 <= bytes.count {
            let d = p + header
            func le(_ at: Int, _ n: Int) -> Int { (0..<n).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
            let off = le(d + 8, 8), length = le(d + 16, 4)
            out.append((String(decoding: bytes[(d + 24)..<(d + 24 + length)], as: UTF8.self), off))
            p = d + ((24 + length + 7) & ~7)
        }
        return out
    }

    @Test("readdir resumes at any offset, with small buffers too", arguments: [false, true])
    func readdirOffsets(plus: Bool) {
        let r = Recorder()
        var seen: [String] = []
        var offset = 0
        while true {
            ops.readdir(r, ino: ino("many"), size: plus ? 700 : 200, offset: offset, plus: plus)
            guard case let .data(bytes) = r.last!, !bytes.isEmpty else { break }
            let batch = names(bytes, plus: plus)
            #expect(!batch.isEmpty)
            seen += batch.map(\.0)
            offset = batch.last!.1
        }
        #expect(seen.count == 42)
        #expect(seen.prefix(2) == [".", ".."])
        #expect(Set(seen.dropFirst(2)) == Set((0..<40).map { "file-with-a-longish-name-\($0).txt" }))
        ops.readdir(r, ino: ino("many"), size: 4096, offset: 42, plus: plus)
        #expect(r.last == .data([]))
    }

    @Test("readdirplus gives a source its pyc's mtime when the header reads without waiting")
    func readdirplusResolvesSourceMtimes() throws {
        var w = ZipWriter()
        w.add("pkg/mod.py", "X = 1\n")
        w.add("pkg/other.py", "Y = 2\n")
        // A timestamp pyc of mod.py (flags 0, source size 6) compiled an hour and a second away from
        // its zip time (2024-05-17 12:00 UTC: a zone and DOS rounding apart); other.py has none.
        let pycTime = UInt32(1_715_947_200 + 3600 + 1)
        let header: [UInt8] = [0xA7, 0x0D, 0x0D, 0x0A, 0, 0, 0, 0] + withUnsafeBytes(of: pycTime.littleEndian, Array.init) + [6, 0, 0, 0]
        w.members.append(ZipWriter.Member("pkg/__pycache__/mod.cpython-311.pyc", header + [0xE3], mode: 0o100644))
        let ops = Operations(fs: try memoryFileSystem(w), archivePath: "/srv/app.pyz", logger: Logger(label: "test"))
        let pkg = fuse_ino_t(ArchiveFileSystem.inode(of: ops.fs.tree.lookup(path: "pkg")!))
        let r = Recorder()
        ops.readdir(r, ino: pkg, size: 4096, offset: 0, plus: true)
        guard case let .data(bytes) = r.last! else { Issue.record("no data"); return }
        // Each fuse_direntplus starts with a fuse_entry_out: nodeid at 0, the attributes at 40
        // (ino, size, blocks, atime, mtime...); a nodeid of 0 is a plain entry.
        var entries: [String: (nodeid: Int, mtime: Int)] = [:]
        var p = 0
        func le(_ at: Int, _ n: Int) -> Int { (0..<n).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        while p + 152 <= bytes.count {
            let length = le(p + 128 + 16, 4)
            let name = String(decoding: bytes[(p + 152)..<(p + 152 + length)], as: UTF8.self)
            entries[name] = (le(p, 8), le(p + 72, 8))
            p += 128 + ((24 + length + 7) & ~7)
        }
        #expect(entries["mod.py"].map { $0.nodeid != 0 } == true)
        #expect(entries["mod.py"]?.mtime == Int(pycTime))
        #expect(entries["other.py"].map { $0.nodeid != 0 } == true)
        #expect(ops.fs.attributesAreKnown(ops.fs.tree.lookup(path: "pkg/mod.py")!))
    }

    @Test func readlinkStatfsXattrs() {
        let r = Recorder()
        ops.readlink(r, ino: ino("link"))
        #expect(r.last == .readlink("pkg/mod.py"))
        ops.readlink(r, ino: ino("pkg"))
        #expect(r.last == .error(EINVAL))
        ops.statfs(r)
        #expect(r.last == .statfs(files: UInt(ops.fs.tree.nodes.count)))
        ops.listxattr(r, ino: 1, size: 0)
        #expect(r.last == .xattrSize(0))
        ops.getxattr(r, ino: ino("pkg"), name: "user.pyzfs.pid", size: 100)
        #expect(r.last == .error(ENODATA))
        ops.getxattr(r, ino: 1, name: "user.pyzfs.archive", size: 0)
        #expect(r.last == .xattrSize("/srv/app.pyz".utf8.count))
        ops.getxattr(r, ino: 1, name: "user.pyzfs.archive", size: 100)
        #expect(r.last == .data(Array("/srv/app.pyz".utf8)))
        ops.getxattr(r, ino: 1, name: "user.pyzfs.archive", size: 3)
        #expect(r.last == .error(ERANGE))
        ops.getxattr(r, ino: 1, name: "user.other", size: 100)
        #expect(r.last == .error(ENODATA))
    }

    @Test("one errno per error kind")
    func errnoMapping() {
        #expect(ops.errno(for: .notFound) == ENOENT)
        #expect(ops.errno(for: .readOnly) == EROFS)
        #expect(ops.errno(for: .member(.encrypted)) == EACCES)
        #expect(ops.errno(for: .member(.crcMismatch(expected: 1, actual: 2))) == EIO)
        #expect(ops.errno(for: .member(.unsupportedMethod(95))) == EIO)
        #expect(ops.errno(for: .member(.io(EBADF))) == EIO)
    }
}
