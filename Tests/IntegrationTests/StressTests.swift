import Foundation
import PyzfsTestSupport
import Testing

/// Many processes at once, some killed mid-read: the server stays up, serves only right bytes,
/// and stays within its memory budget. `make stress` runs it longer (PYZFS_STRESS_SECONDS).
@Suite("Stress", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct StressTests {
    static let seconds = ProcessInfo.processInfo.environment["PYZFS_STRESS_SECONDS"].flatMap(Double.init) ?? 10

    @Test("16 processes importing and reading random ranges, some killed mid-read", .timeLimit(.minutes(30)),
          arguments: ["deflate", "stored"])
    func sixteenReaders(fixture: String) throws {
        let archive = Fixtures.shared.archive(fixture)
        let logDir = makeTemporaryDirectory("log")
        defer { removeTree(logDir) }
        // A cache smaller than the archive's members together: eviction under load.
        try withMount(archive, options: ["cache_size=1M", "log=\(logDir)/log"]) { mnt in
            let r = run(["python3", TestEnvironment.fixturesScripts + "/stress.py", mnt, archive, "\(Self.seconds)", "16"],
                        timeout: Self.seconds + 300)
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("mismatches 0 errors 0"), "\(r.stdout)")
            let stats = readStats(mnt)
            #expect(stats["pid"] != nil, "the server is gone")
            #expect((stats["bytes_held"] as? Int ?? Int.max) <= 1 << 20, "\(stats)")
        }
        let log = (try? String(contentsOfFile: logDir + "/log", encoding: .utf8)) ?? ""
        #expect(!log.contains("cannot read"), "\(log)")
    }
}
