import FoundationEssentials
import PyzfsCore

/// Which wheel each file of an archive came from, for the checks `pyzfs inspect` makes per file
/// with the tags of the file's distribution (an abi3 extension's oldest Python).
extension Inspector {
    /// The `Tag:` lines of the WHEEL file of each installed distribution, by the tree path of
    /// every file its RECORD lists (RECORD paths are relative to the directory holding the
    /// `.dist-info`; paths leaving it, such as `../../bin/x`, are left out).
    func wheelTagsByFile() -> [String: [WheelTag]] {
        var owners: [String: [WheelTag]] = [:]
        for (i, node) in tree.nodes.enumerated() where node.kind == .directory && !node.isHidden {
            guard String(decoding: tree.name(of: i), as: UTF8.self).hasSuffix(".dist-info"),
                  let wheel = tree.child(of: i, named: "WHEEL").flatMap({ bytes(of: $0, limit: 1 << 20) }),
                  let record = tree.child(of: i, named: "RECORD").flatMap({ bytes(of: $0, limit: 64 << 20) }) else { continue }
            let tags = String(decoding: wheel, as: UTF8.self).split(whereSeparator: \.isNewline)
                .filter { $0.hasPrefix("Tag:") }.compactMap { WheelTag(String($0.dropFirst(4)).trimmingCharacters(in: " \t\r")) }
            let base = tree.path(of: Int(node.parent))
            for line in String(decoding: record, as: UTF8.self).split(whereSeparator: \.isNewline) {
                guard let path = Self.recordPath(line), !path.split(separator: "/").contains("..") else { continue }
                owners[base.isEmpty ? path : base + "/" + path] = tags
            }
        }
        return owners
    }

    /// The path field of a RECORD line (CSV: quoted when it holds a comma or a quote).
    static func recordPath(_ line: some StringProtocol) -> String? {
        guard line.hasPrefix("\"") else {
            let path = line.prefix { $0 != "," }
            return path.isEmpty ? nil : String(path)
        }
        var path = "", sawQuote = false  // a quote ends the field unless another follows
        for c in line.dropFirst() {
            if sawQuote {
                if c != "\"" { break }
                path.append(c)
                sawQuote = false
            } else if c == "\"" {
                sawQuote = true
            } else {
                path.append(c)
            }
        }
        return path.isEmpty ? nil : path
    }
}
