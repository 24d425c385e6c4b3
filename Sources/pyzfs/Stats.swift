import ArgumentParser
import PyzfsApps
import PyzfsCore
import PyzfsRun
import PyzfsFUSE

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show a mount's cache: budget, bytes held, hits, misses, decompressions and their time.")

    @Argument(help: "The mount point.")
    var mountpoint: String

    @Flag(help: "Print the server's JSON.")
    var json = false

    func run() throws {
        guard let text = readControlAttribute(mountpoint: mountpoint, name: "stats") else {
            throw Failure(Exit.badMountPoint, "\(mountpoint) is not a live pyzfs mount (pyzfs list shows them)")
        }
        if json {
            print(text)
            return
        }
        for (key, value) in parseFlatJSON(text) {
            print("\(key.replacingOccurrences(of: "_", with: " ")): \(value)")
        }
    }
}

/// Splits a flat JSON object of scalars into ordered key/value pairs (the server writes them).
func parseFlatJSON(_ text: String) -> [(String, String)] {
    var out: [(String, String)] = []
    var body = text.trimmingCharacters(in: " \n{}")
    while !body.isEmpty {
        guard body.first == "\"", let keyEnd = body.dropFirst().firstIndex(of: "\"") else { break }
        let key = String(body[body.index(after: body.startIndex)..<keyEnd])
        body = String(body[body.index(after: keyEnd)...]).trimmingCharacters(in: " :")
        var value = ""
        if body.first == "\"" {
            var escaped = false
            var end = body.index(after: body.startIndex)
            while end < body.endIndex {
                let c = body[end]
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { break }
                end = body.index(after: end)
            }
            value = String(body[body.index(after: body.startIndex)..<min(end, body.endIndex)])
            body = end < body.endIndex ? String(body[body.index(after: end)...]) : ""
        } else {
            let end = body.firstIndex(of: ",") ?? body.endIndex
            value = String(body[..<end])
            body = String(body[end...])
        }
        out.append((key, value))
        body = body.trimmingCharacters(in: " ,")
    }
    return out
}
