#if canImport(Glibc)
import Glibc
#endif

/// The absolute form of `path` (symlinks resolved when it exists).
public func absolutePath(_ path: String) -> String {
    if let r = realpath(path, nil) {
        defer { free(r) }
        return string(fromCString: r)
    }
    return path.hasPrefix("/") ? path : currentDirectory() + "/" + path
}

/// The working directory, "/" when it cannot be named.
public func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" }
    return string(fromCString: buffer)
}

/// Removes `.`, `..` and empty components without touching the filesystem.
public func normalizePath(_ path: String) -> String {
    var parts: [Substring] = []
    for c in path.split(separator: "/") {
        if c == "." { continue }
        if c == ".." { _ = parts.popLast(); continue }
        parts.append(c)
    }
    return "/" + parts.joined(separator: "/")
}
