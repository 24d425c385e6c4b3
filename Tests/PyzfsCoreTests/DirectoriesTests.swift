import Foundation
import Glibc
import PyzfsCore
import PyzfsTestSupport
import Testing

/// The one maker of `PREFIX-XXXXXX` directories (pyzfs run's mount directories, the extract
/// cache's temporaries), and the checks of scratch places.
@Suite("Directories")
struct DirectoriesTests {
    @Test("a new 0700 directory BASE/PREFIX-XXXXXX each time; nil with errno where BASE cannot take one")
    func uniqueDirectories() throws {
        let base = makeTemporaryDirectory("unique")
        defer { removeTree(base) }
        let first = try #require(makeUniqueDirectory(in: base, prefix: "KEY.tmp"))
        let second = try #require(makeUniqueDirectory(in: base, prefix: "KEY.tmp"))
        #expect(first != second)
        for made in [first, second] {
            let name = String(made.dropFirst(base.count + 1))
            #expect(made.hasPrefix(base + "/") && name.hasPrefix("KEY.tmp-") && name.count == "KEY.tmp-".count + 6, "\(made)")
            var st = stat()
            #expect(stat(made, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_mode & 0o7777 == 0o700, "\(made)")
        }
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: base)).count == 2)
        #expect(makeUniqueDirectory(in: base + "/missing", prefix: "pyzfs-run") == nil && errno == ENOENT)
    }

    @Test("an empty directory is one with only . and ..")
    func emptyDirectories() throws {
        let base = makeTemporaryDirectory("empty")
        defer { removeTree(base) }
        #expect(isEmptyDirectory(base))
        #expect(!isEmptyDirectory(base + "/missing"))
        #expect(FileManager.default.createFile(atPath: base + "/.hidden", contents: nil))
        #expect(!isEmptyDirectory(base))
        #expect(!isEmptyDirectory(base + "/.hidden"), "a file is no directory")
    }

    @Test("only absolute values of an environment variable count")
    func absoluteValues() {
        let name = "PYZFS_TEST_DIRECTORY_\(getpid())"
        defer { unsetenv(name) }
        for (value, expected) in [("/a/b", "/a/b"), ("relative", nil), ("", nil), ("./x", nil)] as [(String, String?)] {
            setenv(name, value, 1)
            #expect(absoluteEnvironment(name) == expected, "\(value)")
        }
        unsetenv(name)
        #expect(absoluteEnvironment(name) == nil)
    }
}
