import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// pyzfs's exit codes: part of its interface, listed in docs/errors.md. They follow sysexits.h
/// where one fits, and env(1)/docker for `pyzfs run`'s own failures.
public enum Exit {
    public static let success: Int32 = 0
    /// An unmount failed for a reason not listed below.
    public static let failure: Int32 = 1
    /// Bad command line or `-o` option (EX_USAGE, as swift-argument-parser uses).
    public static let usage: Int32 = 64
    /// The archive is not a zip, or is damaged (EX_DATAERR).
    public static let badArchive: Int32 = 65
    /// The archive cannot be opened or read (EX_NOINPUT).
    public static let noArchive: Int32 = 66
    /// FUSE is unavailable: no /dev/fuse, no fusermount3 (EX_UNAVAILABLE).
    public static let noFUSE: Int32 = 69
    /// An internal error, such as a server that died before it was ready (EX_SOFTWARE).
    public static let software: Int32 = 70
    /// The mount system call failed for another reason (EX_OSERR).
    public static let mountFailed: Int32 = 71
    /// The mount point is missing, not a directory, or not a pyzfs mount (EX_CANTCREAT).
    public static let badMountPoint: Int32 = 73
    /// The mount point is in use: already mounted, or busy at unmount (EX_TEMPFAIL).
    public static let busy: Int32 = 75
    /// Not permitted to mount (EX_NOPERM).
    public static let noPermission: Int32 = 77
    /// `pyzfs run`: pyzfs itself failed before the app started (as docker run).
    public static let runFailed: Int32 = 125
    /// `pyzfs run`: the interpreter exists but cannot be executed.
    public static let cannotExecute: Int32 = 126
    /// `pyzfs run`: no interpreter found.
    public static let notFound: Int32 = 127
}

/// A failure the user must see: one line and an exit code.
public struct Failure: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public init(_ code: Int32, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

extension Failure {
    public init(_ error: ArchiveError, path: String) {
        switch error {
        case let .cannotOpen(path, e):
            let hint: String
            switch e {
            case ENOENT: hint = "check the path"
            case EACCES: hint = "check its permissions"
            case EISDIR: hint = "give the .pyz file, not a directory"
            default: hint = "check the path"
            }
            self.init(Exit.noArchive, "cannot open archive \(path): \(errnoText(e)); \(hint)")
        case let .io(path, e):
            self.init(Exit.noArchive, "cannot read archive \(path): \(errnoText(e))")
        case let .notZip(path, reason):
            self.init(Exit.badArchive, "cannot mount \(path): it is not a zip archive (\(reason))")
        case .truncated, .corrupt, .unsupported:
            self.init(Exit.badArchive, "cannot mount \(path): \(error); rebuild it or check the download")
        }
    }
}
