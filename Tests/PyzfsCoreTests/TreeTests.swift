import PyzfsCore
import PyzfsTestSupport
import Testing

@Suite("Tree")
struct TreeTests {
    func tree(_ w: ZipWriter, options: TreeOptions = TreeOptions()) throws -> Tree {
        let fs = try memoryFileSystem(w, options: options)
        return fs.tree
    }

    @Test("implicit directories exist and inodes are index + 1 with the root at 1")
    func implicitDirectories() throws {
        var w = ZipWriter()
        w.add("a/b/c.txt", "c")
        w.add("a/d.txt", "d")
        let t = try tree(w)
        #expect(t.nodes.count == 5)
        let a = try #require(t.lookup(path: "a"))
        let b = try #require(t.lookup(path: "a/b"))
        #expect(t.nodes[a].kind == .directory && t.nodes[a].entry == -1)
        #expect(t.nodes[b].parent == UInt32(a))
        #expect(t.lookup(path: "a/b/c.txt") == 3)
        #expect(ArchiveFileSystem.inode(of: Tree.root) == 1)
        #expect(t.children(of: a).map { t.path(of: Int($0)) } == ["a/b", "a/d.txt"])
        #expect(t.nodes[Tree.root].subdirectoryCount == 1)
    }

    @Test("modes: type bits honoured, none means file (or directory by name), setuid never kept")
    func modes() throws {
        var w = ZipWriter()
        w.add("script", "#!/bin/sh\n", mode: 0o100755)
        w.add("plain", "x", mode: nil)
        w.add("dir/", "", mode: nil)
        w.add("suid", "x", mode: 0o104755)
        w.add("fifo", "", mode: 0o010644)
        w.add("private", "x", mode: 0o100600)
        let t = try tree(w, options: TreeOptions(umask: 0o022))
        func node(_ p: String) throws -> Node { t.nodes[try #require(t.lookup(path: p))] }
        #expect(try node("script").permissions == 0o755)
        #expect(try node("plain").permissions == 0o644 && node("plain").kind == .file)
        #expect(try node("dir").kind == .directory && node("dir").permissions == 0o755)
        #expect(try node("suid").permissions == 0o755)
        #expect(try node("fifo").kind == .file)
        #expect(try node("private").permissions == 0o600)
        #expect(t.warnings.contains { $0.name == "fifo" })
    }

    @Test("the last duplicate wins; a directory beats a file of the same path")
    func conflicts() throws {
        var w = ZipWriter()
        w.add("dup.txt", "first")
        w.add("dup.txt", "second")
        w.add("x", "a file first")
        w.add("x/inside.txt", "then a directory")
        w.add("y/inside.txt", "a directory first")
        w.add("y", "then a file")
        let fs = try memoryFileSystem(w)
        let t = fs.tree
        let dup = try #require(t.lookup(path: "dup.txt"))
        let text = try fs.read(dup, offset: 0, count: 100) { Array($0) }
        #expect(text == Array("second".utf8))
        #expect(t.nodes[try #require(t.lookup(path: "x"))].kind == .directory)
        #expect(t.lookup(path: "x/inside.txt") != nil)
        #expect(t.nodes[try #require(t.lookup(path: "y"))].kind == .directory)
        #expect(t.children(of: Tree.root).count == 3)
        #expect(t.warnings.count == 3)
    }

    @Test("skipped names leave no odd entries")
    func skippedNames() throws {
        var w = ZipWriter()
        for n in ["../evil", "/abs", "a/../../b", "./dot", "ok.txt", "a//b"] { w.add(n, "x") }
        let t = try tree(w)
        #expect(t.children(of: Tree.root).map { t.path(of: Int($0)) } == ["ok.txt"])
        #expect(t.warnings.count == 5)
    }

    @Test("symlinks that stay inside are kept; those that leave are hidden unless asked for")
    func symlinks() throws {
        var w = ZipWriter()
        w.add("real/t.txt", "t")
        w.add("in", "real/t.txt", mode: 0o120777)
        w.add("real/up", "../real/t.txt", mode: 0o120777)
        w.add("out", "../x", mode: 0o120777)
        w.add("abs", "/etc/passwd", mode: 0o120777)
        w.add("dot", ".", mode: 0o120777)
        w.add("via", "dot/../x", mode: 0o120777)   // lexically inside, physically out
        w.add("chain", "real/up", mode: 0o120777)
        w.add("missing", "nope/../../x", mode: 0o120777)
        let t = try tree(w)
        for visible in ["in", "real/up", "dot", "chain"] { #expect(t.lookup(path: visible) != nil, "\(visible)") }
        for hidden in ["out", "abs", "via", "missing"] { #expect(t.lookup(path: hidden) == nil, "\(hidden)") }
        let all = try tree(w, options: TreeOptions(symlinks: .all))
        #expect(all.lookup(path: "abs") != nil)
    }

    @Test func largeTreeLookups() throws {
        var w = ZipWriter()
        for i in 0..<5000 { w.add("d\(i % 37)/f\(i).py", "") }
        let t = try tree(w)
        for i in stride(from: 0, to: 5000, by: 97) {
            #expect(t.lookup(path: "d\(i % 37)/f\(i).py") != nil)
        }
        #expect(t.lookup(path: "d1/f0.py") == nil)
        #expect(t.children(of: Tree.root).count == 37)
    }
}

@Suite("Tree: regressions found by fuzzing")
struct TreeRegressionTests {
    @Test("a self-referencing link resolves in linear time (l -> l/l/.../l)")
    func selfReferencingLink() throws {
        var w = ZipWriter()
        w.add("l", Array(repeating: "l", count: 200).joined(separator: "/"), mode: 0o120777)
        w.add("a", "b/../../x", mode: 0o120777)
        w.add("b", "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a", mode: 0o120777)
        let fs = try memoryFileSystem(w)
        #expect(fs.tree.lookup(path: "l") != nil)
    }
}

extension TreeRegressionTests {
    @Test("a name starting with a combining mark is found by its path")
    func combiningMark() throws {
        var w = ZipWriter()
        w.add("pkg/\u{301}mod.py", "x")
        let fs = try memoryFileSystem(w)
        let node = try #require(fs.tree.lookup(path: "pkg/\u{301}mod.py"))
        #expect(fs.tree.path(of: node) == "pkg/\u{301}mod.py")
    }
}
