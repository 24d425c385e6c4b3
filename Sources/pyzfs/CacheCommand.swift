import ArgumentParser
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Manage the extraction cache of pyzfs run --fallback=extract.",
        subcommands: [List.self, Clean.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List cached apps: key, size, last use, archive.")
        func run() throws {
            let (root, _) = try ExtractionCache.root()
            print("cache: \(root)")
            for e in entries(root) {
                print("\(e.key)\t\(formatSize(e.bytes(in: root)))\t\(e.lastUse)\t\(e.archive(in: root))\(e.inUse ? "\t(in use)" : "")")
            }
        }
    }

    struct Clean: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove cached apps not in use.")
        @Option(help: "Only those unused for this many days.")
        var olderThan: Int?
        func run() throws {
            let (root, _) = try ExtractionCache.root()
            let now = time(nil)
            var removed = 0
            for e in entries(root) where !e.inUse {
                if let days = olderThan, now - e.mtime < days * 86400 { continue }
                let lock = open(root + "/" + e.key + ".lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
                guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else { if lock >= 0 { close(lock) }; continue }
                let errorNumber = ExtractionCache.removeTree(root + "/" + e.key)
                guard errorNumber == 0 else {
                    close(lock)
                    throw Failure(Exit.failure, "cannot remove \(root)/\(e.key): \(errnoText(errorNumber)); check who owns it")
                }
                unlink(root + "/" + e.key + ".manifest")
                unlink(root + "/" + e.key + ".lock")
                close(lock)
                removed += 1
            }
            print("removed \(removed) cached app\(removed == 1 ? "" : "s") from \(root)")
        }
    }

    /// A cached app: what `clean` needs. `list` asks for the rest (the size of the whole tree).
    struct Entry {
        let key: String
        let mtime: Int
        let inUse: Bool

        func archive(in root: String) -> String {
            let manifest = readSmallFile(root + "/" + key + ".manifest") ?? ""
            return manifest.split(separator: "\n").first { $0.hasPrefix("archive ") }.map { String($0.dropFirst(8)) } ?? "?"
        }

        func bytes(in root: String) -> UInt64 {
            ExtractionCache.diskUsage(root + "/" + key)
        }

        var lastUse: String {
            var t = time_t(mtime)
            var tm = Glibc.tm()
            localtime_r(&t, &tm)
            var buffer = [CChar](repeating: 0, count: 32)
            let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M", &tm)
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    static func entries(_ root: String) -> [Entry] {
        var out: [Entry] = []
        for name in directoryNames(root) ?? [] {
            guard name.hasSuffix(".manifest") else { continue }
            let key = String(name.dropLast(".manifest".count))
            var st = stat()
            guard stat(root + "/" + key, &st) == 0 else { continue }
            var lockBusy = false
            let lock = open(root + "/" + key + ".lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            if lock >= 0 {
                lockBusy = flock(lock, LOCK_EX | LOCK_NB) != 0
                close(lock)
            }
            out.append(Entry(key: key, mtime: Int(st.st_mtim.tv_sec), inUse: lockBusy))
        }
        return out.sorted { $0.mtime > $1.mtime }
    }
}
