/// CPython bytecode knowledge: which `.pyc` files in an archive belong to which `.py` source.
///
/// A timestamp pyc is used only when the source's reported mtime and size equal those in its
/// header (PEP 552). Zip times are DOS times (2-second steps, read in the server's local time
/// zone), so a mount serves each source with the mtime its own pyc records, when that pyc also
/// records the source's size and a time the zip time explains (`explains`). Sizes are never changed.
public struct BytecodeIndex: Sendable {
    /// For a `.py` node, the `__pycache__/NAME.*.pyc` nodes beside it, plain ones before `.opt-N`.
    public let candidates: [UInt32: [UInt32]]

    public init(tree: Tree) {
        var found: [UInt32: [UInt32]] = [:]
        let pycache = Array("__pycache__".utf8)
        for (i, node) in tree.nodes.enumerated() where node.kind == .file && !node.isHidden {
            let name = tree.name(of: i)
            guard name.count > 4, name.suffix(4).elementsEqual(".pyc".utf8) else { continue }
            let directory = Int(node.parent)
            guard directory != Tree.root, tree.name(of: directory).elementsEqual(pycache) else { continue }
            // NAME.TAG[.opt-N].pyc: a module name has no dot, so NAME ends at the first one.
            guard let dot = name.firstIndex(of: UInt8(ascii: ".")) else { continue }
            let source = Array(name[name.startIndex..<dot]) + Array(".py".utf8)
            let packageDirectory = Int(tree.nodes[directory].parent)
            guard let py = source.withUnsafeBytes({ tree.child(of: packageDirectory, named: $0) }),
                  tree.nodes[py].kind == .file else { continue }
            found[UInt32(py), default: []].append(UInt32(i))
        }
        for (py, pycs) in found where pycs.count > 1 {
            found[py] = pycs.sorted { a, b in
                let aOpt = tree.name(of: Int(a)).contains(UInt8(ascii: "-")), bOpt = tree.name(of: Int(b)).contains(UInt8(ascii: "-"))
                return aOpt == bOpt ? a < b : !aOpt
            }
        }
        candidates = found
    }

    /// The `.py` sources of `tree` (other than `__main__.py`, which CPython never caches) and how
    /// many of them have no pyc beside them.
    public func sources(in tree: Tree) -> (total: Int, withoutBytecode: Int) {
        var total = 0, without = 0
        for (i, node) in tree.nodes.enumerated() where node.kind == .file && !node.isHidden {
            let name = tree.name(of: i)
            guard name.count > 3, name.suffix(3).elementsEqual(".py".utf8), !name.elementsEqual("__main__.py".utf8) else { continue }
            total += 1
            if candidates[UInt32(i)] == nil { without += 1 }
        }
        return (total, without)
    }

    /// The largest time-zone offset a DOS time is read across (UTC+14 is the furthest zone).
    public static let maximumZoneOffset: Int64 = 14 * 3600

    /// Whether a pyc's recorded source mtime (`pycMtime`, seconds modulo 2^32 as PEP 552 keeps
    /// it) can be the true mtime of a source whose zip time is `zipTime`: equal when the zip time
    /// is exact (a 0x5455 field), else equal up to DOS times' 2-second steps plus a whole
    /// time-zone offset (a multiple of 15 minutes, at most 14 hours) between the zone the
    /// archive was written in and the server's. Anything else is an edited source, whose stale
    /// pyc CPython must recompile.
    public static func explains(pycMtime: UInt32, zipTime: Int64, exact: Bool) -> Bool {
        let difference = Int64(Int32(bitPattern: pycMtime &- UInt32(truncatingIfNeeded: zipTime)))
        if exact { return difference == 0 }
        guard abs(difference) <= maximumZoneOffset + 2 else { return false }
        let quarter: Int64 = 900
        let nearest = (difference + (difference >= 0 ? quarter / 2 : -quarter / 2)) / quarter * quarter
        return abs(difference - nearest) <= 2 && abs(nearest) <= maximumZoneOffset
    }

    /// The source mtime and size a pyc header records, if it is a timestamp pyc (PEP 552 flags 0).
    public static func timestampFields(ofHeader header: UnsafeRawBufferPointer) -> (mtime: UInt32, size: UInt32)? {
        guard header.count >= 16, header[2] == 0x0D, header[3] == 0x0A else { return nil }
        guard le32(header, 4) == 0 else { return nil }
        return (le32(header, 8), le32(header, 12))
    }
}
