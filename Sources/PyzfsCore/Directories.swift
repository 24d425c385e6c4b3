#if canImport(Glibc)
import Glibc
#endif

/// Creates a new directory `BASE/PREFIX-XXXXXX`, the X's replaced as mkdtemp(3) does: mode
/// 0700, a name that did not exist.
/// - Returns: its path, or nil with errno set (BASE missing or not writable, say).
public func makeUniqueDirectory(in base: String, prefix: String) -> String? {
    var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { return nil }
    return string(fromCString: p)
}

/// The value of environment variable `name` when it is an absolute path, else nil: the XDG Base
/// Directory specification says relative values are to be ignored, and a relative scratch or
/// cache place would depend on the working directory.
public func absoluteEnvironment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    let value = string(fromCString: v)
    return value.hasPrefix("/") ? value : nil
}

/// Whether `path` is a directory with no entries but `.` and `..` (following symlinks).
public func isEmptyDirectory(_ path: String) -> Bool {
    guard let d = opendir(path) else { return false }
    defer { closedir(d) }
    while true {
        errno = 0
        guard let entry = readdir(d) else { return errno == 0 }  // an error is no proof of emptiness
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { return false }
    }
}
