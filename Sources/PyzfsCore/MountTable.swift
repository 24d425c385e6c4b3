/// One line of /proc/self/mountinfo.
public struct MountRecord: Sendable, Equatable {
    public var mountPoint: String
    public var fsType: String
    public var source: String
    public var options: String
    public var superOptions: String

    /// Whether this is a mount made by pyzfs.
    public var isPyzfs: Bool { fsType == "fuse.pyzfs" }
}

/// The mounts of this process's mount namespace.
public enum MountTable {
    /// Parses mountinfo text (proc(5)); octal escapes such as `\040` are decoded.
    public static func parse(_ text: String) -> [MountRecord] {
        var records: [MountRecord] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 3 else { continue }
            records.append(MountRecord(mountPoint: unescape(fields[4]), fsType: unescape(fields[dash + 1]),
                                       source: unescape(fields[dash + 2]), options: String(fields[5]),
                                       superOptions: fields.count > dash + 3 ? String(fields[dash + 3]) : ""))
        }
        return records
    }

    /// The current table.
    public static func current() -> [MountRecord] {
        parse(readSmallFile("/proc/self/mountinfo", limit: 64 << 20) ?? "")
    }

    /// The mount whose mount point is `path` (the last one, which is on top), if any.
    public static func mount(at path: String, in records: [MountRecord] = current()) -> MountRecord? {
        records.last { $0.mountPoint == path }
    }

    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        let u = Array(field.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 4 <= u.count,
               let v = UInt8(String(decoding: u[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8) {
                bytes.append(v)
                i += 4
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
