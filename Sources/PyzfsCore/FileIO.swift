#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `bytes` to a descriptor (short writes and EINTR retried); false on an error.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

/// Writes a whole string to a descriptor, as `writeAll(_:_:)` writes bytes.
@discardableResult
public func writeAll(_ fd: Int32, _ text: String) -> Bool {
    writeAll(fd, Array(text.utf8))
}

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR; false on error.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { writeAll(fd, $0) }
}

/// Reads a descriptor to its end (EINTR retried), at most `limit` bytes; what was read before
/// an error is returned.
public func readAll(_ fd: Int32, limit: Int = .max) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while out.count < limit {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, min($0.count, limit - out.count)) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// Writes `text` whole to `path`, opened write-only and close-on-exec with `flags` added
/// (O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW...): the one way pyzfs writes a file.
public func writeFile(_ path: String, _ text: String, flags: Int32 = 0, mode: mode_t = 0o600) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC | flags, mode)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return writeAll(fd, text)
}
