/// How member names become paths in the mount (docs/names.md).
///
/// A name is split on `/`. A trailing `/` marks a directory. A name that is empty, absolute,
/// contains a NUL byte, an empty, `.` or `..` component, a component over 255 bytes, or is over
/// 4,095 bytes in all, is skipped with a warning: such names never create odd entries, and
/// CPython's zipimport would not find them under the normalised path either. A backslash is an
/// ordinary character on Linux and is kept.
public enum PathRules {
    public static let maxComponentLength = 255
    public static let maxPathLength = 4095

    /// The result of splitting one member name.
    public enum Verdict: Equatable, Sendable {
        /// Component ranges into the name, and whether the name ends in `/`.
        case path(isDirectory: Bool)
        case skip(String)
    }

    /// Splits `name` into `components` (ranges relative to `name.startIndex`), or says why not.
    public static func split(_ name: UnsafeRawBufferPointer, into components: inout [Range<Int>]) -> Verdict {
        components.removeAll(keepingCapacity: true)
        let n = name.count
        if n == 0 { return .skip("empty name") }
        if name[0] == UInt8(ascii: "/") { return .skip("absolute name") }
        if n > maxPathLength { return .skip("name longer than \(maxPathLength) bytes") }
        var start = 0
        var isDirectory = false
        var i = 0
        while i <= n {
            if i == n || name[i] == UInt8(ascii: "/") {
                let length = i - start
                if length == 0 {
                    if i == n { isDirectory = true } else { return .skip("empty path component") }
                } else if length == 1 && name[start] == UInt8(ascii: ".") {
                    return .skip("'.' path component")
                } else if length == 2 && name[start] == UInt8(ascii: ".") && name[start + 1] == UInt8(ascii: ".") {
                    return .skip("'..' path component")
                } else if length > maxComponentLength {
                    return .skip("path component longer than \(maxComponentLength) bytes")
                } else {
                    components.append(start..<i)
                }
                start = i + 1
            } else if name[i] == 0 {
                return .skip("NUL byte in name")
            }
            i += 1
        }
        if components.isEmpty { return .skip("name with no path component") }
        return .path(isDirectory: isDirectory)
    }

    /// Convenience for tests and messages.
    public static func split(_ name: String) -> (Verdict, [String]) {
        var ranges: [Range<Int>] = []
        let bytes = Array(name.utf8)
        let verdict = bytes.withUnsafeBytes { split($0, into: &ranges) }
        return (verdict, ranges.map { String(decoding: bytes[$0], as: UTF8.self) })
    }
}
