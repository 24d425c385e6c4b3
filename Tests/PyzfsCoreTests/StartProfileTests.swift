import PyzfsCore
import PyzfsTestSupport
import Testing

@Suite("Start profile")
struct StartProfileTests {
    /// An archive with a few files, a directory, and `profile` as its start profile.
    func fileSystem(profile: [UInt8]?) throws -> ArchiveFileSystem {
        var w = ZipWriter()
        w.add("a.txt", "a")
        w.add("pkg/", "", mode: 0o040755)
        w.add("pkg/b.txt", "b")
        w.add("pkg/c.txt", "c")
        if let profile { w.add(StartProfile.memberName, String(decoding: profile, as: UTF8.self)) }
        return try memoryFileSystem(w)
    }

    func paths(_ nodes: [Int], _ fs: ArchiveFileSystem) -> [String] { nodes.map { fs.tree.path(of: $0) } }

    @Test("the profile member is hidden: no lookup finds it, no listing shows it")
    func hidden() throws {
        let fs = try fileSystem(profile: StartProfile.encode(["a.txt"]))
        let p = try #require(fs.tree.profileNode)
        #expect(fs.tree.path(of: p) == StartProfile.memberName)
        #expect(fs.tree.lookup(path: StartProfile.memberName) == nil)
        #expect(!fs.tree.children(of: Tree.root).map(Int.init).contains(p))
        var name = StartProfile.memberName
        #expect(throws: FSError.notFound) { try name.withUTF8 { try fs.lookup(parent: Tree.root, name: UnsafeRawBufferPointer($0)) } }
        #expect(paths(fs.profiledMembers(), fs) == ["a.txt"])
    }

    @Test("a profile member below the root is an ordinary file")
    func onlyAtTheRoot() throws {
        var w = ZipWriter()
        w.add("pkg/" + StartProfile.memberName, "x")
        let fs = try memoryFileSystem(w)
        #expect(fs.tree.profileNode == nil)
        #expect(fs.tree.lookup(path: "pkg/" + StartProfile.memberName) != nil)
    }

    @Test("first reads are recorded once each, in order, without the profile's own read")
    func firstReads() throws {
        let fs = try fileSystem(profile: StartProfile.encode(["a.txt"]))
        for p in ["pkg/c.txt", "a.txt", "pkg/c.txt", "pkg/b.txt", "a.txt"] {
            let n = try #require(fs.tree.lookup(path: p))
            _ = try fs.read(n, offset: 0, count: 1) { $0.count }
        }
        _ = fs.profiledMembers()
        let text = String(decoding: fs.firstReadProfile, as: UTF8.self)
        #expect(text == "pyzfs-profile 1\npkg/c.txt\na.txt\npkg/b.txt\n")
    }

    @Test("hostile profiles: only the usable names, each once, in order; nothing crashes")
    func hostile() throws {
        let tree = try fileSystem(profile: nil).tree
        func members(_ text: [UInt8]) -> [String] { StartProfile.members(in: text, of: tree).map { tree.path(of: $0) } }
        let h = Array("pyzfs-profile 1\n".utf8)
        #expect(members(h + Array("pkg/c.txt\na.txt\n".utf8)) == ["pkg/c.txt", "a.txt"])
        // Wrong or missing header, empty input, garbage.
        #expect(members(Array("pyzfs-profile 2\na.txt\n".utf8)).isEmpty)
        #expect(members(Array("a.txt\n".utf8)).isEmpty)
        #expect(members([]).isEmpty)
        #expect(members((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }).isEmpty)
        #expect(members(h + (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }).isEmpty)
        // Names outside the archive, directories, the profile itself, duplicates, escapes, NULs.
        let lines = ["../a.txt", "/etc/passwd", "pkg", "pkg/", "", StartProfile.memberName, "nope.txt",
                     "pkg/b.txt", "a.txt", "pkg/b.txt", "./a.txt", "pkg//c.txt", "a.txt\0x", "pkg/../a.txt"]
        #expect(members(h + Array(lines.joined(separator: "\n").utf8) + [10]) == ["pkg/b.txt", "a.txt", "pkg/c.txt"])
        // A last line without its newline (a cut text) does not count.
        #expect(members(h + Array("a.txt\npkg/b.txt".utf8)) == ["a.txt"])
        // Lines too long are skipped; past the size limit nothing counts.
        let long = Array(repeating: UInt8(ascii: "x"), count: StartProfile.maximumLineBytes + 1)
        #expect(members(h + long + Array("\na.txt\n".utf8)) == ["a.txt"])
        var huge = h
        while huge.count < StartProfile.maximumBytes { huge += Array("nope/nope/nope.txt\n".utf8) }
        #expect(members(huge + Array("a.txt\n".utf8)).isEmpty)
        #expect(members(Array(h.dropLast())).isEmpty)
    }

    @Test("encode keeps within the size limit and leaves out names that cannot be a line")
    func encodeBounded() throws {
        let many = (0..<20000).map { "pkg/module_\($0).py" }
        let text = StartProfile.encode(["a\nb", "", "ok"] + many)
        #expect(text.count <= StartProfile.maximumBytes)
        #expect(text.last == UInt8(ascii: "\n"))
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
        #expect(lines.first == "pyzfs-profile 1")
        #expect(lines[1] == "ok")
    }

    @Test("a profile over the size limit is not used")
    func oversized() throws {
        var text = StartProfile.encode(["a.txt"])
        text += Array(repeating: UInt8(ascii: "\n"), count: StartProfile.maximumBytes)
        let fs = try fileSystem(profile: text)
        #expect(fs.profiledMembers().isEmpty)
    }

    @Test("a cache that may not evict says so instead of making room")
    func noEviction() throws {
        let cache = MemberCache(budget: 100)
        _ = try cache.buffer(for: 1, size: 60) { $0.count }
        #expect(try cache.buffer(for: 2, size: 60, evicting: false) { $0.count } == nil)
        #expect(cache.contains(1))
        #expect(try cache.buffer(for: 3, size: 40, evicting: false) { $0.count } != nil)
        #expect(try cache.buffer(for: 2, size: 60) { $0.count } != nil)
        #expect(!cache.contains(1))
    }
}
