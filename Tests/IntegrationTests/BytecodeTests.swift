import Foundation
import PyzfsTestSupport
import Testing

/// CPython uses bytecode from a mount: pycs in the archive stay valid whatever the DOS time
/// rounding and time zone, and archives without pycs are compiled once per mount.
@Suite("Bytecode from a mount", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct BytecodeTests {
    /// Imports the test package from `mount` and prints how many of its modules were compiled
    /// from source (audit event "compile" for a file under the mount) and how many were imported.
    static let counter = """
    import sys
    mount = sys.argv[1]
    compiled = []
    sys.addaudithook(lambda event, args: compiled.append(args[1]) if event == "compile" and str(args[1]).startswith(mount) else None)
    sys.path.insert(0, mount)
    import bcpkg
    print(len(compiled), len([m for m in sys.modules if m.startswith("bcpkg")]))
    """

    /// (compiled, imported) for one interpreter run; bytecode writing allowed, as users have it.
    func importCounts(_ mount: String) -> (Int, Int) {
        var env = ProcessInfo.processInfo.environment
        env["PYTHONDONTWRITEBYTECODE"] = nil
        let r = run(["env", "-u", "PYTHONDONTWRITEBYTECODE", "python3", "-c", Self.counter, mount])
        let parts = r.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard r.status == 0, parts.count == 2 else {
            Issue.record("python3 failed: \(r)")
            return (-1, -1)
        }
        return (parts[0], parts[1])
    }

    @Test("pycs in the archive are used: nothing compiled, in other time zones too", arguments: ["UTC", "Asia/Kolkata", "America/St_Johns"])
    func archivePycsAreValid(zone: String) throws {
        let archive = Fixtures.shared.archive("pycs")
        try withMount(archive, environment: ["TZ": zone]) { mnt in
            let (compiled, imported) = importCounts(mnt)
            #expect(imported == 41)
            #expect(compiled == 0, "the server in TZ=\(zone) served sources whose pycs CPython found stale")
            // An archive with its bytecode is a read-only kernel mount.
            #expect(mountRecord(mnt).split(separator: " ")[3].split(separator: ",").contains("ro"))
        }
    }

    @Test("a source edited after its pyc, same length: the new code runs, as from the archive itself", arguments: ["UTC", "Asia/Kolkata"])
    func stalePycIsRecompiled(zone: String) throws {
        let archive = Fixtures.shared.archive("stalepyc")
        #expect(run(["python3", archive]).stdout == "new\n", "zipimport runs the edited source")
        try withMount(archive, environment: ["TZ": zone]) { mnt in
            let r = run(["env", "-u", "PYTHONDONTWRITEBYTECODE", "python3", mnt])
            #expect(r.status == 0 && r.stdout == "new\n", "the stale pyc ran from the mount: \(r)")
        }
    }

    @Test("without pycs, each module is compiled once per mount and later processes load bytecode")
    func compiledOncePerMount() throws {
        let archive = Fixtures.shared.archive("nopycs")
        try withMount(archive) { mnt in
            let first = importCounts(mnt)
            #expect(first.1 == 41)
            #expect(first.0 == 41, "the first process compiles every module")
            let second = importCounts(mnt)
            #expect(second.0 == 0, "the second process found the bytecode the first one wrote")
            #expect(second.1 == 41)
            let stats = readStats(mnt)
            #expect(stats["pycs_written"] as? Int == 41, "\(stats)")
            // The mount accepts bytecode and nothing else.
            for argv in [["touch", mnt + "/bcpkg/new.py"], ["sh", "-c", "echo x > \(mnt)/bcpkg/__pycache__/x.txt"],
                         ["rm", mnt + "/bcpkg/m00.py"], ["sh", "-c", "echo x > \(mnt)/bcpkg/__pycache__/m00.cpython-311.pyc"],
                         ["mkdir", mnt + "/bcpkg/other"], ["rm", "-f", mnt + "/bcpkg/__pycache__/m00.cpython-311.pyc"]] {
                let w = run(argv)
                #expect(w.status != 0 && w.stderr.contains("Read-only file system"), "\(argv): \(w)")
            }
            #expect(mountRecord(mnt).contains("nosuid,nodev"))
        }
    }

    @Test("-o pycache=off keeps such an archive read-only: every process compiles")
    func pycacheOff() throws {
        let archive = Fixtures.shared.archive("nopycs")
        try withMount(archive, options: ["pycache=off"]) { mnt in
            #expect(importCounts(mnt).0 == 41)
            #expect(importCounts(mnt).0 == 41)
            #expect(mountRecord(mnt).split(separator: " ")[3].split(separator: ",").contains("ro"))
        }
    }

    @Test("the bytecode budget is a bound: past it CPython just does not cache")
    func pycacheBudget() throws {
        let archive = Fixtures.shared.archive("nopycs")
        try withMount(archive, options: ["pycache=memory", "pycache_size=2k"]) { mnt in
            #expect(importCounts(mnt).1 == 41)
            let stats = readStats(mnt)
            #expect((stats["pycache_bytes"] as? Int ?? Int.max) <= 2048, "\(stats)")
            #expect(importCounts(mnt).0 > 0)
        }
    }
}
