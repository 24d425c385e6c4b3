import Foundation
import PyzfsTestSupport
import Testing

/// make install, mount(8) with fstab entries, and the mount helper. These tests put pyzfs in
/// /usr/local/bin and /sbin for a moment (mount(8) resets PATH), and take it away after; they
/// run one at a time, and only where nothing of the same name is installed already.
@Suite("Deployment", .serialized, .enabled(if: TestEnvironment.canMount && getuid() == 0, "needs root and /dev/fuse for mount(8)"))
struct DeploymentTests {
    let pyzfs = TestEnvironment.binary
    static let manual = TestEnvironment.root + "/.build/plugins/GenerateManual/outputs/pyzfs/pyzfs.1"

    @Test("make install into a DESTDIR: binary, helpers, man page, completions, units; make uninstall removes them")
    func install() throws {
        let dest = makeTemporaryDirectory("destdir")
        defer { removeTree(dest) }
        let make = ["make", "-C", TestEnvironment.root, "install-files", "DESTDIR=\(dest)", "PREFIX=/usr", "PYZFS_BIN=\(pyzfs)"]
        let r = run(make)
        #expect(r.status == 0, "\(r)")
        let installed = dest + "/usr/bin/pyzfs"
        #expect(run([installed, "--version"]).stdout.hasPrefix("pyzfs "))
        for helper in ["mount.fuse.pyzfs", "mount.pyzfs"] {
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: dest + "/sbin/" + helper)) == "/usr/bin/pyzfs")
        }
        #expect(FileManager.default.fileExists(atPath: Self.manual), "make test generates the man page first (make manual)")
        let man = (try? String(contentsOfFile: dest + "/usr/share/man/man1/pyzfs.1", encoding: .utf8)) ?? ""
        #expect(man.contains(".Dt PYZFS 1") && man.contains("fallback"), "man page missing or incomplete")
        for c in ["/usr/share/bash-completion/completions/pyzfs", "/usr/share/zsh/site-functions/_pyzfs",
                  "/usr/share/fish/vendor_completions.d/pyzfs.fish"] {
            #expect(((try? String(contentsOfFile: dest + c, encoding: .utf8)) ?? "").contains("unmount"), "\(c)")
        }
        let unit = (try? String(contentsOfFile: dest + "/usr/lib/systemd/system/pyzfs@.service", encoding: .utf8)) ?? ""
        #expect(unit.contains("ExecStart=/usr/bin/pyzfs mount -f") && !unit.contains("@BINDIR@"))
        let u = run(["make", "-C", TestEnvironment.root, "uninstall", "DESTDIR=\(dest)", "PREFIX=/usr"])
        #expect(u.status == 0, "\(u)")
        #expect(!FileManager.default.fileExists(atPath: installed))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: dest + "/sbin/mount.fuse.pyzfs")) == nil)
    }

    /// Puts `pyzfs` at `path` for the duration of `body` (a copy, or a symlink to the binary).
    func installed<R>(at path: String, symlink: Bool = false, _ body: () throws -> R) throws -> R {
        try #require(!FileManager.default.fileExists(atPath: path), Comment(rawValue: "\(path) exists already: not replacing it"))
        if symlink {
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: pyzfs)
        } else {
            try FileManager.default.copyItem(atPath: pyzfs, toPath: path)
        }
        defer { unlink(path) }
        return try body()
    }

    @Test("mount -t fuse.pyzfs through mount.fuse3, an fstab line with mount --fstab, and umount")
    func mountCommand() throws {
        let archive = Fixtures.shared.archive("zipapp")
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        try installed(at: "/usr/local/bin/pyzfs") {
            let m = run(["mount", "-t", "fuse.pyzfs", archive, mnt, "-o", "allow_other"])
            #expect(m.status == 0, "\(m)")
            #expect(mountRecord(mnt).contains("fuse.pyzfs") && mountRecord(mnt).contains("allow_other"), "\(mountRecord(mnt))")
            #expect(run(["python3", mnt]).stdout == "zipapp ran 7\n")
            let u = run(["umount", mnt])
            #expect(u.status == 0 && !isMountPoint(mnt), "\(u)")

            let fstab = makeTemporaryDirectory("fstab") + "/fstab"
            defer { removeTree((fstab as NSString).deletingLastPathComponent) }
            try "\(archive)  \(mnt)  fuse.pyzfs  allow_other,nofail,x-systemd.automount,_netdev  0 0\n"
                .write(toFile: fstab, atomically: true, encoding: .utf8)
            let f = run(["mount", "--fstab", fstab, mnt])
            #expect(f.status == 0, "\(f)")
            #expect(isMountPoint(mnt))
            #expect(run(["umount", mnt]).status == 0)
        }
    }

    @Test("the /sbin helper: no dev,suid to override, -t pyzfs, mount -f, mount(8)'s exit codes")
    func helper() throws {
        let archive = Fixtures.shared.archive("zipapp")
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        try installed(at: "/sbin/mount.fuse.pyzfs", symlink: true) {
            try installed(at: "/sbin/mount.pyzfs", symlink: true) {
                let m = run(["mount", "-t", "fuse.pyzfs", archive, mnt])
                #expect(m.status == 0 && !m.stderr.contains("ignored"), "\(m)")
                #expect(run(["umount", mnt]).status == 0)
                let p = run(["mount", "-t", "pyzfs", archive, mnt, "-o", "ro"])
                #expect(p.status == 0 && isMountPoint(mnt), "\(p)")
                #expect(run(["umount", mnt]).status == 0)
                let fake = run(["mount", "-f", "-t", "pyzfs", archive, mnt])
                #expect(fake.status == 0 && !isMountPoint(mnt), "\(fake)")
                let bad = run(["mount", "-t", "pyzfs", "/nonexistent.pyz", mnt])
                #expect(bad.status == 32 && bad.stderr.contains("cannot open archive"), "\(bad)")
            }
        }
    }

    static let analyzer = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test("the systemd units verify", .enabled(if: analyzer != nil, "systemd-analyze is not installed on this machine"))
    func units() throws {
        let dir = makeTemporaryDirectory("units")
        defer { removeTree(dir) }
        let template = try String(contentsOfFile: TestEnvironment.root + "/mount-helpers/pyzfs@.service", encoding: .utf8)
        try template.replacingOccurrences(of: "@BINDIR@", with: (pyzfs as NSString).deletingLastPathComponent)
            .write(toFile: dir + "/pyzfs@.service", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: TestEnvironment.root + "/mount-helpers/opt-app.mount", toPath: dir + "/opt-app.mount")
        // Documentation=man:pyzfs(1) is checked too: give man the generated page.
        try FileManager.default.createDirectory(atPath: dir + "/man/man1", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.manual, toPath: dir + "/man/man1/pyzfs.1")
        let r = run([Self.analyzer!, "verify", dir + "/pyzfs@demo.service", dir + "/opt-app.mount"],
                    environment: ["MANPATH": dir + "/man:"])
        #expect(r.status == 0, "\(r)")
    }
}
