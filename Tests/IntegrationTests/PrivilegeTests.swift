import Foundation
import Glibc
import PyzfsTestSupport
import Testing

/// A server run as root keeps only the capabilities serving needs
/// (docs/decisions/0005-privileges.md).
@Suite("Privileges of a root server",
       .enabled(if: TestEnvironment.canMount && geteuid() == 0,
                Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "the server drops privileges only as root")))
struct PrivilegeTests {
    /// CAP_DAC_READ_SEARCH (2) and CAP_SYS_ADMIN (21).
    static let kept: UInt64 = (1 << 2) | (1 << 21)

    /// Fields of /proc/PID/task/TID/status, for every thread of `pid`.
    func threadStatus(_ pid: Int32) -> [[String: String]] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.map { tid in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8)) ?? ""
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
            }
            return fields
        }
    }

    @Test("after mounting: no_new_privs, an empty bounding set, only DAC_READ_SEARCH and SYS_ADMIN; reads and SIGTERM's unmount still work")
    func dropped() throws {
        let directory = makeTemporaryDirectory("privileges")
        defer { removeTree(directory) }
        let archive = directory + "/app.zip"
        // A bzip2 member goes through libzip, which reopens the archive by /proc/self/fd/N at
        // its first read; owned by another user with mode 0600, that open needs DAC_READ_SEARCH.
        let script = """
        import sys, zipfile
        with zipfile.ZipFile(sys.argv[1], "w") as z:
            z.writestr("b.txt", "bzip2 member\\n" * 100, compress_type=zipfile.ZIP_BZIP2)
            z.writestr("d.txt", "deflated member\\n" * 100, compress_type=zipfile.ZIP_DEFLATED)
        """
        #expect(run(["python3", "-c", script, archive]).status == 0)
        #expect(chown(archive, 65534, 65534) == 0 && chmod(archive, 0o600) == 0)
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        let m = run([TestEnvironment.binary, "mount", archive, mnt])
        try #require(m.status == 0, "\(m)")

        let p = run(["python3", "-c", "import os, sys; print(os.getxattr(sys.argv[1], 'user.pyzfs.pid').decode())", mnt])
        let pid = Int32(p.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        try #require(pid > 0)

        // The bytes still come, through libzip's reopened handle too.
        #expect(FileManager.default.contents(atPath: mnt + "/b.txt") == Data(String(repeating: "bzip2 member\n", count: 100).utf8))
        #expect(FileManager.default.contents(atPath: mnt + "/d.txt") == Data(String(repeating: "deflated member\n", count: 100).utf8))

        let threads = threadStatus(pid)
        #expect(threads.count >= 2, "the server's threads: \(threads.count)")
        func hex(_ field: String?) -> UInt64? { field.flatMap { UInt64($0, radix: 16) } }
        for t in threads {
            #expect(t["NoNewPrivs"] == "1", "\(t["Name"] ?? "?"): NoNewPrivs \(t["NoNewPrivs"] ?? "-")")
            #expect(hex(t["CapBnd"]) == 0, "\(t["Name"] ?? "?"): CapBnd \(t["CapBnd"] ?? "-")")
            #expect(hex(t["CapAmb"]) == 0)
            #expect(hex(t["CapInh"]) == 0)
            #expect(hex(t["CapPrm"]) == Self.kept, "\(t["Name"] ?? "?"): CapPrm \(t["CapPrm"] ?? "-")")
            #expect(hex(t["CapEff"]) == Self.kept, "\(t["Name"] ?? "?"): CapEff \(t["CapEff"] ?? "-")")
        }

        // SIGTERM: the server unmounts itself with the CAP_SYS_ADMIN it kept, and exits.
        #expect(kill(pid, SIGTERM) == 0)
        #expect(eventually { !isMountPoint(mnt) }, "the server did not unmount")
        #expect(eventually { kill(pid, 0) != 0 }, "the server did not exit")
    }
}
