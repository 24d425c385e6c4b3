#if canImport(Glibc)
import Glibc
#endif

/// A String from a NUL-terminated C buffer (invalid UTF-8 repaired).
public func string(fromCString buffer: [CChar]) -> String {
    let end = buffer.firstIndex(of: 0) ?? buffer.count
    return String(decoding: buffer[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A String from a NUL-terminated C string.
public func string(fromCString pointer: UnsafePointer<CChar>) -> String {
    String(decoding: UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)), as: UTF8.self)
}

extension UInt64 {
    /// `self + other`, or `UInt64.max` where that overflows: for totals of archive numbers
    /// (sizes for `statfs`, inspect, extraction progress) that only report.
    public func addingSaturating(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
