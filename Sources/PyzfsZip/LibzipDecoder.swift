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

/// One open `zip_t`, with its whole central directory parsed (several MB for 100,000 entries).
/// libzip handles must not be used by two threads at once: `LibzipDecoder` lends each to one
/// thread at a time.
final class ZipHandle {
    let archive: OpaquePointer
    /// Lent to a thread now (guarded by the decoder's lock).
    var busy = false
    /// Streams open on this handle (guarded by the decoder's lock).
    var streams = 0

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
///
/// At most `maxHandles` handles exist for the mount's life, shared by whole decodes and by
/// streams (libzip reads several open files of one archive in turn): what an archive costs in
/// libzip's memory is bounded by that count, however many streams are open.
public final class LibzipDecoder: MemberDecoder, @unchecked Sendable {
    // @unchecked: `handles` and the handles' `busy`/`streams` are guarded by `lock`.
    let path: String
    let start: UInt64
    public let maxHandles: Int
    private let lock = ConditionLock()
    private var handles: [ZipHandle] = []
    private var opening = 0

    /// - Parameters:
    ///   - archive: the archive, reopened through its descriptor so a rename changes nothing.
    ///   - index: gives the prefix that libzip must skip.
    public init(archive: ArchiveFile, index: ZipIndex, maxHandles: Int = 2) {
        self.path = archive.stablePath
        self.start = index.offsetShift
        self.maxHandles = max(1, maxHandles)
    }

    /// Handles opened so far (at most `maxHandles`).
    public var handleCount: Int { lock.withLock { handles.count } }

    /// Whether the linked libzip decompresses `method` (0 = decompression, whatever its man page says).
    public static func supports(method: UInt16) -> Bool {
        zip_compression_method_supported(Int32(method), 0) != 0
    }

    public func decodesWhole(method: UInt16) -> Bool { method != 0 && Self.supports(method: method) }

    public func decode(_ member: MemberLocation, into destination: UnsafeMutableRawBufferPointer) throws(MemberError) {
        let handle = try acquire(forStream: false)
        defer { release(handle) }
        let stream = try LibzipStream(handle: handle, member: member, decoder: nil)
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
        let handle = try acquire(forStream: true)
        defer { release(handle) }
        do {
            return try LibzipStream(handle: handle, member: member, decoder: self)
        } catch {
            lock.withLock { handle.streams -= 1 }
            throw error
        }
    }

    /// Lends a handle to this thread: an idle one (for a stream, the one with the fewest streams),
    /// or a new one while fewer than `maxHandles` exist; else waits for one.
    func acquire(forStream: Bool) throws(MemberError) -> ZipHandle {
        lock.lock()
        while true {
            let idle = handles.filter { !$0.busy }
            if forStream && handles.count + opening < maxHandles && !idle.contains(where: { $0.streams == 0 }) {
                break  // a stream gets a handle of its own while there is room
            }
            if let h = forStream ? idle.min(by: { $0.streams < $1.streams }) : idle.first {
                h.busy = true
                if forStream { h.streams += 1 }
                lock.unlock()
                return h
            }
            if handles.count + opening < maxHandles { break }
            lock.wait()
        }
        opening += 1
        lock.unlock()
        let h: ZipHandle
        do {
            h = try ZipHandle(path: path, start: start)
        } catch {
            lock.withLock { opening -= 1; lock.broadcast() }
            throw error.memberError
        }
        lock.withLock {
            opening -= 1
            h.busy = true
            if forStream { h.streams += 1 }
            handles.append(h)
        }
        return h
    }

    /// Waits until `handle` is idle and lends it to this thread (a stream's next read).
    func acquire(_ handle: ZipHandle) {
        lock.lock()
        while handle.busy { lock.wait() }
        handle.busy = true
        lock.unlock()
    }

    func release(_ handle: ZipHandle, closingStream: Bool = false) {
        lock.withLock {
            handle.busy = false
            if closingStream { handle.streams -= 1 }
            lock.broadcast()
        }
    }
}

/// A member read from its start through `zip_fread`; libzip checks the CRC at the end. A stream
/// of `decoder` borrows its handle for each read only, so streams share handles.
final class LibzipStream: MemberStream {
    let handle: ZipHandle
    let file: OpaquePointer
    let member: MemberLocation
    private(set) var position: UInt64 = 0
    /// Set for a stream that outlives the call that opened it.
    private let decoder: LibzipDecoder?

    /// Opens the member on `handle`, which the calling thread holds.
    init(handle: ZipHandle, member: MemberLocation, decoder: LibzipDecoder?) throws(MemberError) {
        self.handle = handle
        self.member = member
        self.decoder = decoder
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

    deinit {
        guard let decoder else {
            zip_fclose(file)
            return
        }
        decoder.acquire(handle)
        zip_fclose(file)
        decoder.release(handle, closingStream: true)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(MemberError) -> Int {
        guard buffer.count > 0 else { return 0 }
        if let decoder { decoder.acquire(handle) }
        let n = zip_fread(file, buffer.baseAddress, UInt64(buffer.count))
        let error = n < 0 ? ZipError(zip_file_get_error(file)) : nil
        if let decoder { decoder.release(handle) }
        if let error {
            if error.code == ZIP_ER_CRC {
                throw .crcMismatch(expected: member.entry.crc32, actual: nil)
            }
            throw error.memberError
        }
        position += UInt64(n)
        if position > member.entry.uncompressedSize {
            throw .sizeMismatch(declared: member.entry.uncompressedSize, actual: position)
        }
        return Int(n)
    }
}
