#if canImport(Glibc)
import Glibc
#endif

/// Why an archive cannot be opened or indexed. Each case has a CLI exit code (docs/errors.md).
public enum ArchiveError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file cannot be opened or read: missing, no permission, a directory.
    case cannotOpen(path: String, errno: Int32)
    /// No zip structure was found.
    case notZip(path: String, reason: String)
    /// The file ends before a structure it declares.
    case truncated(String)
    /// A structure is inconsistent (bad signature, sizes out of range).
    case corrupt(String)
    /// A feature that pyzfs does not support (split archives).
    case unsupported(String)
    /// A read failed with an errno.
    case io(path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .cannotOpen(path, e): return "cannot open \(path): \(errnoText(e))"
        case let .notZip(path, reason): return "cannot mount \(path): not a zip archive (\(reason))"
        case let .truncated(why): return "the archive is truncated: \(why)"
        case let .corrupt(why): return "the archive is damaged: \(why)"
        case let .unsupported(why): return "the archive uses an unsupported feature: \(why)"
        case let .io(path, e): return "cannot read \(path): \(errnoText(e))"
        }
    }
}

/// Why a member's bytes cannot be served. The FUSE layer maps each case to one errno.
public enum MemberError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The member is encrypted; pyzfs has no password.
    case encrypted
    /// The linked libraries cannot decompress this method.
    case unsupportedMethod(UInt16)
    /// The data does not match its CRC-32.
    case crcMismatch(expected: UInt32, actual: UInt32?)
    /// The data is longer or shorter than the central directory says.
    case sizeMismatch(declared: UInt64, actual: UInt64)
    /// The compressed data is malformed, or a library failed.
    case corrupt(String)
    /// The archive file changed under the mount.
    case archiveChanged
    /// Reading the archive failed.
    case io(Int32)

    public var description: String {
        switch self {
        case .encrypted: return "the member is encrypted"
        case let .unsupportedMethod(m): return "compression method \(m) (\(compressionMethodName(m))) is not supported by the linked libraries"
        case let .crcMismatch(e, a):
            if let a { return "CRC-32 mismatch (the archive says \(hex32(e)), the data gives \(hex32(a)))" }
            return "CRC-32 mismatch (the archive says \(hex32(e)))"
        case let .sizeMismatch(d, a): return "size mismatch (archive says \(d) bytes, data gives \(a))"
        case let .corrupt(why): return "corrupt data: \(why)"
        case .archiveChanged: return "the archive file was modified while mounted"
        case let .io(e): return errnoText(e)
        }
    }
}

/// Errors of filesystem operations, independent of FUSE. `PyzfsFUSE` maps each to one errno.
public enum FSError: Error, Equatable, Sendable {
    case notFound
    case notDirectory
    case isDirectory
    case readOnly
    case noAttribute
    case rangeTooSmall
    case invalidArgument
    /// The member's bytes cannot be served; logged with its cause.
    case member(MemberError)
    /// The name exists already (EEXIST).
    case exists
    /// The in-memory bytecode cache is full (ENOSPC).
    case noSpace
    /// A name component over 255 bytes (ENAMETOOLONG).
    case nameTooLong
    /// The caller may not change the mount: only its owner and root may (EACCES).
    case permissionDenied
    /// The operation is not implemented for this kind of node (ENOSYS: the kernel then stops asking).
    case notImplemented
    /// Answering needs a decompression or disk I/O, and the caller asked not to wait: retry
    /// the same call with `mayWait` on a worker thread.
    case wouldBlock
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}

/// `strerror` text for an errno.
public func errnoText(_ e: Int32) -> String {
    if let s = strerror(e) { return String(cString: s) }
    return "errno \(e)"
}

/// A human name for a zip compression method number (APPNOTE 4.4.5).
public func compressionMethodName(_ method: UInt16) -> String {
    switch method {
    case 0: return "stored"
    case 8: return "deflate"
    case 9: return "deflate64"
    case 12: return "bzip2"
    case 14: return "lzma"
    case 93: return "zstd"
    case 95: return "xz"
    case 98: return "ppmd"
    case 99: return "AES"
    default: return "unknown"
    }
}
