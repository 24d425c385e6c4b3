/// Where a member's data is, for decoders.
public struct MemberLocation: Sendable {
    /// Index in `ZipIndex.entries` (libzip uses the same numbering).
    public let index: Int
    public let entry: ZipEntry
    /// File position of the first byte of (compressed) data.
    public let dataOffset: UInt64

    public init(index: Int, entry: ZipEntry, dataOffset: UInt64) {
        self.index = index
        self.entry = entry
        self.dataOffset = dataOffset
    }
}

/// A sequential reader of one member's uncompressed bytes; one thread at a time.
public protocol MemberStream: AnyObject {
    /// Uncompressed bytes delivered so far.
    var position: UInt64 { get }
    /// Reads the next bytes; 0 at the end. Size and CRC are checked when the end is reached.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(MemberError) -> Int
}

/// Something that turns compressed members into bytes (libdeflate, libzip).
public protocol MemberDecoder: Sendable {
    /// Whether this decoder decompresses members of `method` whole.
    func decodesWhole(method: UInt16) -> Bool
    /// Decompresses the member into `destination`, exactly `uncompressedSize` bytes, checking
    /// that the data is neither longer nor shorter and matches its CRC-32.
    func decode(_ member: MemberLocation, into destination: UnsafeMutableRawBufferPointer) throws(MemberError)
    /// A sequential reader from the member's start, or nil when this decoder cannot stream `method`.
    func openStream(_ member: MemberLocation) throws(MemberError) -> (any MemberStream)?
}

/// CRC-32 (ISO-HDLC, as zip uses) continued over `bytes`.
public typealias Checksum = @Sendable (_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32

/// Reads members of one archive through a list of decoders (the first that handles a method wins).
public struct MemberReader: Sendable {
    public let source: any ByteSource
    public let index: ZipIndex
    public let decoders: [any MemberDecoder]
    public let checksum: Checksum

    public init(source: any ByteSource, index: ZipIndex, decoders: [any MemberDecoder], checksum: @escaping Checksum) {
        self.source = source
        self.index = index
        self.decoders = decoders
        self.checksum = checksum
    }

    /// Refuses a member whose declared size no data of its method could produce: deflate cannot
    /// expand more than 1032:1, so a larger claim is a bomb or a lie, refused before any memory is
    /// set aside for it.
    public static func checkPlausible(_ entry: ZipEntry) throws(MemberError) {
        guard entry.method == 8 || entry.method == 9 else { return }
        let (product, o1) = entry.compressedSize.multipliedReportingOverflow(by: 1032)
        let (limit, o2) = product.addingReportingOverflow(4096)
        if !o1 && !o2 && entry.uncompressedSize > limit {
            throw .corrupt("\(entry.uncompressedSize) bytes declared from \(entry.compressedSize) compressed bytes: more than deflate can produce")
        }
    }

    /// Where member `i`'s data starts (reads its local header).
    public func locate(_ i: Int) throws(MemberError) -> MemberLocation {
        let entry = index.entries[i]
        return MemberLocation(index: i, entry: entry, dataOffset: try index.dataOffset(of: entry, in: source))
    }

    /// Decompresses a whole member into `destination` (exactly its size), checking size and CRC.
    public func decode(_ location: MemberLocation, into destination: UnsafeMutableRawBufferPointer) throws(MemberError) {
        let entry = location.entry
        if entry.isEncrypted { throw .encrypted }
        precondition(UInt64(destination.count) == entry.uncompressedSize)
        // No bytes to check a CRC on, and libzip skips the check then: empty data has CRC 0.
        if destination.count == 0 {
            guard entry.crc32 == 0 else { throw .crcMismatch(expected: entry.crc32, actual: 0) }
            return
        }
        if entry.method == 0 {
            guard entry.compressedSize == entry.uncompressedSize else {
                throw .sizeMismatch(declared: entry.uncompressedSize, actual: entry.compressedSize)
            }
            try source.readMember(into: destination, at: location.dataOffset)
            let crc = checksum(0, UnsafeRawBufferPointer(destination))
            guard crc == entry.crc32 else { throw .crcMismatch(expected: entry.crc32, actual: crc) }
            return
        }
        for d in decoders where d.decodesWhole(method: entry.method) {
            return try d.decode(location, into: destination)
        }
        // A method that some decoder can only stream.
        guard let stream = try openStream(location) else { throw .unsupportedMethod(entry.method) }
        var done = 0
        while done < destination.count {
            let n = try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: destination[done...]))
            if n == 0 { throw .sizeMismatch(declared: UInt64(destination.count), actual: UInt64(done)) }
            done += n
        }
    }

    /// A sequential reader of the member, or nil when no decoder streams its method.
    public func openStream(_ location: MemberLocation) throws(MemberError) -> (any MemberStream)? {
        if location.entry.isEncrypted { throw .encrypted }
        for d in decoders {
            if let s = try d.openStream(location) { return s }
        }
        return nil
    }

    /// The whole member as an array, if it is at most `limit` bytes.
    public func readWhole(_ i: Int, limit: UInt64 = 1 << 20) throws(MemberError) -> [UInt8] {
        let entry = index.entries[i]
        guard entry.uncompressedSize <= limit else {
            throw .sizeMismatch(declared: entry.uncompressedSize, actual: limit)
        }
        let location = try locate(i)
        var bytes = [UInt8](repeating: 0, count: Int(entry.uncompressedSize))
        try withMutableBytes(&bytes) { (p) throws(MemberError) in try decode(location, into: p) }
        return bytes
    }
}
