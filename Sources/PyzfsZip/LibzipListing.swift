import CZip
import PyzfsCore

/// One member as libzip reports it.
public struct LibzipEntry: Equatable, Sendable {
    public let name: [UInt8]
    public let size: UInt64
    public let compressedSize: UInt64
    public let crc32: UInt32
    public let method: UInt16
    public let externalAttributes: UInt32
    public let isEncrypted: Bool
}

/// libzip's own reading of an archive's central directory: the reference that pyzfs's reader
/// is checked against.
public enum LibzipListing {
    /// Every member, in libzip's order.
    /// - Parameter start: bytes to skip before the zip (the prefix that offsets do not count).
    public static func entries(path: String, start: UInt64 = 0) throws(ZipError) -> [LibzipEntry] {
        let handle = try ZipHandle(path: path, start: start)
        let count = zip_get_num_entries(handle.archive, 0)
        var out: [LibzipEntry] = []
        out.reserveCapacity(Int(max(0, count)))
        for i in 0..<UInt64(max(0, count)) {
            var st = zip_stat_t()
            zip_stat_init(&st)
            guard zip_stat_index(handle.archive, i, 0, &st) == 0 else {
                throw ZipError(zip_get_error(handle.archive))
            }
            var opsys: UInt8 = 0
            var attributes: UInt32 = 0
            zip_file_get_external_attributes(handle.archive, i, 0, &opsys, &attributes)
            let name = st.name.map { Array(UnsafeBufferPointer(start: UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self), count: strlenC($0))) } ?? []
            out.append(LibzipEntry(name: name, size: st.size, compressedSize: st.comp_size, crc32: st.crc,
                                   method: st.comp_method, externalAttributes: attributes,
                                   isEncrypted: st.encryption_method != 0))
        }
        return out
    }

    /// Whether libzip can open the archive at all, and its error if not.
    public static func open(path: String, start: UInt64 = 0) -> ZipError? {
        do { _ = try ZipHandle(path: path, start: start); return nil } catch { return error }
    }
}

private func strlenC(_ p: UnsafePointer<CChar>) -> Int {
    var n = 0
    while p[n] != 0 { n += 1 }
    return n
}
