/// One member as the central directory records it (APPNOTE.TXT 4.3.12), with Zip64 sizes resolved.
public struct ZipEntry: Sendable, Equatable {
    /// Where the name's UTF-8 bytes start in `ZipIndex.names`.
    public var nameOffset: UInt32
    public var nameLength: UInt16
    public var versionMadeBy: UInt16
    public var flags: UInt16
    public var method: UInt16
    public var dosTime: UInt16
    public var dosDate: UInt16
    public var crc32: UInt32
    public var compressedSize: UInt64
    public var uncompressedSize: UInt64
    /// Position of the local header in the file, the archive's prefix included.
    public var localHeaderOffset: UInt64
    public var externalAttributes: UInt32
    /// UTC modification time from the 0x5455 extended-timestamp field, when present.
    public var extendedMtime: Int64?
    /// Why this member's numbers are impossible (its data cannot lie where the directory says,
    /// or its size cannot be a file's), or nil. Such a member stays listed and every read of it
    /// fails (EIO): were it dropped, an import would fall through to a later `sys.path` entry.
    /// Its sizes are then 0 compressed and 1 uncompressed (so `st_size` is 1 and a read reaches
    /// the server instead of the kernel answering an empty file) and its offset is the
    /// directory's; nothing computes with the numbers the archive gave.
    public var damage: String? = nil

    /// Bit 0 of the general-purpose flags.
    public var isEncrypted: Bool { flags & 1 != 0 }

    /// The Unix `st_mode` stored in the external attributes, when the writer was a Unix host
    /// and stored something there.
    public var unixMode: UInt32? {
        let host = versionMadeBy >> 8
        // 3 = Unix, 19 = OS X: both store st_mode in the high 16 bits.
        guard host == 3 || host == 19 else { return nil }
        let mode = externalAttributes >> 16
        return mode == 0 ? nil : mode
    }

}

/// The parsed central directory of a zip archive, wherever it sits in the file.
///
/// libzip cannot open a zip with bytes `cat`-ed in front (relative offsets); this reader finds the
/// end-of-central-directory record itself and computes that prefix, as CPython's zipfile does.
public struct ZipIndex: Sendable {
    public let entries: [ZipEntry]
    /// Every entry's name, UTF-8, back to back (CP437 names are converted).
    public let names: [UInt8]
    /// Bytes in front of the zip whose offsets do not count them (0 for zipapp's own `#!` line,
    /// which Python writes with absolute offsets).
    public let offsetShift: UInt64
    /// File position of the first byte of zip data: the end of whatever precedes the archive
    /// (a `#!` line, a launcher), whether or not the offsets count it.
    public let dataStart: UInt64
    /// File position of the central directory.
    public let centralDirectoryOffset: UInt64
    public let centralDirectorySize: UInt64
    public let isZip64: Bool
    public let comment: [UInt8]

    /// The name of `entry` as bytes.
    public func name(of entry: ZipEntry) -> ArraySlice<UInt8> {
        let start = Int(entry.nameOffset)
        return names[start..<start + Int(entry.nameLength)]
    }

    /// The name of `entry` as a String (invalid UTF-8 repaired), for messages.
    public func nameString(of entry: ZipEntry) -> String {
        String(decoding: name(of: entry), as: UTF8.self)
    }
}

enum Signature {
    static let localHeader: UInt32 = 0x0403_4b50
    static let centralHeader: UInt32 = 0x0201_4b50
    static let endOfCentralDirectory: UInt32 = 0x0605_4b50
    static let zip64End: UInt32 = 0x0606_4b50
    static let zip64Locator: UInt32 = 0x0706_4b50
}

@inline(__always)
func le16(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt16 {
    UInt16(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt16.self))
}
@inline(__always)
func le32(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self))
}
@inline(__always)
func le64(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt64 {
    UInt64(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt64.self))
}

extension ZipIndex {
    static let eocdSize = 22
    static let zip64LocatorSize = 20
    static let zip64RecordSize = 56
    static let centralHeaderSize = 46
    static let maxCommentLength = 65535

    /// Reads the central directory of the zip in `source`.
    /// - Parameter path: used in messages only.
    /// - Throws: `.notZip` when no end record exists; `.truncated`, `.corrupt` or `.unsupported`
    ///   when the structures that exist are inconsistent; `.io` when reading fails.
    public static func read(from source: some ByteSource, path: String = "archive") throws(ArchiveError) -> ZipIndex {
        let size = source.size
        if size == 0 { throw .notZip(path: path, reason: "the file is empty") }
        if size < UInt64(eocdSize) { throw .notZip(path: path, reason: "\(size) bytes is too small for a zip") }

        // The end record is in the last 22 + 65,535 bytes; a Zip64 locator may precede it.
        let tailLength = Int(min(size, UInt64(eocdSize + maxCommentLength + zip64LocatorSize)))
        let tailStart = size - UInt64(tailLength)
        let tail = try source.readExactly(tailLength, at: tailStart)

        var found: Int? = nil
        tail.withUnsafeBytes { p in
            var i = tailLength - eocdSize
            while i >= 0 {
                if p[i] == 0x50, le32(p, i) == Signature.endOfCentralDirectory {
                    let commentLength = Int(le16(p, i + 20))
                    if i + eocdSize + commentLength <= tailLength { found = i; return }
                }
                i -= 1
            }
        }
        guard let eocdInTail = found else {
            throw .notZip(path: path, reason: "no end-of-central-directory record")
        }
        let eocdPosition = tailStart + UInt64(eocdInTail)

        var disk: UInt32 = 0, cdDisk: UInt32 = 0
        var entryCount: UInt64 = 0, cdSize: UInt64 = 0, cdOffset: UInt64 = 0
        var comment: [UInt8] = []
        tail.withUnsafeBytes { p in
            disk = UInt32(le16(p, eocdInTail + 4))
            cdDisk = UInt32(le16(p, eocdInTail + 6))
            entryCount = UInt64(le16(p, eocdInTail + 10))
            cdSize = UInt64(le32(p, eocdInTail + 12))
            cdOffset = UInt64(le32(p, eocdInTail + 16))
            let commentLength = Int(le16(p, eocdInTail + 20))
            comment = Array(tail[(eocdInTail + eocdSize)..<(eocdInTail + eocdSize + commentLength)])
        }

        // Zip64: a locator right before the end record points at the Zip64 end record.
        var isZip64 = false
        var recordEnd = eocdPosition          // where the central directory (plus zip64 records) ends
        if eocdPosition >= UInt64(zip64LocatorSize) {
            let locator = try source.readExactly(zip64LocatorSize, at: eocdPosition - UInt64(zip64LocatorSize))
            let isLocator = locator.withUnsafeBytes { le32($0, 0) == Signature.zip64Locator }
            if isLocator {
                let recordedOffset = locator.withUnsafeBytes { le64($0, 8) }
                let locatorPosition = eocdPosition - UInt64(zip64LocatorSize)
                // Usually the record sits right before the locator; with absolute offsets it is
                // also where the locator says.
                var candidates: [UInt64] = []
                if locatorPosition >= UInt64(zip64RecordSize) { candidates.append(locatorPosition - UInt64(zip64RecordSize)) }
                if recordedOffset < locatorPosition { candidates.append(recordedOffset) }
                var record: [UInt8]? = nil
                var recordPosition: UInt64 = 0
                for c in candidates where c + UInt64(zip64RecordSize) <= locatorPosition {
                    let r = try source.readExactly(zip64RecordSize, at: c)
                    if r.withUnsafeBytes({ le32($0, 0) }) == Signature.zip64End {
                        record = r
                        recordPosition = c
                        break
                    }
                }
                guard let record else {
                    throw .corrupt("a Zip64 locator points to no Zip64 end-of-central-directory record")
                }
                isZip64 = true
                record.withUnsafeBytes { p in
                    disk = le32(p, 16)
                    cdDisk = le32(p, 20)
                    entryCount = le64(p, 32)
                    cdSize = le64(p, 40)
                    cdOffset = le64(p, 48)
                }
                recordEnd = recordPosition
            }
        }
        if disk != 0 || cdDisk != 0 {
            throw .unsupported("split (multi-disk) archives are not supported")
        }
        guard cdSize <= recordEnd else {
            throw .corrupt("the central directory (\(cdSize) bytes) is larger than the data before its end record")
        }

        // Where the central directory really starts; the difference to the recorded offset is
        // the prefix that offsets do not count (CPython's zipfile computes the same "concat").
        var cdStart = recordEnd - cdSize
        var shift: UInt64 = 0
        func isCentralHeader(at offset: UInt64) throws(ArchiveError) -> Bool {
            guard offset <= recordEnd, recordEnd - offset >= 4 else { return false }
            return try source.readExactly(4, at: offset).withUnsafeBytes { le32($0, 0) } == Signature.centralHeader
        }
        if cdSize == 0 {
            shift = cdStart >= cdOffset ? cdStart - cdOffset : 0
        } else if cdStart >= cdOffset, try isCentralHeader(at: cdStart) {
            shift = cdStart - cdOffset
        } else if cdOffset <= recordEnd, cdSize <= recordEnd - cdOffset, try isCentralHeader(at: cdOffset) {
            // Bytes between the directory and its end record (rare): the recorded offset is absolute.
            cdStart = cdOffset
        } else {
            throw .corrupt("no central directory where the end record says (offset \(cdOffset), \(cdSize) bytes)")
        }
        if cdSize > UInt64(Int.max / 2) { throw .corrupt("central directory size \(cdSize) is implausible") }

        let cd = try source.readExactly(Int(cdSize), at: cdStart)
        var entries: [ZipEntry] = []
        entries.reserveCapacity(Int(min(entryCount, UInt64(cd.count / centralHeaderSize))))
        var names: [UInt8] = []
        names.reserveCapacity(cd.count / 2)

        try withBytes(cd) { (p) throws(ArchiveError) in
            var pos = 0
            let end = p.count
            while pos < end {
                let index = entries.count
                guard pos + centralHeaderSize <= end else {
                    throw .corrupt("central directory entry \(index) is cut short")
                }
                guard le32(p, pos) == Signature.centralHeader else {
                    throw .corrupt("central directory entry \(index) has a bad signature")
                }
                let nameLength = Int(le16(p, pos + 28))
                let extraLength = Int(le16(p, pos + 30))
                let commentLength = Int(le16(p, pos + 32))
                let next = pos + centralHeaderSize + nameLength + extraLength + commentLength
                guard next <= end else {
                    throw .corrupt("central directory entry \(index) runs past the directory's end")
                }
                var entry = ZipEntry(
                    nameOffset: UInt32(truncatingIfNeeded: names.count), nameLength: 0,
                    versionMadeBy: le16(p, pos + 4), flags: le16(p, pos + 8), method: le16(p, pos + 10),
                    dosTime: le16(p, pos + 12), dosDate: le16(p, pos + 14), crc32: le32(p, pos + 16),
                    compressedSize: UInt64(le32(p, pos + 20)), uncompressedSize: UInt64(le32(p, pos + 24)),
                    localHeaderOffset: UInt64(le32(p, pos + 42)), externalAttributes: le32(p, pos + 38),
                    extendedMtime: nil)

                let nameStart = pos + centralHeaderSize
                let nameBytes = UnsafeRawBufferPointer(rebasing: p[nameStart..<nameStart + nameLength])
                let utf8Flag = entry.flags & (1 << 11) != 0
                appendName(nameBytes, utf8: utf8Flag, to: &names)
                let storedLength = names.count - Int(entry.nameOffset)
                guard storedLength <= Int(UInt16.max), names.count <= Int(UInt32.max) else {
                    throw .corrupt("central directory entry \(index) has a name too long")
                }
                entry.nameLength = UInt16(storedLength)

                let extra = UnsafeRawBufferPointer(rebasing: p[(nameStart + nameLength)..<(nameStart + nameLength + extraLength)])
                let zip64Problem = parseExtra(extra, into: &entry)
                let (offset, overflow) = entry.localHeaderOffset.addingReportingOverflow(shift)
                entry.localHeaderOffset = overflow ? UInt64.max : offset
                if let problem = zip64Problem ?? impossibleNumbers(of: entry, directoryStart: cdStart) {
                    entry.damage = problem
                    entry.compressedSize = 0
                    entry.uncompressedSize = 1
                    entry.localHeaderOffset = cdStart
                }
                entries.append(entry)
                pos = next
            }
        }
        // The first byte of zip data: the lowest local header, or the directory for an empty zip.
        var dataStart = cdStart
        for e in entries where e.damage == nil && e.localHeaderOffset < dataStart { dataStart = e.localHeaderOffset }
        return ZipIndex(entries: entries, names: names, offsetShift: shift, dataStart: dataStart,
                        centralDirectoryOffset: cdStart, centralDirectorySize: cdSize,
                        isZip64: isZip64, comment: comment)
    }

    /// Why `entry`'s numbers cannot describe a member of this archive, or nil: its local header
    /// and data must lie before the central directory (which starts at `directoryStart`), its
    /// size must fit a file (`off_t`), and a stored member's sizes must agree (unless it is
    /// encrypted). Checked once, at index time, so that no later sum or conversion of these
    /// numbers can overflow.
    static func impossibleNumbers(of entry: ZipEntry, directoryStart: UInt64) -> String? {
        let offset = entry.localHeaderOffset
        guard offset <= directoryStart, directoryStart - offset >= UInt64(localHeaderSize) else {
            return "its local header offset \(offset) is not before the central directory (at \(directoryStart))"
        }
        guard entry.compressedSize <= directoryStart - offset - UInt64(localHeaderSize) else {
            return "its data (\(entry.compressedSize) bytes after the local header at \(offset)) runs past the central directory (at \(directoryStart))"
        }
        guard entry.uncompressedSize <= UInt64(Int64.max) else {
            return "its size \(entry.uncompressedSize) is larger than any file can be"
        }
        // An encrypted member is never read (EACCES: pyzfs has no password), and its header's
        // length depends on the scheme (12 bytes for ZipCrypto, more for AES): not compared.
        if entry.method == 0 && !entry.isEncrypted && entry.uncompressedSize != entry.compressedSize {
            return "it is stored, but its sizes differ (\(entry.uncompressedSize) bytes, \(entry.compressedSize) stored)"
        }
        return nil
    }

    /// Reads the extra fields that matter: Zip64 sizes (0x0001) and the UTC mtime (0x5455).
    /// - Returns: why the entry's numbers are unknown (a Zip64 value it needs is missing), or nil.
    static func parseExtra(_ extra: UnsafeRawBufferPointer, into entry: inout ZipEntry) -> String? {
        let needUncompressed = entry.uncompressedSize == 0xFFFF_FFFF
        let needCompressed = entry.compressedSize == 0xFFFF_FFFF
        let needOffset = entry.localHeaderOffset == 0xFFFF_FFFF
        var sawZip64 = false
        var problem: String? = nil
        var pos = 0
        while pos + 4 <= extra.count {
            let id = le16(extra, pos)
            let length = Int(le16(extra, pos + 2))
            let body = pos + 4
            // A malformed trailing field is ignored, as most readers do; Zip64 is checked below.
            guard body + length <= extra.count else { break }
            switch id {
            case 0x0001:
                sawZip64 = true
                var at = body
                func take() -> UInt64? {
                    guard at + 8 <= body + length else { return nil }
                    defer { at += 8 }
                    return le64(extra, at)
                }
                for (needed, field) in [(needUncompressed, \ZipEntry.uncompressedSize), (needCompressed, \ZipEntry.compressedSize),
                                        (needOffset, \ZipEntry.localHeaderOffset)] where needed {
                    guard let value = take() else { problem = "its Zip64 field is too short for the values it must hold"; break }
                    entry[keyPath: field] = value
                }
            case 0x5455:
                if length >= 5, extra[body] & 1 != 0 {
                    entry.extendedMtime = Int64(Int32(bitPattern: le32(extra, body + 1)))
                }
            default:
                break
            }
            pos = body + length
        }
        if (needUncompressed || needCompressed || needOffset) && !sawZip64 {
            return "it needs a Zip64 field for its sizes or offset and has none"
        }
        return problem
    }

    /// Appends a raw name as UTF-8: as is when flagged UTF-8 or ASCII, else decoded from CP437
    /// (APPNOTE appendix D), as CPython's zipfile does.
    static func appendName(_ raw: UnsafeRawBufferPointer, utf8: Bool, to names: inout [UInt8]) {
        if utf8 || !raw.contains(where: { $0 >= 0x80 }) {
            names.append(contentsOf: raw)
            return
        }
        for byte in raw {
            if byte < 0x80 { names.append(byte); continue }
            let scalar = cp437High[Int(byte) - 0x80]
            names.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
        }
    }
}

/// CP437 code points for bytes 0x80-0xFF.
let cp437High: [UInt32] = [
    0x00C7, 0x00FC, 0x00E9, 0x00E2, 0x00E4, 0x00E0, 0x00E5, 0x00E7, 0x00EA, 0x00EB, 0x00E8, 0x00EF, 0x00EE, 0x00EC, 0x00C4, 0x00C5,
    0x00C9, 0x00E6, 0x00C6, 0x00F4, 0x00F6, 0x00F2, 0x00FB, 0x00F9, 0x00FF, 0x00D6, 0x00DC, 0x00A2, 0x00A3, 0x00A5, 0x20A7, 0x0192,
    0x00E1, 0x00ED, 0x00F3, 0x00FA, 0x00F1, 0x00D1, 0x00AA, 0x00BA, 0x00BF, 0x2310, 0x00AC, 0x00BD, 0x00BC, 0x00A1, 0x00AB, 0x00BB,
    0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556, 0x2555, 0x2563, 0x2551, 0x2557, 0x255D, 0x255C, 0x255B, 0x2510,
    0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C, 0x255E, 0x255F, 0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567,
    0x2568, 0x2564, 0x2565, 0x2559, 0x2558, 0x2552, 0x2553, 0x256B, 0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580,
    0x03B1, 0x00DF, 0x0393, 0x03C0, 0x03A3, 0x03C3, 0x00B5, 0x03C4, 0x03A6, 0x0398, 0x03A9, 0x03B4, 0x221E, 0x03C6, 0x03B5, 0x2229,
    0x2261, 0x00B1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00F7, 0x2248, 0x00B0, 0x2219, 0x00B7, 0x221A, 0x207F, 0x00B2, 0x25A0, 0x00A0,
]

extension ZipIndex {
    static let localHeaderSize = 30

    /// The file position of `entry`'s data, read from its local header (whose name and extra
    /// lengths may differ from the central directory's).
    /// - Throws: `.corrupt` when the header is missing or the data would overlap the directory.
    public func dataOffset(of entry: ZipEntry, in source: some ByteSource) throws(MemberError) -> UInt64 {
        if let damage = entry.damage { throw .corrupt(damage) }
        let header: [UInt8]
        do {
            header = try source.readExactly(Self.localHeaderSize, at: entry.localHeaderOffset)
        } catch {
            if case let .io(_, e) = error { throw .io(e) }
            throw .corrupt("the local header at offset \(entry.localHeaderOffset) is past the end of the file")
        }
        return try withBytes(header) { (p) throws(MemberError) -> UInt64 in
            guard le32(p, 0) == Signature.localHeader else {
                throw .corrupt("no local header at offset \(entry.localHeaderOffset)")
            }
            // The local header's own name and extra lengths (at most 2 x 65,535) are checked here,
            // at first use; the rest was checked at index time. Overflow-checked all the same.
            let (headerEnd, o1) = entry.localHeaderOffset.addingReportingOverflow(
                UInt64(Self.localHeaderSize) + UInt64(le16(p, 26)) + UInt64(le16(p, 28)))
            let start = o1 ? UInt64.max : headerEnd
            let (end, o2) = start.addingReportingOverflow(entry.compressedSize)
            // Member data lies before the central directory (APPNOTE 4.3.6).
            guard !o1, !o2, end <= centralDirectoryOffset else {
                throw .corrupt("the member's data (\(entry.compressedSize) bytes at offset \(start)) runs into the central directory")
            }
            return start
        }
    }
}
