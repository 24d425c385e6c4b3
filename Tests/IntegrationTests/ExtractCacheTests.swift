import Foundation
import PyzfsTestSupport
import Testing

/// The extract fallback's cache (issue 11): locking, bounded extraction, layout, cleaning, key,
/// and the choice of its directory.
extension RunTests {
    /// The names in the cache directory `cache/pyzfs`.
    func cacheNames(_ cache: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: cache + "/pyzfs")) ?? []
    }

    /// The paths of deepapp's `f.txt` files extracted into `cache/pyzfs` (1,800 when whole).
    func deepFiles(_ cache: String) -> [Substring] {
        run(["find", cache + "/pyzfs", "-name", "f.txt", "-type", "f"]).stdout.split(separator: "\n")
    }

    @Test("a start never waits for a running app; cache list and clean see the app's entry in use and keep it",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse"))
    func startsDoNotWaitForApps() throws {
        let cache = makeTemporaryDirectory("cache"), release = makeTemporaryDirectory("release") + "/go"
        defer { removeTree(cache) }
        let environment = ["XDG_CACHE_HOME": cache]
        let pid = pidFile()
        let holder = spawn(withoutFUSECommand(["--fallback=extract", app, "--", "hold", pid, release]), environment: environment)
        defer { _ = FileManager.default.createFile(atPath: release, contents: nil); holder.wait() }
        #expect(eventually(timeout: 60) { FileManager.default.fileExists(atPath: pid) }, "\(holder.stderr)")
        let second = withoutFUSE(["--fallback=extract", app, "--", "exit", "7"], environment: environment, timeout: 60)
        #expect(second.status == 7, "\(second)")
        let list = run([pyzfs, "cache", "list"], environment: environment)
        #expect(list.stdout.contains("(in use)"), "\(list)")
        let kept = run([pyzfs, "cache", "clean"], environment: environment)
        #expect(kept.status == 0 && kept.stdout.contains("in use by a running app") && kept.stdout.contains("removed 0 cached apps"), "\(kept)")
        _ = FileManager.default.createFile(atPath: release, contents: nil)
        #expect(holder.wait() == 0 && holder.stdout.contains("data from the mount"), "\(holder.stdout) \(holder.stderr)")
        let removed = run([pyzfs, "cache", "clean"], environment: environment)
        #expect(removed.stdout.contains("removed 1 cached app"), "\(removed)")
        #expect(cacheNames(cache).isEmpty, "\(cacheNames(cache))")
    }

    @Test("with ulimit -n 64 a tree 1,500 directories deep and 300 wide extracts whole; a failed write fails the start and leaves no entry",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse"))
    func boundedExtraction() throws {
        let deep = Fixtures.shared.archive("deepapp")
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        let r = withoutFUSE(["--fallback=extract", deep], environment: ["XDG_CACHE_HOME": cache], prelude: "ulimit -n 64 &&")
        #expect(r.status == 0 && r.stdout.contains("deepapp ran"), "\(r)")
        let found = deepFiles(cache)
        #expect(found.count == 1_800, "\(found.count) of 1,800 files")
        #expect(found.contains { $0.hasSuffix(String(repeating: "/d", count: 1_500) + "/f.txt") })

        // Writes over 8 KiB fail with EFBIG (SIGXFSZ ignored): big.bin cannot be written.
        let full = makeTemporaryDirectory("cache")
        defer { removeTree(full) }
        let failed = withoutFUSE(["--fallback=extract", deep], environment: ["XDG_CACHE_HOME": full], prelude: "trap '' XFSZ; ulimit -f 16 &&")
        let lines = failed.stderr.split(separator: "\n").filter { $0.contains("cannot") }
        #expect(failed.status == 125 && lines.count == 1 && lines[0].contains("cannot write") && lines[0].contains("big.bin"), "\(failed)")
        #expect(cacheNames(full).allSatisfy { $0.hasSuffix(".lock") }, "\(cacheNames(full))")
    }

    @Test("an entry is KEY/manifest and KEY/app; a build's leftover with no live lock holder is listed and removed by cache clean",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse"))
    func leftovers() throws {
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        let environment = ["XDG_CACHE_HOME": cache]
        #expect(withoutFUSE(["--fallback=extract", app, "--", "exit", "0"], environment: environment).status == 0)
        let key = try #require(cacheNames(cache).first { !$0.contains(".") })
        #expect(FileManager.default.fileExists(atPath: "\(cache)/pyzfs/\(key)/manifest"))
        #expect(FileManager.default.fileExists(atPath: "\(cache)/pyzfs/\(key)/app/__main__.py"))
        #expect(cacheNames(cache).sorted() == [key, key + ".lock"], "\(cacheNames(cache))")
        // What a build killed half way leaves: a read-only directory with a file in it.
        let leftover = "\(cache)/pyzfs/\(key).tmp-Ab12Cd"
        try FileManager.default.createDirectory(atPath: leftover + "/app/pkg", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: leftover + "/app/pkg/x.py", contents: Data("x\n".utf8))
        chmod(leftover + "/app/pkg", 0o555)
        let list = run([pyzfs, "cache", "list"], environment: environment)
        #expect(list.stdout.contains("\(key).tmp-Ab12Cd") && list.stdout.contains("stale"), "\(list)")
        let clean = run([pyzfs, "cache", "clean"], environment: environment)
        #expect(clean.status == 0 && clean.stdout.contains("removed 1 cached app"), "\(clean)")
        #expect(cacheNames(cache).isEmpty, "\(cacheNames(cache))")
    }

    @Test("cache clean by a normal user removes an entry with 0555 directories whole, without rm or du; the next start extracts again",
          .enabled(if: getuid() == 0, "needs root to become another user with setpriv"))
    func cleanAsUser() throws {
        let base = makeTemporaryDirectory("user")
        defer { removeTree(base) }
        chown(base, 65534, 65534)
        let archive = base + "/deepapp.pyz"
        try FileManager.default.copyItem(atPath: Fixtures.shared.archive("deepapp"), toPath: archive)
        let user = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        let environment = ["XDG_CACHE_HOME": base + "/cache"]
        let start = withoutFUSECommand(["--fallback=extract", archive], user: user)
        let first = run(start, environment: environment)
        #expect(first.status == 0 && first.stdout.contains("deepapp ran"), "\(first)")
        // No rm or du on PATH (a distroless image): clean needs neither.
        let clean = run(user + ["env", "PATH=/nonexistent", pyzfs, "cache", "clean"], environment: environment)
        #expect(clean.status == 0 && clean.stdout.contains("removed 1 cached app"), "\(clean)")
        #expect(cacheNames(base + "/cache").isEmpty, "\(cacheNames(base + "/cache"))")
        let again = run(start, environment: environment)
        #expect(again.status == 0 && again.stdout.contains("deepapp ran"), "\(again)")
        #expect(deepFiles(base + "/cache").count == 1_800)
    }

    @Test("the key covers the options that change the tree: after -o symlinks=all, a default start shows no link out of the tree",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse"))
    func keyCoversTreeOptions() throws {
        let linkapp = Fixtures.shared.archive("linkapp")
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        let environment = ["XDG_CACHE_HOME": cache]
        let all = withoutFUSE(["--fallback=extract", "-o", "symlinks=all", linkapp], environment: environment)
        #expect(all.status == 0 && all.stdout.contains("link True"), "\(all)")
        let inside = withoutFUSE(["--fallback=extract", linkapp], environment: environment)
        #expect(inside.status == 0 && inside.stdout.contains("link False"), "\(inside)")
        let masked = withoutFUSE(["--fallback=extract", "-o", "umask=077", linkapp], environment: environment)
        #expect(masked.status == 0, "\(masked)")
        #expect(cacheNames(cache).filter { !$0.contains(".") }.count == 3, "\(cacheNames(cache))")
    }

    @Test("the cache directory is never on a noexec file system, relative XDG values are ignored, and with nothing usable the line says what to set",
          .enabled(if: getuid() == 0, "needs root for mounts in a private namespace"))
    func cacheDirectoryChoice() throws {
        let cache = makeTemporaryDirectory("cache"), runtime = makeTemporaryDirectory("runtime"), home = makeTemporaryDirectory("home")
        defer { removeTree(cache); removeTree(runtime); removeTree(home) }
        let noexecCache = "mount -t tmpfs -o noexec none \(cache) &&"
        let skipped = withoutFUSE(["--fallback=extract", app, "--", "exit", "0"],
                                  environment: ["XDG_CACHE_HOME": cache, "XDG_RUNTIME_DIR": runtime], prelude: noexecCache)
        #expect(skipped.status == 0 && skipped.stderr.contains("$XDG_CACHE_HOME is on a noexec file system")
                && skipped.stderr.contains("using \(runtime)/pyzfs"), "\(skipped)")

        let relative = "pyzfs-relative-\(getpid())"
        defer { removeTree("/" + relative) }
        let ignored = withoutFUSE(["--fallback=extract", app, "--", "exit", "0"],
                                  environment: ["XDG_CACHE_HOME": relative, "HOME": home, "XDG_RUNTIME_DIR": "relative"])
        #expect(ignored.status == 0, "\(ignored)")
        #expect(FileManager.default.fileExists(atPath: home + "/.cache/pyzfs"), "\(ignored)")
        #expect(!FileManager.default.fileExists(atPath: "/" + relative))

        // /tmp noexec, and its own (an empty tmpfs, the app copied to /mnt first), no
        // XDG_RUNTIME_DIR: every candidate is skipped, and none is created while it is checked.
        let none = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", """
            mount -t tmpfs none /mnt && cp "$1" /mnt/app.pyz && mount -t tmpfs -o noexec none /tmp && \
            mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && \
            { "$2" run --fallback=extract /mnt/app.pyz -- exit 0; echo "status $?"; echo left $(ls -A /tmp); }
            """, "sh", app, pyzfs], environment: ["XDG_CACHE_HOME": cache, "XDG_RUNTIME_DIR": ""])
        #expect(none.stdout.contains("status 125") && none.stderr.contains("$XDG_CACHE_HOME is on a noexec file system")
                && none.stderr.contains("/tmp is on a noexec file system")
                && none.stderr.contains("set XDG_CACHE_HOME to an absolute path of a writable directory on a file system mounted without noexec"), "\(none)")
        #expect(none.stdout.contains("left\n"), "a skipped candidate was created: \(none)")
    }

    /// The SHA-256 of `path`, as sha256sum prints it.
    func sha256(_ path: String) throws -> String {
        let r = run(["sha256sum", path])
        try #require(r.status == 0, "\(r)")
        return String(r.stdout.prefix(64))
    }

    @Test("under -o sha256= an entry runs only when it is the pinned archive's: a changed file, an added file or another recorded hash is extracted again",
          .enabled(if: getuid() == 0, "needs root to hide /dev/fuse"), arguments: ["file", "added", "manifest"])
    func pinCoversTheCache(alteration: String) throws {
        let cache = makeTemporaryDirectory("cache")
        defer { removeTree(cache) }
        let environment = ["XDG_CACHE_HOME": cache]
        let pinned = ["--fallback=extract", "-o", "sha256=\(try sha256(app))", app, "--", "sleep", pidFile(), "0"]
        let first = withoutFUSE(pinned, environment: environment)
        #expect(first.status == 0 && first.stdout.contains("data from the mount"), "\(first)")
        let key = try #require(cacheNames(cache).first { !$0.contains(".") })
        let entry = "\(cache)/pyzfs/\(key)"
        // An entry that is the archive's is used as it is.
        let again = withoutFUSE(pinned, environment: environment)
        #expect(again.status == 0 && again.stdout.contains("data from the mount") && !again.stderr.contains("extracting it again"), "\(again)")
        switch alteration {
        case "file":  // the manifest is left as it was: it still names the pin
            #expect(FileManager.default.createFile(atPath: entry + "/app/data.txt", contents: Data("from the attacker\n".utf8)))
        case "added":
            #expect(FileManager.default.createFile(atPath: entry + "/app/sitecustomize.py", contents: Data("print('planted')\n".utf8)))
        default:
            let manifest = try String(contentsOfFile: entry + "/manifest", encoding: .utf8)
            let lines = manifest.split(separator: "\n", omittingEmptySubsequences: false)
            try (["sha256 " + String(repeating: "0", count: 64)] + lines.dropFirst()).joined(separator: "\n")
                .write(toFile: entry + "/manifest", atomically: false, encoding: .utf8)
        }
        let checked = withoutFUSE(pinned, environment: environment)
        #expect(checked.status == 0 && checked.stdout.contains("data from the mount")
                && checked.stderr.contains("is not \(app)'s as pinned") && checked.stderr.contains("extracting it again"), "\(checked)")
        #expect(!FileManager.default.fileExists(atPath: entry + "/app/sitecustomize.py"))
        #expect((try? String(contentsOfFile: entry + "/manifest", encoding: .utf8))?.hasPrefix("sha256 \(try sha256(app))\n") == true)
    }
}
