import Foundation
import PyzfsTestSupport
import Testing

/// `pyzfs optimize --profile` and the preload of a start profile, through real mounts.
@Suite("Start profiles through a mount", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct ProfileTests {
    static let member = ".pyzfs-profile"

    func fixtures() throws -> String {
        let dir = makeTemporaryDirectory("profile")
        let made = run(["python3", TestEnvironment.fixturesScripts + "/make_profile_apps.py", dir])
        try #require(made.status == 0, "\(made)")
        return dir
    }

    /// The lines of `archive`'s start profile, or nil without one.
    func profileLines(_ archive: String) -> [String]? {
        let r = run(["python3", "-c", """
            import sys, zipfile
            z = zipfile.ZipFile(sys.argv[1])
            names = [i.filename for i in z.infolist()]
            if sys.argv[2] not in names: sys.exit(3)
            assert names.count(sys.argv[2]) == 1, names
            sys.stdout.write(z.read(sys.argv[2]).decode())
            """, archive, Self.member])
        return r.status == 0 ? r.stdout.split(separator: "\n").map(String.init) : nil
    }

    /// The stats once the preload has finished (it runs on the prefetch threads after the mount).
    func statsAfterPreload(_ mnt: String) -> [String: Any] {
        var stats: [String: Any] = [:]
        let done = eventually(timeout: 30) {
            stats = readStats(mnt)
            return stats["preload_pending"] as? Int == 0
        }
        #expect(done, "the preload did not finish: \(stats)")
        return stats
    }

    @Test("optimize --profile runs the app once and stores its first-read order, which no mount shows")
    func recordsTheReadOrder() throws {
        let dir = try fixtures()
        defer { removeTree(dir) }
        let out = dir + "/out.pyz"
        let o = run([TestEnvironment.binary, "optimize", "--profile", dir + "/app.pyz", out, "--", "one", "two"],
                    environment: ["PYTHONDONTWRITEBYTECODE": "1"])
        #expect(o.status == 0, "\(o)")
        #expect(o.stdout.contains("ran one two"), "the profiling run is the app's own, with its arguments: \(o)")
        let lines = try #require(profileLines(out), "no \(Self.member) in \(out)")
        #expect(lines.first == "pyzfs-profile 1")
        // The app reads c, a, b after its own modules (their unchecked-hash pycs), and never d.
        let data = lines.filter { $0.hasPrefix("pkg/data/") }
        #expect(data == ["pkg/data/c.txt", "pkg/data/a.txt", "pkg/data/b.txt"], "\(lines)")
        let main = try #require(lines.firstIndex(of: "__pycache__/__main__.cpython-311.pyc") ?? lines.firstIndex(where: { $0.hasPrefix("__pycache__/__main__.") }), "\(lines)")
        let firstData = try #require(lines.firstIndex(of: "pkg/data/c.txt"))
        #expect(main < firstData && lines.contains { $0.hasPrefix("pkg/__pycache__/__init__.") }, "\(lines)")
        #expect(!lines.contains(Self.member) && Set(lines).count == lines.count, "\(lines)")

        // Hidden from the tree: lookup, listing and a whole walk against zipfile's view.
        try withMount(out) { mnt in
            let s = run(["stat", mnt + "/" + Self.member])
            #expect(s.status != 0 && s.stderr.contains("No such file"), "\(s)")
            let ls = run(["ls", "-a", mnt])
            #expect(ls.status == 0 && !ls.stdout.contains(Self.member), "\(ls)")
            let walk = run(["python3", "-c", "import os, sys; print(sum(len(f) for _, _, f in os.walk(sys.argv[1])), [f for _, _, fs in os.walk(sys.argv[1]) for f in fs if 'pyzfs' in f])", mnt])
            #expect(walk.stdout.hasSuffix("[]\n"), "\(walk)")
            let c = run(["python3", TestEnvironment.fixturesScripts + "/check_mount.py", out, mnt, "--hidden", Self.member])
            #expect(c.status == 0, "\(c)")
        }

        // Optimizing again records anew: one profile, not two.
        let again = dir + "/again.pyz"
        let a = run([TestEnvironment.binary, "optimize", "--profile", out, again])
        #expect(a.status == 0, "\(a)")
        #expect(profileLines(again)?.filter { $0.hasPrefix("pkg/data/") } == data)
        // Arguments for the app without --profile are refused.
        #expect(run([TestEnvironment.binary, "optimize", dir + "/app.pyz", dir + "/x.pyz", "--", "one"]).status == 64)
    }

    @Test("a mount decodes the profile's members ahead of the app: its start then decodes nothing")
    func preloadsAhead() throws {
        let dir = try fixtures()
        defer { removeTree(dir) }
        let out = dir + "/out.pyz"
        try #require(run([TestEnvironment.binary, "optimize", "--profile", dir + "/app.pyz", out]).status == 0)
        let profiled = try #require(profileLines(out)).count - 1
        try withMount(out) { mnt in
            let before = statsAfterPreload(mnt)
            // Every profiled member is deflated: all decoded by the preload, plus the profile itself.
            #expect(before["preload_members"] as? Int == profiled && before["preloaded"] as? Int == profiled, "\(before)")
            #expect(before["decompressions"] as? Int == profiled + 1 && before["evictions"] as? Int == 0, "\(before)")
            let r = run(["python3", mnt])
            #expect(r.status == 0 && r.stdout == "ran\n", "\(r)")
            let after = readStats(mnt)
            #expect(after["decompressions"] as? Int == profiled + 1, "the start decoded what the preload had not: \(after)")
            #expect(after["misses"] as? Int == before["misses"] as? Int, "\(after)")
        }
        // Without a profile nothing is preloaded.
        let plain = dir + "/plain.pyz"
        try #require(run([TestEnvironment.binary, "optimize", dir + "/app.pyz", plain]).status == 0)
        try withMount(plain) { mnt in
            let s = statsAfterPreload(mnt)
            #expect(s["preload_members"] as? Int == 0 && s["preloaded"] as? Int == 0, "\(s)")
        }
        // Within the budget: a 64 KiB cache holds no 100 KB member, so the preload takes none on.
        try withMount(out, options: ["cache_size=64K"]) { mnt in
            let s = statsAfterPreload(mnt)
            #expect(s["evictions"] as? Int == 0, "\(s)")
            #expect(run(["python3", mnt]).stdout == "ran\n")
        }
    }

    @Test("hostile profiles (huge, garbage, foreign names, directories, itself) mount and serve correctly")
    func hostileProfiles() throws {
        let dir = try fixtures()
        defer { removeTree(dir) }
        // names.pyz names pkg/data/b.txt and a.txt among what it must not use.
        for (name, expected) in [("huge", 0), ("garbage", 0), ("names", 2)] {
            let archive = dir + "/\(name).pyz"
            try withMount(archive) { mnt in
                let s = statsAfterPreload(mnt)
                #expect(s["preload_members"] as? Int == expected && s["failures"] as? Int == 0, "\(name): \(s)")
                #expect(run(["stat", mnt + "/" + Self.member]).status != 0, "\(name)")
                let c = run(["python3", TestEnvironment.fixturesScripts + "/check_mount.py", archive, mnt, "--hidden", Self.member])
                #expect(c.status == 0, "\(name): \(c)")
                let r = run(["python3", mnt], environment: ["PYTHONDONTWRITEBYTECODE": "1"])
                #expect(r.status == 0 && r.stdout == "ran\n", "\(name): \(r)")
            }
        }
    }

    @Test("a member with a bad CRC named by the profile: the preload fails it, every read is EIO")
    func corruptMemberStaysFailed() throws {
        let dir = try fixtures()
        defer { removeTree(dir) }
        try withMount(dir + "/badcrc.pyz") { mnt in
            let s = statsAfterPreload(mnt)
            // Found by the preload, before any read: one failure; b.txt after it still preloaded.
            #expect(s["failures"] as? Int == 1 && s["read_errors"] as? Int == 0 && s["preloaded"] as? Int == 1, "\(s)")
            for _ in 0..<2 {
                let c = run(["cat", mnt + "/pkg/data/a.txt"])
                #expect(c.status != 0 && c.stderr.contains("Input/output error"), "\(c)")
            }
            let after = readStats(mnt)
            #expect(after["failures"] as? Int == 1 && after["decompressions"] as? Int == s["decompressions"] as? Int, "decoded again: \(after)")
            #expect(run(["cat", mnt + "/pkg/data/b.txt"]).stdout.hasPrefix("bbb"))
            let r = run(["python3", mnt], environment: ["PYTHONDONTWRITEBYTECODE": "1"])
            #expect(r.status != 0 && r.stderr.contains("Input/output error"), "\(r)")
        }
    }
}
