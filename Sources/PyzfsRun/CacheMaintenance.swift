import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// `pyzfs cache list` and `clean`: the entries of the cache root and their removal.
extension ExtractionCache {
    /// An entry (`KEY`) or a temporary directory (`KEY.tmp-XXXXXX`) of the cache.
    public struct Entry {
        public let name: String
        public let mtime: Int
        public var key: String { String(name.prefix { $0 != "." }) }
        public var isTemporary: Bool { name.contains(".tmp-") }

        public func archive(in root: String) -> String {
            let manifest = readSmallFile(root + "/" + name + "/manifest") ?? ""
            return manifest.split(separator: "\n").first { $0.hasPrefix("archive ") }.map { String($0.dropFirst(8)) } ?? "?"
        }

        public var lastUse: String {
            var t = time_t(mtime)
            var tm = Glibc.tm()
            localtime_r(&t, &tm)
            var buffer = [CChar](repeating: 0, count: 32)
            let n = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M", &tm)
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// The entries and temporary directories in `root`, most recently used first.
    public static func entries(_ root: String) -> [Entry] {
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
    public static func isLocked(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }

    /// Removes the entries not in use (only those unused for `olderThanDays`, when given) and
    /// every build leftover; `say` gets a line for each entry kept. Returns how many entries went
    /// and the failures (exit 1).
    public static func clean(_ root: String, olderThanDays olderThan: Int?, say: (String) -> Void) -> (removed: Int, failures: [Failure]) {
        let now = time(nil)
        var removed = 0
        var failures: [Failure] = []
        let all = entries(root)
        let locks = (directoryNames(root) ?? []).filter { $0.hasSuffix(".lock") }.map { String($0.dropLast(5)) }
        for key in Set(all.map(\.key) + locks).sorted() {
            let entry = root + "/" + key
            do throws(Failure) {
                // Held for the key's whole cleaning: no build runs, so every leftover is stale.
                guard let held = try lock(entry + ".lock", LOCK_EX | LOCK_NB) else {
                    say("kept \(key): being built")
                    continue
                }
                defer { close(held) }
                if let e = all.first(where: { $0.name == key }), olderThan.map({ now - e.mtime >= $0 * 86400 }) ?? true {
                    if try discard(entry) {
                        removed += 1
                    } else {
                        say("kept \(key): in use by a running app (\(e.archive(in: root)))")
                    }
                }
                for e in all where e.key == key && e.isTemporary {
                    let errorNumber = removeTree(root + "/" + e.name)
                    guard errorNumber == 0 else { throw Failure(Exit.failure, "cannot remove \(root)/\(e.name): \(errnoText(errorNumber)); check who owns it") }
                }
                var st = stat()
                if lstat(entry, &st) != 0 { unlink(entry + ".lock") }  // held by this process only
            } catch {
                failures.append(error)
            }
        }
        return (removed, failures)
    }
}
