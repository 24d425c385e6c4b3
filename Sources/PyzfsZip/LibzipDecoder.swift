import CZip
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// A libzip error, as `zip_error_t` reports it.
public struct ZipError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `ZIP_ER_*`.
    public let code: Int32
    /// The errno or zlib code behind it, when there is one.
    public let system: Int32
    public let message: String

    init(_ error: UnsafeMutablePointer<zip_error_t>) {
        code = zip_error_code_zip(error)
        system = zip_error_code_system(error)
        message = String(cString: zip_error_strerror(error))
    }

    init(code: Int32) {
        var e = zip_error_t()
        zip_error_init_with_code(&e, code)
        self.init(&e)
        zip_error_fini(&e)
    }

    public var description: String { message }

    /// The member-level meaning of this error.
    var memberError: MemberError {
        switch code {
        case ZIP_ER_COMPNOTSUPP: return .corrupt("libzip: \(message)")
        case ZIP_ER_ENCRNOTSUPP, ZIP_ER_NOPASSWD, ZIP_ER_WRONGPASSWD: return .encrypted
        case ZIP_ER_READ, ZIP_ER_SEEK, ZIP_ER_OPEN: return system != 0 ? .io(system) : .corrupt("libzip: \(message)")
        default: return .corrupt("libzip: \(message)")
        }
    }
}

/// One open `zip_t`. libzip handles must not be used by two threads at once; an owner is.
final class ZipHandle {
    let archive: OpaquePointer

    /// Opens the archive behind `path` from byte `start` (the prefix that offsets do not count).
    init(path: String, start: UInt64) throws(ZipError) {
        var error = zip_error_t()
        zip_error_init(&error)
        defer { zip_error_fini(&error) }
        // libzip 1.7.3's zip_open has a static-variable race: open one handle at a time.
        ZipHandle.openLock.lock()
        defer { ZipHandle.openLock.unlock() }
        guard let src = zip_source_file_create(path, start, -1, &error) else { throw ZipError(&error) }
        guard let za = zip_open_from_source(src, ZIP_RDONLY, &error) else {
            zip_source_free(src)
            throw ZipError(&error)
        }
        archive = za
    }

    deinit { zip_discard(archive) }

    static let openLock = ConditionLock()
}

/// Decompresses members with libzip: every method the linked libzip supports (Debian's: deflate,
/// bzip2), CRC-checked by libzip, and streams of members too large for the cache.
public final class LibzipDecoder: MemberDecoder, @unchecked Sendable {
    // @unchecked: `idle` and `open` are guarded by `lock`; the rest is immutable.
    let path: String
    let start: UInt64
    let maxHandles: Int
    private let lock = ConditionLock()
    private var idle: [ZipHandle] = []
    private var open = 0

    /// - Parameters:
    ///   - archive: the archive, reopened through its descriptor so a rename changes nothing.
    ///   - index: gives the prefix that libzip must skip.
    public init(archive: ArchiveFile, index: ZipIndex, maxHandles: Int = 4) {
        self.path = archive.stablePath
        self.start = index.offsetShift
        self.maxHandles = maxHandles
    }

    /// Whether the linked libzip decompresses `method` (0 = decompression, whatever its man page says).
    public static func supports(method: UInt16) -> Bool {
        zip_compression_method_supported(Int32(method), 0) != 0
    }

    public func decodesWhole(method: UInt16) -> Bool { method != 0 && Self.supports(method: method) }

    public func decode(_ member: MemberLocation, into destination: UnsafeMutableRawBufferPointer) throws(MemberError) {
        let handle = try checkOut()
        defer { checkIn(handle) }
        let stream = try LibzipStream(handle: handle, member: member, owned: false)
        var done = 0
        while done < destination.count {
            let n = try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: destination[done...]))
            if n == 0 { throw .sizeMismatch(declared: UInt64(destination.count), actual: UInt64(done)) }
            done += n
        }
        // Reading on to the end makes libzip compare the CRC; any further byte is a lie about the size.
        var probe: UInt8 = 0
        let extra = try withUnsafeMutableBytes(of: &probe) { (p) throws(MemberError) -> Int in try stream.read(into: p) }
        if extra != 0 { throw .sizeMismatch(declared: UInt64(destination.count), actual: UInt64(destination.count) + 1) }
    }

    public func openStream(_ member: MemberLocation) throws(MemberError) -> (any MemberStream)? {
        guard member.entry.method == 0 || Self.supports(method: member.entry.method) else { return nil }
        // A stream keeps its handle for its whole life, so it gets one of its own.
        let handle: ZipHandle
        do { handle = try ZipHandle(path: path, start: start) } catch { throw error.memberError }
        return try LibzipStream(handle: handle, member: member, owned: true)
    }

    private func checkOut() throws(MemberError) -> ZipHandle {
        lock.lock()
        while idle.isEmpty && open >= maxHandles { lock.wait() }
        if let h = idle.popLast() {
            lock.unlock()
            return h
        }
        open += 1
        lock.unlock()
        do {
            return try ZipHandle(path: path, start: start)
        } catch {
            lock.withLock { open -= 1; lock.broadcast() }
            throw error.memberError
        }
    }

    private func checkIn(_ handle: ZipHandle) {
        lock.withLock {
            idle.append(handle)
            lock.broadcast()
        }
    }
}

/// A member read from its start through `zip_fread`; libzip checks the CRC at the end.
final class LibzipStream: MemberStream {
    let handle: ZipHandle
    let file: OpaquePointer
    let member: MemberLocation
    private(set) var position: UInt64 = 0
    // Keeps an owned handle alive as long as the stream.
    private let owned: Bool

    init(handle: ZipHandle, member: MemberLocation, owned: Bool) throws(MemberError) {
        self.handle = handle
        self.member = member
        self.owned = owned
        var st = zip_stat_t()
        zip_stat_init(&st)
        if zip_stat_index(handle.archive, UInt64(member.index), 0, &st) != 0 {
            throw ZipError(zip_get_error(handle.archive)).memberError
        }
        // libzip numbers members as the central directory lists them, as pyzfs does; make sure.
        guard st.size == member.entry.uncompressedSize, st.comp_size == member.entry.compressedSize,
              st.crc == member.entry.crc32, st.comp_method == member.entry.method else {
            throw .corrupt("libzip sees a different member at index \(member.index)")
        }
        guard let f = zip_fopen_index(handle.archive, UInt64(member.index), 0) else {
            let e = ZipError(zip_get_error(handle.archive))
            if e.code == ZIP_ER_COMPNOTSUPP { throw .unsupportedMethod(member.entry.method) }
            throw e.memberError
        }
        file = f
    }

    deinit { zip_fclose(file) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(MemberError) -> Int {
        guard buffer.count > 0 else { return 0 }
        let n = zip_fread(file, buffer.baseAddress, UInt64(buffer.count))
        if n < 0 {
            let e = ZipError(zip_file_get_error(file))
            if e.code == ZIP_ER_CRC {
                throw .crcMismatch(expected: member.entry.crc32, actual: nil)
            }
            throw e.memberError
        }
        position += UInt64(n)
        if UInt64(position) > member.entry.uncompressedSize {
            throw .sizeMismatch(declared: member.entry.uncompressedSize, actual: position)
        }
        return Int(n)
    }
}
