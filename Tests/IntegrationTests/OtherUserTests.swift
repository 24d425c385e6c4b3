import Foundation
import Glibc
import PyzfsCore
import PyzfsTestSupport
import Testing

/// What other users and an explicit `ro` can do to a mount: real mounts, a real second uid.
@Suite("Other users and ro", .enabled(if: TestEnvironment.canMount, Comment(rawValue: TestEnvironment.mountUnavailableReason ?? "")))
struct OtherUserTests {
    /// An archive without pycs whose directories claim mode 0777 and whose files claim 0666.
    static func worldWritableArchive() -> (path: String, directory: String) {
        let directory = makeTemporaryDirectory("other-user")
        let path = directory + "/app.pyz"
        let script = """
        import sys, zipfile
        def add(z, name, data, mode):
            info = zipfile.ZipInfo(name, (2024, 5, 17, 13, 37, 42))
            info.create_system = 3
            info.external_attr = mode << 16
            z.writestr(info, data)
        with zipfile.ZipFile(sys.argv[1], "w") as z:
            add(z, "pkg/", b"", 0o040777)
            add(z, "pkg/__pycache__/", b"", 0o040777)
            add(z, "pkg/__init__.py", b"", 0o100666)
            add(z, "pkg/mod.py", b"X = 41\\n", 0o100666)
            add(z, "__main__.py", b"import pkg.mod\\nprint(pkg.mod.X + 1)\\n", 0o100666)
        """
        let r = run(["python3", "-c", script, path])
        precondition(r.status == 0, "cannot make the archive: \(r)")
        return (path, directory)
    }

    /// An interpreter another user can run (a pyenv shim under /root is not one).
    static let sharedPython = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "python3"

    /// Runs Python `code` (with the mount point as argv[1]) as uid/gid 65534, no groups.
    func runAsNobody(_ code: String, _ mnt: String) -> RunResult {
        run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Self.sharedPython, "-c", code, mnt])
    }

    /// Creates `path` exclusively and writes `bytes` (no temporary and rename, as
    /// FileManager.createFile would do); the errno when it fails.
    func createFile(_ path: String, _ bytes: [UInt8]) -> Int32? {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        if fd < 0 { return errno }
        defer { close(fd) }
        return write(fd, bytes, bytes.count) == bytes.count ? nil : errno
    }

    /// Tries every change another user could attempt and prints one line per attempt:
    /// `NAME ok` when it succeeded, else `NAME ERRNO-NAME`.
    static let attempts = """
    import errno, os, sys
    m = sys.argv[1]
    pc = m + "/pkg/__pycache__"
    def attempt(name, f):
        try:
            f()
            print(name, "ok")
        except OSError as e:
            print(name, errno.errorcode.get(e.errno, e.errno))
    def create(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    attempt("create-pyc", lambda: create(pc + "/mod.cpython-311.pyc"))
    attempt("create-temporary", lambda: create(pc + "/mod.cpython-311.pyc.4242"))
    attempt("mkdir-pycache", lambda: os.mkdir(m + "/__pycache__"))
    attempt("mkdir-in-pkg", lambda: os.mkdir(m + "/pkg/x"))
    attempt("rename-owners", lambda: os.rename(pc + "/owner.cpython-311.pyc.1", pc + "/owner.cpython-311.pyc"))
    attempt("unlink-owners", lambda: os.unlink(pc + "/owner.cpython-311.pyc.1"))
    attempt("write-owners", lambda: os.close(os.open(pc + "/owner.cpython-311.pyc.1", os.O_WRONLY)))
    attempt("unlink-member", lambda: os.unlink(m + "/pkg/mod.py"))
    attempt("rename-member", lambda: os.rename(m + "/pkg/mod.py", m + "/pkg/other.py"))
    attempt("rmdir-pycache", lambda: os.rmdir(pc))
    """

    @Test("another user reads an allow_other mount with 0777 directories but can change nothing; its owner can", arguments: [
        // The kernel's permission check (modes shown without group/other write) refuses first...
        ["allow_other", "pycache=memory"],
        // ...and with uid= giving the other user the files, the server's caller check does.
        ["allow_other", "pycache=memory", "uid=65534", "gid=65534"],
    ])
    func otherUser(options: [String]) throws {
        let (archive, directory) = Self.worldWritableArchive()
        defer { removeTree(directory) }
        try withMount(archive, options: options) { mnt in
            // First the other user reads: the test cannot pass by being locked out of the mount.
            let read = runAsNobody("import sys; print(open(sys.argv[1] + '/pkg/mod.py').read(), end='')", mnt)
            #expect(read.status == 0 && read.stdout == "X = 41\n", "\(read)")
            #expect(runAsNobody("import os, sys; print(sorted(os.listdir(sys.argv[1] + '/pkg')))", mnt).stdout
                    == "['__init__.py', '__pycache__', 'mod.py']\n")

            // The owner (root, who ran pyzfs mount) leaves a temporary for the other user to try.
            let pc = mnt + "/pkg/__pycache__"
            let temporary = pc + "/owner.cpython-311.pyc.1"
            let created = createFile(temporary, [1, 2, 3])
            #expect(created == nil, "the owner cannot create in \(pc): \(created.map(errnoText) ?? "")")

            let r = runAsNobody(Self.attempts, mnt)
            #expect(r.status == 0, "\(r)")
            let lines = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            #expect(lines.count == 10, "\(r)")
            for line in lines where line.count == 2 {
                #expect(["EACCES", "EPERM", "EROFS"].contains(line[1]), "another user could \(line[0]): \(line[1])")
            }
            // Nothing of the other user's is there, and the owner's file is untouched.
            #expect(!FileManager.default.fileExists(atPath: pc + "/mod.cpython-311.pyc"))
            #expect(!FileManager.default.fileExists(atPath: pc + "/mod.cpython-311.pyc.4242"))
            #expect(!FileManager.default.fileExists(atPath: mnt + "/__pycache__"))
            #expect(FileManager.default.contents(atPath: temporary) == Data([1, 2, 3]))

            // The owner can finish importlib's sequence in the same directory.
            #expect(rename(temporary, pc + "/owner.cpython-311.pyc") == 0, "rename: \(errnoText(errno))")
            #expect(FileManager.default.contents(atPath: pc + "/owner.cpython-311.pyc") == Data([1, 2, 3]))
            #expect(mkdir(mnt + "/__pycache__", 0o755) == 0, "mkdir: \(errnoText(errno))")
        }
    }

    /// The options field of the mount at `mnt` in /proc/self/mountinfo ("ro,nosuid,...").
    func kernelOptions(_ mnt: String) -> [String] {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let line = info.split(separator: "\n").last { $0.split(separator: " ").dropFirst(4).first.map(String.init) == mnt }
        return line.map { $0.split(separator: " ")[5].split(separator: ",").map(String.init) } ?? []
    }

    @Test("an explicit ro is a read-only kernel mount with the overlay off; the default is rw with the overlay",
          arguments: [["ro"], ["ro", "dev", "suid"], ["ro", "pycache=memory"], []])
    func explicitReadOnly(options: [String]) throws {
        let (archive, directory) = Self.worldWritableArchive()
        defer { removeTree(directory) }
        let readOnly = options.contains("ro")
        try withMount(archive, options: options) { mnt in
            let kernel = kernelOptions(mnt)
            #expect(kernel.contains(readOnly ? "ro" : "rw"), "\(kernel)")
            #expect(kernel.contains("nosuid") && kernel.contains("nodev"), "\(kernel)")
            let made = mkdir(mnt + "/__pycache__", 0o755)
            let e = errno
            if readOnly {
                #expect(made != 0 && e == EROFS, "mkdir on an ro mount: \(made) \(errnoText(e))")
            } else {
                #expect(made == 0, "mkdir __pycache__ with the overlay: \(errnoText(e))")
                #expect(mkdir(mnt + "/other", 0o755) != 0 && errno == EROFS)
            }
            let l = run([TestEnvironment.binary, "list"])
            let fields = l.stdout.split(separator: "\n").first { $0.contains(mnt) }?.split(separator: "\t").map(String.init) ?? []
            #expect(fields.count == 4 && fields[2] == (readOnly ? "ro" : "rw,bytecode"), "\(l)")
            let j = run([TestEnvironment.binary, "list", "--json"])
            #expect(j.stdout.split(separator: "\n").first { $0.contains(mnt) }?
                .contains("\"mode\":\"\(readOnly ? "ro" : "rw")\",\"bytecode_overlay\":\(!readOnly)") == true, "\(j)")
        }
    }

    @Test("pyzfs run composes ro the same way: a read-only mount without the overlay", arguments: [true, false])
    func runReadOnly(readOnly: Bool) throws {
        let directory = makeTemporaryDirectory("run-ro")
        defer { removeTree(directory) }
        let archive = directory + "/app.pyz"
        let script = """
        import sys, zipfile
        with zipfile.ZipFile(sys.argv[1], "w") as z:
            z.writestr("mod.py", "X = 1\\n")
            z.writestr("__main__.py", "import os\\nprint(os.statvfs(os.path.dirname(__file__)).f_flag & os.ST_RDONLY)\\n")
        """
        #expect(run(["python3", "-c", script, archive]).status == 0)
        let r = run([TestEnvironment.binary, "run"] + (readOnly ? ["-o", "ro"] : []) + [archive], timeout: 120)
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout == (readOnly ? "1\n" : "0\n"), "\(r)")
    }

    @Test("a user's mount and unmount use the fusermount3 found on PATH when /usr/bin has none (NixOS: /run/wrappers/bin)",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/fusermount3"),
                   "needs root (a private namespace that hides /usr/bin/fusermount3) and fusermount3 to copy"))
    func fusermountOnPath() throws {
        let dir = makeTemporaryDirectory("fusermount")
        defer { removeTree(dir) }
        chmod(dir, 0o755)
        let fm = FileManager.default
        for d in ["bin", "real", "mnt"] { try fm.createDirectory(atPath: dir + "/" + d, withIntermediateDirectories: false) }
        chown(dir + "/mnt", 65534, 65534)
        // The setuid copy, and before it on PATH a wrapper that records its arguments.
        try fm.copyItem(atPath: "/usr/bin/fusermount3", toPath: dir + "/real/fusermount3")
        chmod(dir + "/real/fusermount3", 0o4755)
        try "#!/bin/sh\necho \"$*\" >> \(dir)/calls\nexec \(dir)/real/fusermount3 \"$@\"\n".write(toFile: dir + "/bin/fusermount3", atomically: false, encoding: .utf8)
        chmod(dir + "/bin/fusermount3", 0o755)
        _ = fm.createFile(atPath: dir + "/calls", contents: nil, attributes: [.posixPermissions: 0o666])
        try fm.copyItem(atPath: Fixtures.shared.archive("zipapp"), toPath: dir + "/app.pyz")
        chmod(dir + "/app.pyz", 0o644)
        // A /dev/fuse that user may open (libfuse tries mount(2) first and then fusermount3; it does
        // not fall back when /dev/fuse cannot be opened), and no fusermount3 in /usr/bin.
        #expect(run(["mknod", "-m", "0666", dir + "/fuse", "c", "10", "229"]).status == 0)
        let user = "setpriv --reuid=65534 --regid=65534 --clear-groups"
        let script = """
        mount --bind \(dir)/fuse /dev/fuse && mount --bind /dev/null /usr/bin/fusermount3 || exit 90
        export PATH=\(dir)/bin:/usr/bin:/bin
        \(user) \(TestEnvironment.binary) mount \(dir)/app.pyz \(dir)/mnt; echo "mount $?"
        grep -c " \(dir)/mnt fuse.pyzfs .*user_id=65534" /proc/self/mounts
        \(user) \(TestEnvironment.binary) unmount \(dir)/mnt; echo "unmount $?"
        grep -c " \(dir)/mnt " /proc/self/mounts
        """
        // A PID namespace: whatever happens, its server dies with the script, and the mount with it.
        let r = run(inPrivateNamespace(script, pidNamespace: true), timeout: 60)
        #expect(r.stdout == "mount 0\n1\nunmount 0\n0\n", "\(r)")
        let calls = (try? String(contentsOfFile: dir + "/calls", encoding: .utf8)) ?? ""
        #expect(calls.contains("-- \(dir)/mnt\n") && calls.contains("-u \(dir)/mnt\n"), "fusermount3 on PATH ran: \(calls)")
    }

    /// A new directory that uid 65534 can traverse, holding `app.pyz` (runapp, readable by all)
    /// and `fuse`, a /dev/fuse node anyone may open (to bind over /dev/fuse in a namespace).
    static func userWorkspace(_ tag: String) throws -> String {
        let dir = makeTemporaryDirectory(tag)
        chmod(dir, 0o755)
        try FileManager.default.copyItem(atPath: Fixtures.shared.archive("runapp"), toPath: dir + "/app.pyz")
        chmod(dir + "/app.pyz", 0o644)
        let node = run(["mknod", "-m", "0666", dir + "/fuse", "c", "10", "229"])
        guard node.status == 0 else { throw HarnessError("cannot make \(dir)/fuse: \(node)") }
        return dir
    }

    @Test("a normal user runs an app: through a user namespace, and with --no-namespace through fusermount3; without access to /dev/fuse one line names the cause and the fallback",
          .enabled(if: getuid() == 0, "needs root to make a /dev/fuse node in a private mount namespace"))
    func normalUserRuns() throws {
        let dir = try Self.userWorkspace("user-run")
        defer { removeTree(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/cache", withIntermediateDirectories: false)
        chown(dir + "/cache", 65534, 65534)
        let user = "setpriv --reuid=65534 --regid=65534 --clear-groups env -u XDG_RUNTIME_DIR XDG_CACHE_HOME=\(dir)/cache"
        let app = "\(TestEnvironment.binary) run"
        // The device as on Debian desktops (0666) for the first two; then this machine's 0600.
        let script = """
        mount --bind \(dir)/fuse /dev/fuse || exit 90
        \(user) \(app) \(dir)/app.pyz -- print ns; echo "namespace $?"
        \(user) \(app) --no-namespace \(dir)/app.pyz -- print plain; echo "no-namespace $?"
        chmod 0600 \(dir)/fuse
        \(user) \(app) \(dir)/app.pyz -- print refused; echo "refused $?"
        \(user) \(app) --fallback=extract \(dir)/app.pyz -- print extracted; echo "extracted $?"
        """
        let r = run(inPrivateNamespace(script, pidNamespace: true), timeout: 120)
        for expected in ["args ['ns']", "namespace 0", "args ['plain']", "no-namespace 0", "refused 125", "args ['extracted']",
                         "mount \(dir)/cache/pyzfs/", "extracted 0"] {
            #expect(r.stdout.contains(expected), "\(expected): \(r)")
        }
        #expect(!r.stdout.contains("args ['refused']"), "\(r)")
        #expect(r.stderr.contains("/dev/fuse cannot be opened (Permission denied)") && r.stderr.contains("--fallback=extract"), "\(r)")
    }

    @Test("a normal user's warm server: under XDG_RUNTIME_DIR/pyzfs (0700), reused by the next run, listed, ended by unmount --warm; nothing kept without XDG_RUNTIME_DIR",
          .enabled(if: getuid() == 0, "needs root to make a /dev/fuse node in a private mount namespace"))
    func normalUserWarmServer() throws {
        let dir = try Self.userWorkspace("user-warm")
        defer { removeTree(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/runtime", withIntermediateDirectories: false)
        chown(dir + "/runtime", 65534, 65534)
        chmod(dir + "/runtime", 0o700)
        let user = "setpriv --reuid=65534 --regid=65534 --clear-groups env PYZFS_KEEP=60 XDG_RUNTIME_DIR=\(dir)/runtime"
        let pyzfs = TestEnvironment.binary
        let script = """
        mount --bind \(dir)/fuse /dev/fuse || exit 90
        \(countPyzfsMounts)
        \(user) \(pyzfs) run \(dir)/app.pyz -- print one; echo "first $?"
        \(user) \(pyzfs) run \(dir)/app.pyz -- print two; echo "later $?"
        grep -c " \(dir)/runtime/pyzfs/[0-9a-f]*-[^ ]* fuse.pyzfs .*user_id=65534" /proc/self/mounts
        stat -c "mode %a" \(dir)/runtime/pyzfs
        \(user) \(pyzfs) list | grep -c ",warm"
        \(user) \(pyzfs) unmount --warm; echo "unmount $?"
        setpriv --reuid=65534 --regid=65534 --clear-groups env -u XDG_RUNTIME_DIR PYZFS_KEEP=60 \(pyzfs) run \(dir)/app.pyz -- print three; echo "unkept $?"
        pyzfs_mounts
        """
        let r = run(inPrivateNamespace(script, pidNamespace: true), timeout: 120)
        let mounts = r.stdout.split(separator: "\n").filter { $0.hasPrefix("args ") }.map { $0.components(separatedBy: " mount ").last?.split(separator: " ").first ?? "" }
        #expect(mounts.count == 3 && mounts[0] == mounts[1] && mounts[0].hasPrefix("\(dir)/runtime/pyzfs/") && mounts[2] != mounts[0], "\(r)")
        for expected in ["first 0\nargs", "later 0\n1\nmode 700\n1\nunmount 0\n", "unkept 0\n0\n"] {
            #expect(r.stdout.contains(expected), "\(expected): \(r)")
        }
    }

    @Test("a normal user with no writable scratch place (read-only /tmp) runs an app through a user namespace, its mount point in a private read-only tmpfs over /tmp; --no-namespace still refuses",
          .enabled(if: getuid() == 0, "needs root to make a /dev/fuse node and a read-only /tmp in a private mount namespace"))
    func normalUserWithoutScratch() throws {
        let dir = try Self.userWorkspace("user-no-scratch")
        defer { removeTree(dir) }
        let user = "setpriv --reuid=65534 --regid=65534 --clear-groups env -u TMPDIR -u XDG_RUNTIME_DIR"
        // The app is copied out of /tmp, which is then empty and read-only.
        let script = """
        mount --bind "$1/fuse" /dev/fuse && mount -t tmpfs none /mnt && cp "$1/app.pyz" /mnt/app.pyz && \(emptyReadOnlyTmp) || exit 90
        \(countPyzfsMounts)
        \(user) "$2" run /mnt/app.pyz -- scratch; echo "namespace $?"
        \(user) "$2" run --no-namespace /mnt/app.pyz -- scratch; echo "no-namespace $?"
        echo "left $(pyzfs_mounts)"
        """
        let r = run(inPrivateNamespace(script, [dir, TestEnvironment.binary], pidNamespace: true), timeout: 120)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 4, "\(r)")
        #expect(lines[0].hasPrefix("scratch /tmp ['pyzfs-run-") && lines[0].hasSuffix("'] True data from the mount")
                && lines[0].contains("'] True tmp ['pyzfs-run-"), "\(r)")
        #expect(lines[1...3] == ["namespace 0", "no-namespace 125", "left 0"], "\(r)")
        #expect(r.stderr.contains("no writable directory for the mount point (tried /tmp); set TMPDIR"), "\(r)")
    }
}
