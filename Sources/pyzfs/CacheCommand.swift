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
        static let configuration = CommandConfiguration(abstract: "List cached apps (key, size, last use, archive) and leftovers of builds.")
        func run() throws {
            let (root, _) = try ExtractionCache.root()
            print("cache: \(root)")
            for e in entries(root) {
                let state = e.isTemporary ? (isLocked(root + "/" + e.key + ".lock") ? "\t(being built or removed)" : "\t(stale: removed by pyzfs cache clean)")
                    : isLocked(root + "/" + e.name) ? "\t(in use)" : ""
                print("\(e.name)\t\(formatSize(ExtractionCache.diskUsage(root + "/" + e.name)))\t\(e.lastUse)\t\(e.archive(in: root))\(state)")
            }
        }
    }

    struct Clean: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove cached apps not in use, and leftovers of builds.")
        @Option(help: "Only apps unused for this many days (leftovers of builds go whatever their age).")
        var olderThan: Int?
        func run() throws {
            let (root, _) = try ExtractionCache.root()
            let now = time(nil)
            var removed = 0, failed = false
            let all = entries(root)
            let locks = (directoryNames(root) ?? []).filter { $0.hasSuffix(".lock") }.map { String($0.dropLast(5)) }
            for key in Set(all.map(\.key) + locks).sorted() {
                let entry = root + "/" + key
                do {
                    // Held for the key's whole cleaning: no build runs, so every leftover is stale.
                    guard let lock = try ExtractionCache.lock(entry + ".lock", LOCK_EX | LOCK_NB) else {
                        print("kept \(key): being built")
                        continue
                    }
                    defer { close(lock) }
                    if let e = all.first(where: { $0.name == key }), olderThan.map({ now - e.mtime >= $0 * 86400 }) ?? true {
                        if try ExtractionCache.discard(entry) {
                            removed += 1
                        } else {
                            print("kept \(key): in use by a running app (\(e.archive(in: root)))")
                        }
                    }
                    for e in all where e.key == key && e.isTemporary {
                        let errorNumber = ExtractionCache.removeTree(root + "/" + e.name)
                        guard errorNumber == 0 else { throw Failure(Exit.failure, "cannot remove \(root)/\(e.name): \(errnoText(errorNumber)); check who owns it") }
                    }
                    var st = stat()
                    if lstat(entry, &st) != 0 { unlink(entry + ".lock") }  // held by this process only
                } catch let failure as Failure {
                    writeAll(2, "pyzfs: \(failure.message)\n")
                    failed = true
                }
            }
            print("removed \(removed) cached app\(removed == 1 ? "" : "s") from \(root)")
            if failed { throw ExitCode(Exit.failure) }
        }
    }

    /// An entry (`KEY`) or a temporary directory (`KEY.tmp-XXXXXX`) of the cache.
    struct Entry {
        let name: String
        let mtime: Int
        var key: String { String(name.prefix { $0 != "." }) }
        var isTemporary: Bool { name.contains(".tmp-") }

        func archive(in root: String) -> String {
            let manifest = readSmallFile(root + "/" + name + "/manifest") ?? ""
            return manifest.split(separator: "\n").first { $0.hasPrefix("archive ") }.map { String($0.dropFirst(8)) } ?? "?"
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

    /// The entries and temporary directories in `root`, most recently used first.
    static func entries(_ root: String) -> [Entry] {
        var out: [Entry] = []
        for name in directoryNames(root) ?? [] where !name.contains(".") || name.contains(".tmp-") {
            var st = stat()
            guard lstat(root + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            out.append(Entry(name: name, mtime: Int(st.st_mtim.tv_sec)))
        }
        return out.sorted { $0.mtime > $1.mtime }
    }

    /// Whether someone holds a lock on `path`: on an entry's directory, an app that runs from
    /// it; on `KEY.lock`, a build or a clean.
    static func isLocked(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }
}
