import Foundation
import PyzfsTestSupport
import Testing

/// `-o sha256=`: the archive is hashed at mount and a mismatch is refused before anything is
/// served; once mounted, any change of the file (its ctime, also with the mtime put back) fails
/// the reads that need it.
@Suite("sha256= pin", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct PinTests {
    let pyzfs = TestEnvironment.binary

    /// A zipapp of stored members, its SHA-256 by hashlib, and the offset of a.txt's data.
    func makeArchive(_ directory: String) throws -> (path: String, sha256: String, offsetOfA: UInt64) {
        let path = directory + "/app.pyz"
        let r = run(["python3", "-c", """
            import hashlib, sys, zipfile
            with zipfile.ZipFile(sys.argv[1], "w") as z:
                z.writestr("__main__.py", "print(open(__file__.rsplit('/', 1)[0] + '/b.txt').read())\\n")
                z.writestr("a.txt", "a" * 5000)
                z.writestr("b.txt", "the pinned bytes\\n")
            with zipfile.ZipFile(sys.argv[1]) as z:
                i = z.getinfo("a.txt")
                data = open(sys.argv[1], "rb").read()
                offset = i.header_offset + 30 + int.from_bytes(data[i.header_offset + 26:i.header_offset + 28], "little") \\
                    + int.from_bytes(data[i.header_offset + 28:i.header_offset + 30], "little")
            print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(), offset)
            """, path])
        try #require(r.status == 0, "\(r)")
        let f = r.stdout.split(separator: " ")
        return (path, String(f[0]), try #require(UInt64(f[1].trimmingCharacters(in: .whitespacesAndNewlines))))
    }

    /// Rewrites one byte at `offset` in place and puts the mtime back, to the nanosecond.
    func flipByte(_ path: String, at offset: UInt64) throws {
        let r = run(["python3", "-c", """
            import os, sys
            path, offset = sys.argv[1], int(sys.argv[2])
            st = os.stat(path)
            fd = os.open(path, os.O_RDWR)
            b = os.pread(fd, 1, offset)
            os.pwrite(fd, bytes([b[0] ^ 0x20]), offset)
            os.close(fd)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            """, path, "\(offset)"])
        try #require(r.status == 0, "\(r)")
    }

    func read(_ path: String) -> (data: String?, errno: Int32) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return (nil, errno) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = Glibc.read(fd, &buffer, buffer.count)
        return n < 0 ? (nil, errno) : (String(decoding: buffer[0..<n], as: UTF8.self), 0)
    }

    @Test("a wrong pin, or a one-byte change before mounting, is refused with 65 (125 for run); a bad value with 64")
    func refusedAtMount() throws {
        let dir = makeTemporaryDirectory("pin")
        defer { removeTree(dir) }
        let (archive, digest, offset) = try makeArchive(dir)
        let mountpoint = dir + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: false)
        let wrong = String(digest.reversed())
        let r = run([pyzfs, "mount", "-o", "sha256=\(wrong)", archive, mountpoint])
        #expect(r.status == 65 && r.stderr.contains("does not match -o sha256=\(wrong): its SHA-256 is \(digest)"), "\(r)")
        #expect(!isMountPoint(mountpoint))
        let bad = run([pyzfs, "mount", "-o", "sha256=1234", archive, mountpoint])
        #expect(bad.status == 64 && bad.stderr.contains("64 hexadecimal digits"), "\(bad)")
        let runWrong = run([pyzfs, "run", "-o", "sha256=\(wrong)", archive])
        #expect(runWrong.status == 125 && runWrong.stderr.contains("does not match"), "\(runWrong)")
        // The right pin, upper case as some tools print it, mounts and runs.
        let ran = run([pyzfs, "run", "-o", "sha256=\(digest.uppercased())", archive])
        #expect(ran.status == 0 && ran.stdout.contains("the pinned bytes"), "\(ran)")
        try flipByte(archive, at: offset)
        let changed = run([pyzfs, "mount", "-o", "sha256=\(digest)", archive, mountpoint])
        #expect(changed.status == 65 && changed.stderr.contains("does not match"), "\(changed)")
        #expect(!isMountPoint(mountpoint))
    }

    @Test("a change after mounting, with the mtime put back, fails reads with EIO only when pinned", arguments: [true, false])
    func changedAfterMount(pinned: Bool) throws {
        let dir = makeTemporaryDirectory("pin")
        defer { removeTree(dir) }
        let (archive, digest, offset) = try makeArchive(dir)
        try withMount(archive, options: pinned ? ["sha256=\(digest)"] : []) { mnt in
            #expect(read(mnt + "/a.txt").data?.count == 4096)
            // In a.txt, already read and verified: b.txt's own bytes and CRC are untouched, so
            // only the file's ctime tells that it changed.
            try flipByte(archive, at: offset + 100)
            let b = read(mnt + "/b.txt")
            if pinned {
                #expect(b.errno == EIO, "\(b)")
            } else {
                #expect(b.data == "the pinned bytes\n", "without a pin, size and mtime are what is compared: \(b)")
            }
            // What was read before the change is still served.
            #expect(read(mnt + "/a.txt").data?.count == 4096)
        }
    }

    @Test("under a pin, a new archive renamed over the path (the atomic deploy), a hard link or a chmod of the served file fails its later reads with EIO; what was read before is still served, the new file never",
          arguments: ["rename", "link", "chmod"])
    func deployChanges(change: String) throws {
        let dir = makeTemporaryDirectory("pin")
        defer { removeTree(dir) }
        let (archive, digest, _) = try makeArchive(dir)
        let replacement = dir + "/new.pyz"
        let built = run(["python3", "-c", """
            import sys, zipfile
            with zipfile.ZipFile(sys.argv[1], "w") as z:
                z.writestr("__main__.py", "")
                z.writestr("b.txt", "the new bytes\\n")
            """, replacement])
        try #require(built.status == 0, "\(built)")
        try withMount(archive, options: ["sha256=\(digest)"]) { mnt in
            #expect(read(mnt + "/a.txt").data?.count == 4096)
            switch change {
            // The file replaced loses its last link, which changes its ctime (measured on
            // ext4 and tmpfs): the mount's descriptor of it sees that.
            case "rename": #expect(rename(replacement, archive) == 0)
            case "link": #expect(link(archive, dir + "/hardlink.pyz") == 0)
            default: #expect(chmod(archive, 0o600) == 0)
            }
            let b = read(mnt + "/b.txt")
            #expect(b.errno == EIO, "\(change) changes the served file's ctime: \(b)")
            #expect(read(mnt + "/a.txt").data?.count == 4096, "read and verified before the change")
        }
    }
}
