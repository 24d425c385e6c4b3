/// What a zipapp says about how to run it.
public enum Zipapp {
    /// The `#!` line in front of the zip data, split into words (at most 4 KiB is read).
    public static func interpreterLine(of source: some ByteSource, index: ZipIndex) -> [String]? {
        let length = Int(min(index.dataStart, 4096))
        guard length > 2, let head = try? source.readExactly(length, at: 0),
              head[0] == UInt8(ascii: "#"), head[1] == UInt8(ascii: "!") else { return nil }
        let end = head.firstIndex(of: UInt8(ascii: "\n")) ?? head.count
        var line = String(decoding: head[2..<end], as: UTF8.self)
        if line.hasSuffix("\r") { line.removeLast() }
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        return words.isEmpty ? nil : words
    }

    /// The interpreter to run and the arguments the `#!` line puts before the script:
    /// `#!/usr/bin/env python3` names `python3` (to find on PATH), `#!/usr/bin/python3.11 -I`
    /// names a path and one argument; `env -S` and env's own options are handled.
    public static func interpreter(fromLine words: [String]) -> (program: String, arguments: [String])? {
        guard let first = words.first else { return nil }
        if first == "env" || first.hasSuffix("/env") {
            var rest = Array(words.dropFirst())
            while let w = rest.first, w.hasPrefix("-") || w.contains("=") {
                rest.removeFirst()  // -S, -i, -u NAME handled loosely; NAME=value assignments
                if w == "-u", !rest.isEmpty { rest.removeFirst() }
            }
            guard let program = rest.first else { return nil }
            return (program, Array(rest.dropFirst()))
        }
        return (first, Array(words.dropFirst()))
    }
}
