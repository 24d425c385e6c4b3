import Foundation
import PyzfsTestSupport
import Testing

/// The built binary: help, validation, and each exit code, with one clear line and nothing mounted.
@Suite("Command line")
struct CLITests {
    let pyzfs = TestEnvironment.binary

    @Test func versionAndHelp() {
        let v = run([pyzfs, "--version"])
        #expect(v.status == 0 && v.stdout.hasPrefix("pyzfs "))
        let h = run([pyzfs, "--help"])
        #expect(h.status == 0)
        for word in ["mount", "unmount", "list", "stats", "syslog"] { #expect(h.stdout.contains(word), "\(word)") }
        let m = run([pyzfs, "mount", "--help"])
        for option in ["cache_size=", "uid=", "gid=", "umask=", "log=", "symlinks=", "allow_other", "-f", "-d", "syslog",
                       "read-only", "Exit codes"] {
            #expect(m.stdout.contains(option), "mount --help lacks \(option)")
        }
    }

    @Test("--version prints the version in VERSION and the commit of HEAD: pyzfs 0.1.0 (commit abc1234)")
    func versionNamesItsSource() throws {
        let version = try String(contentsOfFile: TestEnvironment.root + "/VERSION", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let head = run(["git", "-C", TestEnvironment.root, "rev-parse", "HEAD"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(head.count == 40, "git rev-parse HEAD in \(TestEnvironment.root): \(head)")
        let v = run([pyzfs, "--version"])
        #expect(v.status == 0, "\(v)")
        let line = v.stdout.trimmingCharacters(in: .newlines)
        let prefix = "pyzfs \(version) (commit "
        #expect(line.hasPrefix(prefix) && line.hasSuffix(")"), "\(line)")
        let commit = line.dropFirst(prefix.count).dropLast()
        #expect(commit.count >= 7 && head.hasPrefix(commit), "built from \(commit), HEAD is \(head): rebuild after committing")
    }

    /// Runs a mount that must fail; checks the code, the message and that nothing was mounted.
    func refused(_ argv: [String], code: Int32, says: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let before = pyzfsMounts(on: argv)
        let r = run([pyzfs] + argv, timeout: 60)
        #expect(r.status == code, "\(r)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(says), "\(r)", sourceLocation: sourceLocation)
        #expect(r.stderr.split(separator: "\n").count <= 2, "one clear line: \(r)", sourceLocation: sourceLocation)
        #expect(pyzfsMounts(on: argv) == before, "a refused command changed the mounts", sourceLocation: sourceLocation)
    }

    /// The pyzfs mounts on any of `paths` (other tests mount elsewhere at the same time).
    func pyzfsMounts(on paths: [String]) -> [String] {
        let text = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init).filter { line in
            let fields = line.split(separator: " ")
            return fields.count > 2 && fields[2] == "fuse.pyzfs" && paths.contains(String(fields[1]))
        }
    }

    @Test("bad archives and bad mount points are refused with their documented codes")
    func refusals() throws {
        let dir = makeTemporaryDirectory("cli")
        defer { removeTree(dir) }
        let mnt = dir + "/mnt"
        mkdir(mnt, 0o755)
        let good = Fixtures.shared.archive("deflate")
        _ = FileManager.default.createFile(atPath: dir + "/empty.pyz", contents: Data())
        _ = FileManager.default.createFile(atPath: dir + "/garbage.pyz", contents: Data((0..<70000).map { UInt8($0 % 251) }))
        _ = FileManager.default.createFile(atPath: dir + "/file", contents: Data("x".utf8))
        let zipData = try Data(contentsOf: URL(fileURLWithPath: good))
        _ = FileManager.default.createFile(atPath: dir + "/truncated.zip", contents: zipData.prefix(zipData.count / 2))
        var broken = zipData
        if let r = broken.range(of: Data([0x50, 0x4b, 0x01, 0x02])) { broken[r.lowerBound + 1] = 0 }
        _ = FileManager.default.createFile(atPath: dir + "/brokencd.zip", contents: broken)

        refused(["mount", dir + "/missing.pyz", mnt], code: 66, says: "cannot open archive \(dir)/missing.pyz: No such file or directory")
        refused(["mount", dir, mnt], code: 66, says: "Is a directory")
        refused(["mount", dir + "/empty.pyz", mnt], code: 65, says: "not a zip archive (the file is empty)")
        refused(["mount", dir + "/garbage.pyz", mnt], code: 65, says: "not a zip archive (no end-of-central-directory record)")
        refused(["mount", dir + "/truncated.zip", mnt], code: 65, says: "not a zip archive")
        refused(["mount", dir + "/brokencd.zip", mnt], code: 65, says: "the archive is damaged")
        refused(["mount", good, dir + "/nowhere"], code: 73, says: "does not exist; create it with: mkdir -p")
        refused(["mount", good, dir + "/file"], code: 73, says: "is not a directory")
        refused(["mount", good, mnt, "-o", "bogus_option"], code: 64, says: "unknown option 'bogus_option'")
        refused(["mount", good, mnt, "-o", "cache_size=big"], code: 64, says: "bad value for option 'cache_size'")
        refused(["unmount", mnt], code: 73, says: "is not a mount point")
        refused(["unmount", "/proc"], code: 73, says: "is not a pyzfs mount")
    }

    @Test("without /dev/fuse the mount is refused with code 69 and what would fix it",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse in a private mount namespace"))
    func noFUSEDevice() throws {
        let archive = Fixtures.shared.archive("zipapp")
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        // A private mount namespace with an empty /dev: nothing outside it changes.
        let r = run(inPrivateNamespace("\(hideFUSE) && exec \"$1\" mount \"$2\" \"$3\"", [pyzfs, archive, mnt]))
        #expect(r.status == 69, "\(r)")
        #expect(r.stderr.contains("cannot mount on \(mnt): there is no /dev/fuse; load the fuse module"), "\(r)")
        #expect(r.stderr.contains("--device /dev/fuse"), "\(r)")
        #expect(!isMountPoint(mnt))
    }

    @Test("a mount point already in use is refused", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
    func busyMountPoint() throws {
        let archive = Fixtures.shared.archive("zipapp")
        try withMount(archive) { mnt in
            refused(["mount", archive, mnt], code: 75, says: "is already a mount point (pyzfs already mounts \(archive) there)")
        }
    }

    @Test("a server killed with SIGKILL leaves ENOTCONN, which unmount clears", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
    func deadServer() throws {
        let archive = Fixtures.shared.archive("zipapp")
        let mnt = makeTemporaryDirectory("mnt")
        defer { unmountAndRemove(mnt) }
        #expect(run([pyzfs, "mount", archive, mnt]).status == 0)
        let pid = Int32(run([pyzfs, "list", "--json"]).stdout.split(separator: "\n")
            .first { $0.contains(mnt) }.flatMap { $0.split(separator: "\"pid\":").last?.split(separator: ",").first }.map(String.init) ?? "") ?? 0
        #expect(pid > 0)
        kill(pid, SIGKILL)
        #expect(eventually(timeout: 60) { kill(pid, 0) != 0 && run(["ls", mnt]).stderr.contains("Transport endpoint is not connected") })
        #expect(run([pyzfs, "list"]).stdout.contains("dead: pyzfs unmount \(mnt)"))
        refused(["mount", archive, mnt], code: 75, says: "is a dead mount")
        let u = run([pyzfs, "unmount", mnt])
        #expect(u.status == 0, "\(u)")
        #expect(u.stderr.contains("cleared the dead mount"))
        #expect(!isMountPoint(mnt))
    }

    @Test("-o with its value attached (-oallow_other,uid=N), as sshfs and fuse-zip take it: pyzfs mount and the default form",
          .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
    func joinedOptionValue() throws {
        let archive = Fixtures.shared.archive("zipapp")
        for (argv, owner) in [(["mount", "-ouid=4242", archive], 4242), ([archive, "-oallow_other,uid=4243"], 4243)] {
            let mnt = makeTemporaryDirectory("mnt")
            defer { unmountAndRemove(mnt) }
            // The mount point goes last, so that -o comes before and after an operand.
            let r = run([pyzfs] + argv + [mnt])
            #expect(r.status == 0, "\(argv): \(r)")
            let attributes = try? FileManager.default.attributesOfItem(atPath: mnt)
            #expect((attributes?[.ownerAccountID] as? NSNumber)?.intValue == owner, "\(argv): \(attributes ?? [:])")
        }
    }

    @Test("unmount through a symlink to the mount point, absolute or relative",
          .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
    func unmountThroughSymlink() throws {
        let archive = Fixtures.shared.archive("zipapp")
        let links = makeTemporaryDirectory("links")
        defer { removeTree(links) }
        for relative in [false, true] {
            let mnt = makeTemporaryDirectory("mnt")
            defer { unmountAndRemove(mnt) }
            #expect(run([pyzfs, "mount", archive, mnt]).status == 0)
            let link = links + "/link-\(relative)"
            let target = relative ? "../" + (mnt as NSString).lastPathComponent : mnt
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
            let u = run([pyzfs, "unmount", link])
            #expect(u.status == 0, "\(target): \(u)")
            #expect(!isMountPoint(mnt), "\(mnt) is still mounted")
        }
    }
}
