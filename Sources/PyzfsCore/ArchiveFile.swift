#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Random access to the bytes of an archive.
public protocol ByteSource: Sendable {
    /// The number of bytes in the source.
    var size: UInt64 { get }
    /// Reads up to `buffer.count` bytes at `offset`; returns how many were read (0 at the end).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ArchiveError) -> Int
    /// Reads all of `buffer` at `offset` only if that needs no disk I/O; nil when it would wait.
    func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ArchiveError) -> Int?
    /// Whether the source still is what was indexed (a file modified in place is not).
    func isUnchanged() -> Bool
}

extension ByteSource {
    public func isUnchanged() -> Bool { true }

    public func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ArchiveError) -> Int? {
        try readFully(into: buffer, at: offset)
    }
}

extension ByteSource {
    /// Reads exactly `count` bytes at `offset`, or throws `.truncated`.
    public func readExactly(_ count: Int, at offset: UInt64) throws(ArchiveError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try withMutableBytes(&bytes) { (buffer) throws(ArchiveError) -> Int in
            try readFully(into: buffer, at: offset)
        }
        guard got == count else {
            throw .truncated("wanted \(count) bytes at offset \(offset), the file ends first")
        }
        return bytes
    }

    /// Exactly `buffer.count` bytes of a member's data from `offset`.
    /// - Throws: `.io` with the errno of a failed read; `.corrupt` when the archive ends first.
    public func readMember(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(MemberError) {
        let got: Int
        do { got = try readFully(into: buffer, at: offset) } catch {
            if case let .io(_, e) = error { throw .io(e) }
            throw .corrupt("\(error)")
        }
        guard got == buffer.count else { throw .corrupt("the archive ends inside the member") }
    }

    /// Fills as much of `buffer` as the source holds from `offset`; returns the count.
    public func readFully(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ArchiveError) -> Int {
        var done = 0
        while done < buffer.count {
            let (at, overflow) = offset.addingReportingOverflow(UInt64(done))
            if overflow { break }
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: at)
            if n == 0 { break }
            done += n
        }
        return done
    }
}

/// An archive opened once, read with `pread`. The descriptor is kept for the life of the mount,
/// so renaming another file over the path changes nothing that is served.
public final class ArchiveFile: ByteSource, @unchecked Sendable {
    // @unchecked: `fd` and the fields below never change after init; pread needs no lock.
    public let path: String
    public let fd: Int32
    public let size: UInt64
    public let device: UInt64
    public let inode: UInt64
    public let modificationTime: Int64
    let modificationNanoseconds: Int64
    /// The change time when opened, compared by `isUnchanged` when `watchesChangeTime`.
    let changeTime: (seconds: Int64, nanoseconds: Int64)
    /// Whether any change of the inode (its ctime) counts as a modification: for an archive
    /// pinned by `sha256=`, whose bytes were checked once, at mount.
    public let watchesChangeTime: Bool

    /// Opens `path` read-only.
    /// - Throws: `.cannotOpen` (missing, unreadable, a directory) with the errno.
    public init(path: String, watchesChangeTime: Bool = false) throws(ArchiveError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .cannotOpen(path: path, errno: errno) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let e = errno
            close(fd)
            throw .cannotOpen(path: path, errno: e)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw .cannotOpen(path: path, errno: EISDIR)
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            close(fd)
            throw .notZip(path: path, reason: "it is not a regular file")
        }
        self.path = path
        self.fd = fd
        self.size = UInt64(st.st_size)
        self.device = UInt64(st.st_dev)
        self.inode = UInt64(st.st_ino)
        self.modificationTime = Int64(st.st_mtim.tv_sec)
        self.modificationNanoseconds = Int64(st.st_mtim.tv_nsec)
        self.changeTime = (Int64(st.st_ctim.tv_sec), Int64(st.st_ctim.tv_nsec))
        self.watchesChangeTime = watchesChangeTime
    }

    deinit { close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ArchiveError) -> Int {
        // No file reaches 2^63 bytes (off_t): an offset beyond is past the end, whatever asked.
        guard buffer.count > 0, offset < UInt64(Int64.max) else { return 0 }
        let count = Int(min(UInt64(buffer.count), UInt64(Int64.max) - offset))
        while true {
            let n = pread(fd, buffer.baseAddress, count, off_t(offset))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw .io(path: path, errno: errno)
        }
    }

    /// `preadv2(RWF_NOWAIT)`: served from the page cache or not at all. Looked up at run time
    /// because Swift's Glibc module does not export glibc's GNU extensions.
    public func readIfCached(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ArchiveError) -> Int? {
        guard let preadv2 = NoWaitRead.function else { return try readFully(into: buffer, at: offset) }
        guard buffer.count > 0, offset < size, UInt64(buffer.count) <= UInt64(Int64.max) - offset else {
            return try readFully(into: buffer, at: offset)
        }
        var iov = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        while true {
            let n = preadv2(fd, &iov, 1, off_t(offset), NoWaitRead.flag)
            if n == buffer.count { return n }
            if n >= 0 {
                // Short: the end of the file, or part of the range is not cached.
                if offset + UInt64(n) >= size { return n }
                return nil
            }
            if errno == EINTR { continue }
            if errno == EAGAIN { return nil }
            if errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS { return try readFully(into: buffer, at: offset) }
            throw .io(path: path, errno: errno)
        }
    }

    /// A path that opens this same file again with an independent offset, whatever was renamed
    /// over `path` since (for libraries that want a path).
    public var stablePath: String { "/proc/self/fd/\(fd)" }

    /// Whether the file behind the descriptor still has the size and mtime (to the nanosecond) it
    /// had when opened, and with `watchesChangeTime` its ctime. Without it, a rename over the path
    /// does not count (the descriptor keeps the old file, whose change time the unlink alters);
    /// a write in place does, unless it restores the mtime too (see docs/errors.md).
    public func isUnchanged() -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        if watchesChangeTime && (Int64(st.st_ctim.tv_sec), Int64(st.st_ctim.tv_nsec)) != changeTime { return false }
        return UInt64(st.st_size) == size && Int64(st.st_mtim.tv_sec) == modificationTime
            && Int64(st.st_mtim.tv_nsec) == modificationNanoseconds
    }
}

/// Bytes held in memory, for tests and small archives.
public struct MemorySource: ByteSource {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var size: UInt64 { UInt64(bytes.count) }
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(ArchiveError) -> Int {
        guard offset < size else { return 0 }
        let n = min(buffer.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + Int(offset), byteCount: n)
        }
        return n
    }
}

enum NoWaitRead {
    typealias Function = @convention(c) (Int32, UnsafePointer<iovec>, Int32, off_t, Int32) -> Int
    static let flag: Int32 = 0x8  // RWF_NOWAIT, linux/fs.h
    static let function: Function? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "preadv2").map {
        unsafeBitCast($0, to: Function.self)
    }
}
