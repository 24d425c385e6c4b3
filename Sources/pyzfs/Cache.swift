import ArgumentParser
import PyzfsApps
import PyzfsCore
import PyzfsRun
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
            for e in ExtractionCache.entries(root) {
                let state = e.isTemporary ? (ExtractionCache.isLocked(root + "/" + e.key + ".lock") ? "\t(being built or removed)" : "\t(stale: removed by pyzfs cache clean)")
                    : ExtractionCache.isLocked(root + "/" + e.name) ? "\t(in use)" : ""
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
            let (removed, failures) = ExtractionCache.clean(root, olderThanDays: olderThan) { print($0) }
            for failure in failures { writeAll(2, "pyzfs: \(failure.message)\n") }
            print("removed \(removed) cached app\(removed == 1 ? "" : "s") from \(root)")
            if !failures.isEmpty { throw ExitCode(Exit.failure) }
        }
    }
}
