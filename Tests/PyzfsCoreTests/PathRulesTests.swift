import PyzfsCore
import Testing

@Suite("Path rules")
struct PathRulesTests {
    @Test("ordinary names split into components", arguments: [
        ("a", ["a"], false), ("a/b/c.py", ["a", "b", "c.py"], false), ("dir/", ["dir"], true),
        ("back\\slash", ["back\\slash"], false), ("..hidden/x", ["..hidden", "x"], false),
        ("a/.b", ["a", ".b"], false), ("ünïcode/名前", ["ünïcode", "名前"], false),
    ])
    func accepted(name: String, parts: [String], isDirectory: Bool) {
        let (verdict, got) = PathRules.split(name)
        #expect(verdict == .path(isDirectory: isDirectory))
        #expect(got == parts)
    }

    @Test("odd names are skipped with a reason", arguments: [
        ("", "empty name"), ("/etc/passwd", "absolute name"), ("a/../b", "'..' path component"),
        ("..", "'..' path component"), ("./a", "'.' path component"), ("a//b", "empty path component"),
        ("a/./b", "'.' path component"), ("/", "absolute name"), ("a\u{0}b", "NUL byte in name"),
    ])
    func skipped(name: String, reason: String) {
        let (verdict, _) = PathRules.split(name)
        #expect(verdict == .skip(reason))
    }

    @Test func longNames() {
        let long = String(repeating: "x", count: 256)
        #expect(PathRules.split("a/" + long).0 == .skip("path component longer than 255 bytes"))
        #expect(PathRules.split(String(repeating: "x", count: 255)).0 == .path(isDirectory: false))
        let deep = Array(repeating: String(repeating: "d", count: 200), count: 21).joined(separator: "/")
        #expect(PathRules.split(deep).0 == .skip("name longer than 4095 bytes"))
    }
}
