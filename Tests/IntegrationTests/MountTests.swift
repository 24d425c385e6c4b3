import Foundation
import PyzfsTestSupport
import Testing

/// Real mounts of archives written by Python, compared member by member with zipfile's view.
@Suite("Real mounts", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct MountTests {
    static let checker = TestEnvironment.fixturesScripts + "/check_mount.py"

    func check(_ archive: String, mount: String, _ extra: [String] = []) {
        let r = run(["python3", Self.checker, archive, mount] + extra, timeout: 600)
        #expect(r.status == 0, "\(r)")
    }

    @Test("every name, kind, mode, size, mtime and byte agrees with zipfile", arguments: [
        "stored", "deflate", "bzip2", "catprefix", "zipapp", "notypebits", "dates1980", "nodirs", "many",
    ])
    func agreesWithZipfile(name: String) throws {
        let archive = Fixtures.shared.archive(name)
        try withMount(archive) { check(archive, mount: $0) }
    }

    @Test("in another time zone the DOS times are read in that zone, as zipfile does")
    func timeZones() throws {
        let archive = Fixtures.shared.archive("dates1980")
        let mountpoint = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mountpoint) }
        let r = run([TestEnvironment.binary, "mount", archive, mountpoint], environment: ["TZ": "Asia/Kolkata"])
        #expect(r.status == 0, "\(r)")
        let c = run(["python3", Self.checker, archive, mountpoint], environment: ["TZ": "Asia/Kolkata"])
        #expect(c.status == 0, "\(c)")
    }

    @Test("a member over 4 GiB (Zip64) reads whole, streamed within a small cache", .timeLimit(.minutes(10)))
    func over4GiB() throws {
        let archive = Fixtures.shared.archive("big")
        try withMount(archive, options: ["cache_size=64M"]) { mnt in
            check(archive, mount: mnt)
            let stats = readStats(mnt)
            #expect((stats["bytes_held"] as? Int ?? Int.max) <= 64 << 20)
        }
    }

    @Test("symlinks inside the tree work; links out of it are hidden unless -o symlinks=all")
    func symlinks() throws {
        let archive = Fixtures.shared.archive("symlinks")
        try withMount(archive) { mnt in
            check(archive, mount: mnt, ["--hidden", "escape", "--hidden", "absolute", "--hidden", "through"])
            #expect((try? String(contentsOfFile: mnt + "/inside", encoding: .utf8)) == "target\n")
            #expect((try? String(contentsOfFile: mnt + "/real/up", encoding: .utf8)) == "target\n")
        }
        try withMount(archive, options: ["symlinks=all"]) { mnt in
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: mnt + "/absolute")) == "/etc/passwd")
        }
    }

    @Test("a bad CRC is EIO with a log line; the other members still read")
    func badCRC() throws {
        let archive = Fixtures.shared.archive("badcrc")
        let (_, log) = try withLoggedMount(archive) { mnt in
            #expect(run(["cat", mnt + "/good.txt"]).stdout == "good\n")
            for bad in ["bad-stored.txt", "bad-deflated.txt"] {
                let r = run(["cat", mnt + "/" + bad])
                #expect(r.status != 0)
                #expect(r.stderr.contains("Input/output error"), "\(r)")
                // Every later read fails too: wrong bytes are never served.
                #expect(run(["cat", mnt + "/" + bad]).status != 0)
            }
        }
        #expect(log.contains("cannot read bad-stored.txt: CRC-32 mismatch"), "\(log)")
        #expect(log.contains("cannot read bad-deflated.txt: CRC-32 mismatch"), "\(log)")
    }

    @Test("a method the linked libraries cannot decode reads as EIO with a log line naming it")
    func unsupportedMethods() throws {
        let archive = Fixtures.shared.archive("methods")
        var lzmaReadable = false
        let (_, log) = try withLoggedMount(archive) { mnt in
            #expect(run(["cat", mnt + "/deflated.txt"]).stdout == "deflated\n")
            let u = run(["cat", mnt + "/unknown.bin"])
            #expect(u.status != 0 && u.stderr.contains("Input/output error"), "\(u)")
            let l = run(["cat", mnt + "/lzma.txt"])
            lzmaReadable = l.status == 0
            if lzmaReadable { #expect(l.stdout == String(repeating: "lzma member\n", count: 100)) }
        }
        #expect(log.contains("cannot read unknown.bin: compression method 97 (unknown) is not supported"), "\(log)")
        if !lzmaReadable {
            #expect(log.contains("cannot read lzma.txt: compression method 14 (lzma) is not supported"), "\(log)")
        }
    }

    @Test("renaming another file over the archive changes nothing the mount shows")
    func keepsTheArchiveItOpened() throws {
        let dir = makeTemporaryDirectory("rename")
        defer { removeTree(dir) }
        let archive = dir + "/app.zip"
        try FileManager.default.copyItem(atPath: Fixtures.shared.archive("deflate"), toPath: archive)
        try withMount(archive) { mnt in
            try FileManager.default.copyItem(atPath: Fixtures.shared.archive("nodirs"), toPath: dir + "/other.zip")
            #expect(rename(dir + "/other.zip", archive) == 0)
            check(Fixtures.shared.archive("deflate"), mount: mnt)
        }
    }

    @Test("-o rw,dev,suid still mounts read-only, nosuid and nodev, with a warning")
    func forcedFlags() throws {
        let archive = Fixtures.shared.archive("deflate")
        // pycache=off: this archive has no bytecode, which would otherwise be accepted into memory.
        let mountpoint = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mountpoint) }
        let r = run([TestEnvironment.binary, archive, mountpoint, "-o", "rw,dev,suid,pycache=off"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stderr.contains("option 'rw' ignored"))
        let record = mountRecord(mountpoint)
        let flags = Set(record.split(separator: " ")[3].split(separator: ","))
        #expect(flags.isSuperset(of: ["ro", "nosuid", "nodev"]), "\(record)")
        #expect(!flags.contains("rw"))
        #expect(record.contains("fuse.pyzfs"))
        // The kernel refuses writes on its own.
        for argv in [["touch", mountpoint + "/new"], ["mkdir", mountpoint + "/d"], ["rm", mountpoint + "/one.txt"],
                     ["sh", "-c", "echo x >> \(mountpoint)/one.txt"]] {
            let w = run(argv)
            #expect(w.status != 0 && w.stderr.contains("Read-only file system"), "\(argv): \(w)")
        }
    }

    @Test("list shows the mount with its server; unmount removes it")
    func listAndUnmount() throws {
        let archive = Fixtures.shared.archive("zipapp")
        try withMount(archive) { mnt in
            let l = run([TestEnvironment.binary, "list"])
            let line = l.stdout.split(separator: "\n").first { $0.contains(mnt) }
            let fields = line?.split(separator: "\t") ?? []
            #expect(fields.count == 4, "\(l)")
            #expect(fields.first.map(String.init) == archive)
            // The zipapp fixture has no pycs: pycache=auto gives the overlay, a rw kernel mount.
            #expect(fields.count == 4 && fields[2] == "rw,bytecode", "\(l)")
            let pid = Int32(fields.last.map(String.init) ?? "") ?? 0
            #expect(pid > 0 && kill(pid, 0) == 0)
            let j = run([TestEnvironment.binary, "list", "--json"])
            #expect(j.stdout.contains("\"mountpoint\":\"\(mnt)\"") && j.stdout.contains("\"alive\":true"))
            let u = run([TestEnvironment.binary, "unmount", mnt])
            #expect(u.status == 0, "\(u)")
            #expect(!isMountPoint(mnt))
            // The server exits once its mount is gone (its last threads take a while under load).
            #expect(eventually(timeout: 60) { kill(pid, 0) != 0 }, "the server \(pid) outlived its mount")
        }
    }

    @Test("many readers at once get the same bytes; each member is decompressed once")
    func concurrentReaders() throws {
        let archive = Fixtures.shared.archive("deflate")
        try withMount(archive) { mnt in
            let script = """
            import hashlib, os, sys, zipfile, concurrent.futures as cf
            z = zipfile.ZipFile(sys.argv[1]); mnt = sys.argv[2]
            want = {i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist() if not i.is_dir() and not i.filename.startswith("secret")}
            def read(name):
                with open(os.path.join(mnt, name), "rb") as f:
                    return hashlib.sha256(f.read()).hexdigest() == want[name]
            with cf.ThreadPoolExecutor(32) as ex:
                ok = all(ex.map(read, list(want) * 16))
            print("ok" if ok else "MISMATCH")
            """
            let r = run(["python3", "-c", script, archive, mnt])
            #expect(r.stdout == "ok\n", "\(r)")
            let stats = readStats(mnt)
            let compressed = 10  // deflated members with content in deflate.zip
            #expect((stats["decompressions"] as? Int ?? 99) <= compressed + 1, "\(stats)")
        }
    }
}

/// The line of /proc/self/mounts for a mount point.
func mountRecord(_ mountpoint: String) -> String {
    let text = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").map(String.init).last { $0.split(separator: " ").dropFirst().first.map(String.init) == mountpoint } ?? ""
}

/// The server's statistics, from `pyzfs stats --json`.
func readStats(_ mountpoint: String) -> [String: Any] {
    let r = run([TestEnvironment.binary, "stats", "--json", mountpoint])
    guard r.status == 0, let json = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return [:] }
    return json
}
