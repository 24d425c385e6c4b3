import CFuse3
import Foundation
import Glibc
import Logging
@testable import PyzfsCore
@testable import PyzfsFUSE
import PyzfsTestSupport
import Testing

/// The handlers of the in-memory bytecode overlay (`-o pycache=memory`), called without a kernel.
@Suite("FUSE handlers: the bytecode overlay")
struct OverlayHandlerTests {
    /// The user who made the mount in these tests; root is 0, anyone else is someone else.
    static let owner: UInt32 = 1000
    let ops: Operations

    init() throws {
        ops = try Self.operations()
    }

    static func operations(umask: UInt16 = 0, pycacheBudget: Int? = 1 << 20) throws -> Operations {
        var w = ZipWriter()
        w.add("__main__.py", "print(1)\n")
        w.add("pkg/mod.py", "X = 1\n")
        w.add("pkg/__pycache__/", "", mode: 0o040777)
        w.add("pkg/__pycache__/old.cpython-311.pyc", "pyc", mode: 0o100666)
        let fs = try memoryFileSystem(w, options: TreeOptions(umask: umask), pycacheBudget: pycacheBudget)
        return Operations(fs: fs, archivePath: "/srv/app.pyz", logger: Logger(label: "test"), mountOwner: owner)
    }

    func ino(_ path: String) -> fuse_ino_t { fuse_ino_t(ArchiveFileSystem.inode(of: ops.fs.tree.lookup(path: path)!)) }

    /// The inode a handler answered with (entry or created), 0 otherwise.
    func answered(_ r: Recorder) -> fuse_ino_t {
        switch r.last {
        case let .entry(ino, _, _, _)?: return fuse_ino_t(ino)
        case let .created(ino)?: return fuse_ino_t(ino)
        default: return 0
        }
    }

    /// importlib's sequence through the handlers: a temporary created in `dir`, written, renamed.
    func writePyc(_ r: Recorder, dir: fuse_ino_t, name: String, bytes: [UInt8]) -> fuse_ino_t {
        var fi = fuse_file_info()
        fi.flags = O_WRONLY | O_CREAT | O_EXCL
        ops.create(r, parent: dir, name: name + ".1234", fi: &fi)
        let f = answered(r)
        bytes.withUnsafeBytes { ops.write(r, ino: f, bytes: $0, offset: 0) }
        ops.rename(r, parent: dir, name: name + ".1234", newParent: dir, newName: name, flags: 0)
        return f
    }

    @Test("names over 255 bytes: lookup, create, mkdir and rename answer ENAMETOOLONG")
    func longNames() {
        let r = Recorder()
        let pycache = ino("pkg/__pycache__")
        let long = String(repeating: "m", count: 300) + ".cpython-311.pyc"
        ops.lookup(r, parent: pycache, name: long)
        #expect(r.last == .error(ENAMETOOLONG))
        ops.lookup(r, parent: 1, name: String(repeating: "x", count: 256))
        #expect(r.last == .error(ENAMETOOLONG))
        var fi = fuse_file_info()
        ops.create(r, parent: pycache, name: long, fi: &fi)
        #expect(r.last == .error(ENAMETOOLONG))
        ops.create(r, parent: pycache, name: long + ".99", fi: &fi)
        #expect(r.last == .error(ENAMETOOLONG))
        ops.mkdir(r, parent: 1, name: String(repeating: "_", count: 256))
        #expect(r.last == .error(ENAMETOOLONG))
        _ = writePyc(r, dir: pycache, name: "short.cpython-311.pyc", bytes: [1])
        ops.rename(r, parent: pycache, name: "short.cpython-311.pyc", newParent: pycache, newName: long, flags: 0)
        #expect(r.last == .error(ENAMETOOLONG))
        ops.rename(r, parent: pycache, name: long, newParent: pycache, newName: "short.cpython-311.pyc", flags: 0)
        #expect(r.last == .error(ENAMETOOLONG))
        // A name of exactly 255 bytes is fine, and listing the directory afterwards works.
        let fits = String(repeating: "m", count: 255 - ".pyc.1234".count) + ".pyc"
        _ = writePyc(r, dir: pycache, name: fits, bytes: [2])
        #expect(r.last == .error(0))
        for plus in [false, true] {
            ops.readdir(r, ino: pycache, size: 1 << 16, offset: 0, plus: plus)
            guard case let .data(bytes)? = r.last else { Issue.record("no listing: \(String(describing: r.last))"); continue }
            #expect(bytes.count > 0)
        }
    }

    @Test("a listing leaves out a name that does not fit the name buffer instead of trapping")
    func directoryBufferSkipsLongNames() {
        let out = DirectoryBuffer(size: 4096, plus: false)
        var e = DirectoryBuffer.plainEntry(ino: 5, isDirectory: false)
        #expect(out.add(Array(repeating: UInt8(ascii: "a"), count: 300), &e, next: 1))
        #expect(out.contents.count == 0)
        #expect(out.add(Array(repeating: UInt8(ascii: "a"), count: 255), &e, next: 2))
        #expect(out.contents.count > 0)
    }

    @Test("100,000 create+unlink cycles through the handlers leave the overlay flat")
    func churn() {
        let r = Recorder()
        ops.mkdir(r, parent: ino("pkg"), name: "x__pycache__")
        #expect(r.last == .error(EROFS))
        ops.mkdir(r, parent: 1, name: "__pycache__")
        let dir = answered(r)
        #expect(dir != 0)
        let overlay = ops.fs.overlay!
        var fi = fuse_file_info()
        func cycle(_ i: Int) {
            fi.flags = O_WRONLY | O_CREAT | O_EXCL
            ops.create(r, parent: dir, name: "m.cpython-311.pyc.\(i)", fi: &fi)
            let f = answered(r)
            [UInt8](repeating: 9, count: 100).withUnsafeBytes { ops.write(r, ino: f, bytes: $0, offset: 0) }
            ops.unlink(r, parent: dir, name: "m.cpython-311.pyc.\(i)")
            if r.last != .error(0) { Issue.record("cycle \(i): \(String(describing: r.last))") }
            // The old inode is gone for good: ENOENT, never another file.
            ops.getattr(r, ino: f)
            if r.last != .error(ENOENT) { Issue.record("inode \(f) after unlink: \(String(describing: r.last))") }
        }
        for i in 0..<1000 { cycle(i) }
        r.answers.removeAll()
        let before = (overlay.statistics.entries, overlay.statistics.entryBytes, overlay.statistics.bytes, overlay.tableCapacity)
        for i in 1000..<100_000 {
            cycle(i)
            if i % 1000 == 0 { r.answers.removeAll(keepingCapacity: true) }
        }
        let after = (overlay.statistics.entries, overlay.statistics.entryBytes, overlay.statistics.bytes, overlay.tableCapacity)
        #expect(after == before)
        #expect(after.0 == 1 && after.2 == 0)
    }

    @Test("only the mount's owner and root may create, write, rename, truncate or remove, whatever the modes")
    func callerUID() {
        let pycache = ino("pkg/__pycache__")
        // The archive's 0777 directory is shown 0755, its 0666 pyc 0644.
        let r = Recorder(uid: 65534)
        ops.getattr(r, ino: pycache)
        #expect(r.last == .attr(ino: UInt64(pycache), mode: 0o040755, timeout: Operations.timeout))
        ops.getattr(r, ino: ino("pkg/__pycache__/old.cpython-311.pyc"))
        #expect(r.last == .attr(ino: UInt64(ino("pkg/__pycache__/old.cpython-311.pyc")), mode: 0o100644, timeout: Operations.timeout))

        // The owner writes a pyc; another user can read it but change nothing.
        let owner = Recorder(uid: Self.owner)
        let f = writePyc(owner, dir: pycache, name: "mod.cpython-311.pyc", bytes: [1, 2, 3])
        #expect(owner.last == .error(0))
        var fi = fuse_file_info()
        fi.flags = O_WRONLY | O_CREAT | O_EXCL
        ops.create(owner, parent: pycache, name: "other.cpython-311.pyc.1", fi: &fi)
        let temporary = answered(owner)
        #expect(temporary != 0)

        let other = Recorder(uid: 65534)
        ops.read(other, ino: f, size: 10, offset: 0)
        #expect(other.last == .data([1, 2, 3]))
        ops.mkdir(other, parent: ino("pkg"), name: "__pycache__")
        #expect(other.last == .error(EACCES))
        ops.mkdir(other, parent: 1, name: "__pycache__")
        #expect(other.last == .error(EACCES))
        ops.create(other, parent: pycache, name: "evil.cpython-311.pyc.1", fi: &fi)
        #expect(other.last == .error(EACCES))
        ops.create(other, parent: pycache, name: "evil.cpython-311.pyc", fi: &fi)
        #expect(other.last == .error(EACCES))
        [UInt8](repeating: 0, count: 4).withUnsafeBytes { ops.write(other, ino: temporary, bytes: $0, offset: 0) }
        #expect(other.last == .error(EACCES))
        fi.flags = O_WRONLY
        ops.open(other, ino: temporary, fi: &fi)
        #expect(other.last == .error(EACCES))
        fi.flags = O_RDONLY | O_TRUNC
        ops.open(other, ino: temporary, fi: &fi)
        #expect(other.last == .error(EACCES))
        var st = Glibc.stat()
        ops.setattr(other, ino: temporary, attr: &st, toSet: FUSE_SET_ATTR_SIZE)
        #expect(other.last == .error(EACCES))
        ops.rename(other, parent: pycache, name: "other.cpython-311.pyc.1", newParent: pycache, newName: "other.cpython-311.pyc", flags: 0)
        #expect(other.last == .error(EACCES))
        ops.unlink(other, parent: pycache, name: "other.cpython-311.pyc.1")
        #expect(other.last == .error(EACCES))
        #expect(ops.fs.overlay!.lookup(parent: UInt64(pycache), name: Array("other.cpython-311.pyc.1".utf8)) == UInt64(temporary))

        // Root may, as the owner may.
        let root = Recorder(uid: 0)
        [UInt8](repeating: 0, count: 4).withUnsafeBytes { ops.write(root, ino: temporary, bytes: $0, offset: 0) }
        #expect(root.last == .written(4))
        ops.unlink(root, parent: pycache, name: "other.cpython-311.pyc.1")
        #expect(root.last == .error(0))
        _ = writePyc(root, dir: pycache, name: "byroot.cpython-311.pyc", bytes: [4])
        #expect(root.last == .error(0))
    }

    @Test("what the overlay creates follows -o umask")
    func umask() throws {
        let ops = try Self.operations(umask: 0o027)
        let r = Recorder()
        ops.mkdir(r, parent: 1, name: "__pycache__")
        guard case let .entry(dir, _, mode, _)? = r.last else { Issue.record("\(String(describing: r.last))"); return }
        #expect(mode == 0o040750)
        var fi = fuse_file_info()
        ops.create(r, parent: fuse_ino_t(dir), name: "m.cpython-311.pyc.1", fi: &fi)
        guard case let .created(f)? = r.last else { Issue.record("\(String(describing: r.last))"); return }
        ops.getattr(r, ino: fuse_ino_t(f))
        #expect(r.last == .attr(ino: f, mode: 0o100640, timeout: 0))
    }

    @Test("an existing name is EEXIST for create and mkdir, in the archive or the overlay")
    func exists() {
        let r = Recorder()
        var fi = fuse_file_info()
        ops.mkdir(r, parent: ino("pkg"), name: "__pycache__")  // the archive has it
        #expect(r.last == .error(EEXIST))
        ops.create(r, parent: ino("pkg/__pycache__"), name: "old.cpython-311.pyc", fi: &fi)  // the archive has it
        #expect(r.last == .error(EEXIST))
        ops.mkdir(r, parent: 1, name: "__pycache__")
        let dir = answered(r)
        ops.mkdir(r, parent: 1, name: "__pycache__")
        #expect(r.last == .error(EEXIST))
        ops.create(r, parent: dir, name: "a.cpython-311.pyc.1", fi: &fi)
        #expect(answered(r) != 0)
        ops.create(r, parent: dir, name: "a.cpython-311.pyc.1", fi: &fi)
        #expect(r.last == .error(EEXIST))
    }

    @Test("ro turns the overlay off: a read-only mount whatever pycache= says")
    func readOnly() throws {
        for groups in [["ro"], ["ro,pycache=memory"], ["pycache=memory", "ro,dev,suid"]] {
            let options = try MountOptions.parse(groups)
            #expect(options.readOnly)
            #expect(!options.acceptsBytecode { (total: 10, withoutBytecode: 10) }, "\(groups)")
        }
        #expect(try MountOptions.parse(["pycache=auto"]).acceptsBytecode { (total: 10, withoutBytecode: 10) })
        // Without the overlay, every change is EROFS, a new __pycache__ at the root included.
        let ops = try Self.operations(pycacheBudget: nil)
        let r = Recorder(uid: Self.owner)
        ops.mkdir(r, parent: 1, name: "__pycache__")
        #expect(r.last == .error(EROFS))
        var fi = fuse_file_info()
        ops.create(r, parent: ino("pkg/__pycache__"), name: "m.cpython-311.pyc.1", fi: &fi)
        #expect(r.last == .error(EROFS))
        ops.unlink(r, parent: ino("pkg/__pycache__"), name: "old.cpython-311.pyc")
        #expect(r.last == .error(EROFS))
    }

    @Test("every failed reply goes through errno(for:): no handler answers a raw errno")
    func oneErrnoMapping() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources/PyzfsFUSE")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".swift") }
        #expect(files.contains("Operations.swift"))
        var offending: [String] = []
        for file in files {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                var rest = Substring(line)
                while let range = rest.range(of: ".error(") {
                    let argument = rest[range.upperBound...]
                    // Success (0), the one mapping, and the Responder's own definitions.
                    let allowed = argument.hasPrefix("0)") || argument.hasPrefix("errno(for:")
                        || argument.hasPrefix("_ errno: Int32)") || argument.hasPrefix("\"")
                    if !allowed { offending.append("\(file):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))") }
                    rest = argument
                }
            }
        }
        #expect(offending.isEmpty, "\(offending.joined(separator: "\n"))")
    }
}
