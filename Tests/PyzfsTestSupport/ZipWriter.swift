import Foundation
import Glibc
import PyzfsCore

/// A minimal zip writer for unit tests: stored members, optional prefix, optional Zip64 records,
/// arbitrary modes and raw names. Independent of pyzfs's reader so the two check each other.
public struct ZipWriter {
    public struct Member {
        public var name: [UInt8]
        public var data: [UInt8]
        public var mode: UInt32?          // Unix st_mode; nil: an MS-DOS entry with no mode
        public var dosTime: UInt16 = 0x6000
        public var dosDate: UInt16 = 0x58B1
        public var flags: UInt16 = 0x0800
        public var method: UInt16 = 0
        public var crcOverride: UInt32? = nil
        public var extraCentral: [UInt8] = []
        public init(_ name: String, _ data: [UInt8] = [], mode: UInt32? = 0o100644) {
            self.name = Array(name.utf8)
            self.data = data
            self.mode = mode
        }
    }

    public var members: [Member] = []
    public var prefix: [UInt8] = []
    /// Offsets count the prefix (as zipapp writes) when true; relative to the zip (cat) when false.
    public var absoluteOffsets = false
    public var zip64 = false
    public var comment: [UInt8] = []

    public init() {}

    public mutating func add(_ name: String, _ text: String, mode: UInt32? = 0o100644) {
        members.append(Member(name, Array(text.utf8), mode: mode))
    }

    public func bytes() -> [UInt8] {
        var out = prefix
        let base = absoluteOffsets ? 0 : prefix.count
        var central: [UInt8] = []
        for m in members {
            let offset = out.count - base
            let crc = m.crcOverride ?? Self.crc32(m.data)
            out += le32(0x0403_4b50) + le16(20) + le16(m.flags) + le16(m.method) + le16(m.dosTime) + le16(m.dosDate)
            out += le32(crc) + le32(UInt32(m.data.count)) + le32(UInt32(m.data.count))
            out += le16(UInt16(m.name.count)) + le16(0) + m.name + m.data
            var extra = m.extraCentral
            var offsetField = UInt32(offset)
            if zip64 {
                extra = le16(1) + le16(8) + le64(UInt64(offset)) + extra
                offsetField = 0xFFFF_FFFF
            }
            let madeBy: UInt16 = m.mode == nil ? 20 : (3 << 8) | 20
            central += le32(0x0201_4b50) + le16(madeBy) + le16(20) + le16(m.flags) + le16(m.method)
            central += le16(m.dosTime) + le16(m.dosDate) + le32(crc) + le32(UInt32(m.data.count)) + le32(UInt32(m.data.count))
            central += le16(UInt16(m.name.count)) + le16(UInt16(extra.count)) + le16(0) + le16(0) + le16(0)
            central += le32((m.mode ?? 0) << 16) + le32(offsetField) + m.name + extra
        }
        let cdOffset = out.count - base
        out += central
        if zip64 {
            let recordOffset = out.count - base
            out += le32(0x0606_4b50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            out += le64(UInt64(members.count)) + le64(UInt64(members.count)) + le64(UInt64(central.count)) + le64(UInt64(cdOffset))
            out += le32(0x0706_4b50) + le32(0) + le64(UInt64(recordOffset)) + le32(1)
            out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF)
            out += le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(UInt16(comment.count)) + comment
        } else {
            out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(UInt16(members.count)) + le16(UInt16(members.count))
            out += le32(UInt32(central.count)) + le32(UInt32(cdOffset)) + le16(UInt16(comment.count)) + comment
        }
        return out
    }

    func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xFF) } }

    /// Bitwise CRC-32 (slow and obviously right; tests only).
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
        }
        return ~crc
    }

    /// A `Checksum` for `MemberReader` built on `crc32(_:)`, able to continue a running CRC.
    public static let checksum: Checksum = { crc, bytes in
        var c = ~crc
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0xEDB8_8320 : 0) }
        }
        return ~c
    }
}

/// A filesystem over an in-memory archive of stored members.
/// - Parameter pycacheBudget: the bytecode overlay's budget (`-o pycache=memory`); nil: none.
public func memoryFileSystem(_ writer: ZipWriter, budget: Int = 1 << 20,
                             options: TreeOptions = TreeOptions(), pycacheBudget: Int? = nil) throws -> ArchiveFileSystem {
    let source = MemorySource(writer.bytes())
    let index = try ZipIndex.read(from: source)
    let reader = MemberReader(source: source, index: index, decoders: [], checksum: ZipWriter.checksum)
    let tree = Tree(index: index, options: options) { i in try? reader.readWhole(i, limit: 4096) }
    return ArchiveFileSystem(tree: tree, reader: reader, cacheBudget: budget, ownership: Ownership(uid: 1000, gid: 1000),
                             pycacheBudget: pycacheBudget)
}

/// `writer`'s archive written to a file of its own and opened as `pyzfs run` opens one (stored
/// members only): for the layers above the core, without FUSE.
public func openedArchive(_ writer: ZipWriter, name: String = "app.pyz") throws -> OpenedArchive {
    let path = makeTemporaryDirectory("archive") + "/" + name
    let bytes = writer.bytes()
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw HarnessError("cannot write \(path)") }
    let file = try ArchiveFile(path: path)
    let index = try ZipIndex.read(from: file, path: path)
    let reader = MemberReader(source: file, index: index, decoders: [], checksum: ZipWriter.checksum)
    let tree = Tree(index: index, options: TreeOptions()) { i in try? reader.readWhole(i, limit: 4096) }
    let fs = ArchiveFileSystem(tree: tree, reader: reader, cacheBudget: 1 << 20, ownership: Ownership(uid: getuid(), gid: getgid()))
    return OpenedArchive(path: path, file: file, index: index, filesystem: fs)
}
