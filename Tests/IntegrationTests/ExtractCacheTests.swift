import Foundation
import PyzfsTestSupport
import Testing

/// The extract fallback's cache (issue 11): its key and the choice of its directory.
extension RunTests {
    /// The names in the cache directory `cache/pyzfs`.
    func cacheNames(_ cache: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: cache + "/pyzfs")) ?? []
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

        // /tmp (and so every test directory) noexec, no XDG_RUNTIME_DIR.
        let noexecTmp = "mount --rbind /tmp /tmp && mount -o remount,bind,noexec /tmp &&"
        let none = withoutFUSE(["--fallback=extract", app, "--", "exit", "0"],
                               environment: ["XDG_CACHE_HOME": cache, "XDG_RUNTIME_DIR": ""], prelude: noexecTmp)
        #expect(none.status == 125 && none.stderr.contains("/tmp is on a noexec file system")
                && none.stderr.contains("set XDG_CACHE_HOME to an absolute path of a writable directory on a file system mounted without noexec"), "\(none)")
    }
}
