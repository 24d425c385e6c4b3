import PyzfsCore
import PyzfsInflate
import PyzfsZip
#if canImport(Glibc)
import Glibc
#endif

/// One invariant that did not hold for an input. `check` names it (for PYZFS_FUZZ_RELAX).
public struct Violation: CustomStringConvertible, Sendable {
    public let check: String
    public let detail: String
    public var description: String { "[\(check)] \(detail)" }
}

/// How many inputs took each path (printed by the replay, to show what the corpus reaches).
public struct Statistics: Sendable {
    public var inputs = 0
    public var indexed = 0
    public var indexRefused = 0
    public var libzipOpened = 0
    public var libzipRefused = 0
    public var libzipCompared = 0
    public var libzipAmbiguous = 0
    public var namesExempt = 0
    public var treeNodes = 0
    public var membersDecoded = 0
    public var elfParsed = 0
    public var mountRecords = 0
    public var optionsAccepted = 0
    public var overlayOperations = 0
    public var fileIndexed = 0
    public var fileReads = 0
    public var fileReadsServed = 0

    public var description: String {
        """
        inputs \(inputs); zip index built \(indexed), refused \(indexRefused); \
        libzip opened \(libzipOpened) (compared \(libzipCompared), several end records \(libzipAmbiguous)), \
        refused \(libzipRefused); names exempt from the libzip comparison \(namesExempt); \
        tree nodes \(treeNodes); members decoded \(membersDecoded); ELF files parsed \(elfParsed); \
        mountinfo records \(mountRecords); option sets accepted \(optionsAccepted); overlay operations \(overlayOperations); \
        indexed from a real file \(fileIndexed) (its length as given, cut or extended); reads served \(fileReadsServed) of \(fileReads)
        """
    }
}

/// Runs one input through every parser of untrusted bytes in PyzfsCore and PyzfsZip and checks
/// what they return. Not thread-safe: one checker per thread.
///
/// Checks (the names `PYZFS_FUZZ_RELAX=name,name` switches off, to fuzz on past a known bug):
/// path-rules, index-layout, index-names, index-raw, data-offset, tree-root, tree-name,
/// tree-structure, tree-lookup, tree-lookup-string, tree-children, tree-entry, tree-modes,
/// tree-symlink, tree-symlink-escape, bytecode, member, member-empty-crc, elf, zipapp,
/// mount-table, mount-options, overlay, libzip-count, libzip-name, libzip-fields, index-numbers,
/// read-range, read-damaged, read-bytes, read-unverified, read-stored-unchecked.
/// Two more names steer around bugs that were crashes or hangs rather than violations (both fixed
/// in d0ae28c; see Tests/fixtures/fuzz-regressions): `overlay-large` keeps the overlay's offsets
/// and sizes below 2^32; `tree-symlink-blowup` hides, in trees built with symlinks=inside, the
/// links whose target names links twice or more.
public final class Checker {
    public private(set) var statistics = Statistics()
    let relaxed: Set<String>
    let scratchPath: String
    var violations: [Violation] = []

    /// - Parameter relaxed: checks to skip; by default those named in `PYZFS_FUZZ_RELAX`.
    public init(relaxed: Set<String>? = nil) {
        var relax: Set<String>
        if let relaxed {
            relax = relaxed
        } else if let env = getenv("PYZFS_FUZZ_RELAX") {
            relax = Set(String(cString: env).split(separator: ",").map(String.init))
        } else {
            relax = []
        }
        self.relaxed = relax
        let directory = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        scratchPath = "\(directory)/pyzfs-fuzz-\(getpid()).zip"
        Self.removeStaleScratchFiles(in: directory)
    }

    /// Scratch files of checkers that died without cleaning up (a crash is what the fuzzer looks for).
    static func removeStaleScratchFiles(in directory: String) {
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix("pyzfs-fuzz-"), name.hasSuffix(".zip"),
                  let pid = Int32(name.dropFirst("pyzfs-fuzz-".count).dropLast(".zip".count)),
                  pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            unlink(directory + "/" + name)
        }
    }

    deinit { unlink(scratchPath) }

    /// Removes the scratch file libzip reads (call before exit; deinit may not run).
    public func removeScratchFile() { unlink(scratchPath) }

    /// Every violated invariant for `input` (empty when all hold). A crash or trap inside pyzfs
    /// is not caught: it ends the process, which is what the fuzzer and the replay report.
    public func check(_ input: [UInt8]) -> [Violation] {
        violations = []
        statistics.inputs += 1
        checkPathRules(input.count <= 8192 ? input[...] : input[0..<8192])
        checkText(input)
        checkELF(input[...])
        _ = input.withUnsafeBytes { BytecodeIndex.timestampFields(ofHeader: $0) }
        checkOverlay(input)
        checkArchive(input)
        return violations
    }

    func fail(_ check: String, _ detail: @autoclosure () -> String) {
        guard !relaxed.contains(check) else { return }
        violations.append(Violation(check: check, detail: detail()))
    }

    // MARK: start profiles

    /// The input as a start profile of its own archive's tree (with and without the header, so
    /// the fuzzer reaches the names at once): only visible files, each once, never the profile.
    func checkProfile(_ input: [UInt8], _ tree: Tree) {
        for text in [input, Array((StartProfile.header + "\n").utf8) + input.prefix(StartProfile.maximumBytes)] {
            let nodes = StartProfile.members(in: text, of: tree)
            if Set(nodes).count != nodes.count { fail("profile.unique", "a node named twice: \(nodes)") }
            for n in nodes where tree.nodes[n].kind != .file || tree.nodes[n].isHidden || n == tree.profileNode {
                fail("profile.files", "\(tree.path(of: n)) is not a visible file")
            }
        }
    }

    // MARK: names

    /// PathRules.split against a plain reading of docs/names.md.
    func checkPathRules(_ name: ArraySlice<UInt8>) {
        var ranges: [Range<Int>] = []
        let bytes = Array(name)
        let verdict = bytes.withUnsafeBytes { PathRules.split($0, into: &ranges) }
        let expected = Self.expectedComponents(bytes)
        switch verdict {
        case let .path(isDirectory):
            guard let expected else {
                return fail("path-rules", "accepted \(show(bytes)), which docs/names.md says to skip")
            }
            let got = ranges.map { Array(bytes[$0]) }
            if got != expected.components || isDirectory != expected.isDirectory {
                fail("path-rules", "split \(show(bytes)) into \(got.map(show)) (directory: \(isDirectory))")
            }
            for r in ranges where r.lowerBound < 0 || r.upperBound > bytes.count || r.isEmpty {
                fail("path-rules", "range \(r) of \(show(bytes)) is empty or outside the name")
            }
        case .skip:
            if let expected {
                fail("path-rules", "skipped \(show(bytes)), which is a valid path \(expected.components.map(show))")
            }
        }
    }

    /// The components of a valid member name, or nil when docs/names.md says it is skipped.
    static func expectedComponents(_ name: [UInt8]) -> (components: [[UInt8]], isDirectory: Bool)? {
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        guard !name.isEmpty, name[0] != slash, name.count <= PathRules.maxPathLength, !name.contains(0) else { return nil }
        var parts = name.split(separator: slash, omittingEmptySubsequences: false).map(Array.init)
        let isDirectory = name.last == slash
        if isDirectory { parts.removeLast() }
        guard !parts.isEmpty else { return nil }
        for p in parts {
            if p.isEmpty || p == [dot] || p == [dot, dot] || p.count > PathRules.maxComponentLength { return nil }
        }
        return (parts, isDirectory)
    }

    // MARK: text formats

    func checkText(_ input: [UInt8]) {
        let text = String(decoding: input, as: UTF8.self)
        let lines = text.split(separator: "\n").count
        let records = MountTable.parse(text)
        statistics.mountRecords += records.count
        if records.count > lines { fail("mount-table", "\(records.count) records from \(lines) lines") }
        if let last = records.last, MountTable.mount(at: last.mountPoint, in: records) == nil {
            fail("mount-table", "the mount at \(last.mountPoint) is not found again")
        }

        let groups = text.split(separator: "\n", omittingEmptySubsequences: false).prefix(64).map(String.init)
        for g in groups.prefix(8) {
            if let size = parseSize(g) { _ = formatSize(size) }
        }
        if let options = try? MountOptions.parse(groups) {
            statistics.optionsAccepted += 1
            if let u = options.umask, u > 0o7777 { fail("mount-options", "umask \(u) accepted") }
            if options.cacheSize == 0 { fail("mount-options", "cache_size=0 accepted") }
            if let p = options.prefetchThreads, !(0...64).contains(p) { fail("mount-options", "prefetch=\(p) accepted") }
            if let t = options.workerThreads, !(1...64).contains(t) { fail("mount-options", "threads=\(t) accepted") }
            for forced in ["ro", "nosuid", "nodev", "rw", "dev", "suid"] where options.libfuse.contains(forced) {
                fail("mount-options", "\(forced) is handed to libfuse")
            }
            _ = options.libfuseValue("fsname")
        }
    }

    // MARK: ELF

    func checkELF(_ bytes: ArraySlice<UInt8>) {
        let result = bytes.withUnsafeBytes { ELFDependencies.parse($0) }
        guard let result else { return }
        statistics.elfParsed += 1
        // Each string comes from at most 4,096 bytes; repaired UTF-8 is at most 3 bytes per byte.
        for s in result.needed + result.searchPath where s.utf8.count > 3 * 4096 {
            fail("elf", "a string of \(s.utf8.count) bytes")
        }
        if result.needed.count > bytes.count / 8 + 1 {
            fail("elf", "\(result.needed.count) DT_NEEDED names from \(bytes.count) bytes")
        }
        for p in result.searchPath where p.isEmpty || p.contains(":") {
            fail("elf", "search path element \(p.debugDescription)")
        }
    }

    // MARK: the archive

    func checkArchive(_ input: [UInt8]) {
        let source = MemorySource(input)
        let index: ZipIndex
        do {
            index = try ZipIndex.read(from: source, path: "fuzz")
        } catch {
            statistics.indexRefused += 1
            return
        }
        statistics.indexed += 1
        checkLayout(index, size: input.count)
        checkNames(index)
        let raw = walkCentralDirectory(input, index)
        for entry in index.entries {
            checkPathRules(index.name(of: entry))
            if let offset = try? index.dataOffset(of: entry, in: source) {
                let (end, overflow) = offset.addingReportingOverflow(entry.compressedSize)
                if overflow || end > index.centralDirectoryOffset || end > UInt64(input.count) {
                    fail("data-offset", "member data at \(offset) + \(entry.compressedSize) runs past the directory at \(index.centralDirectoryOffset)")
                }
            }
        }
        if let words = Zipapp.interpreterLine(of: source, index: index) {
            for w in words where w.isEmpty || w.contains(" ") || w.contains("\t") || w.contains("\n") {
                fail("zipapp", "word \(w.debugDescription) of the #! line")
            }
            _ = Zipapp.interpreter(fromLine: words)
        }

        // Symlink targets are the members' bytes (at most 4 KiB), decoded as the server does
        // (libzip for compressed ones), or the raw bytes when that fails, so the input shapes them.
        let scratch = writeScratchFile(input)
        let file = scratch ? try? ArchiveFile(path: scratchPath) : nil
        let reader = MemberReader(source: source, index: index,
                                  decoders: file.map { [LibzipDecoder(archive: $0, index: index)] } ?? [],
                                  checksum: { crc, bytes in CRC32.update(crc, bytes) })
        let target: (Int) -> [UInt8]? = { i in
            let entry = index.entries[i]
            if entry.method != 0, entry.uncompressedSize <= 4096, let bytes = try? reader.readWhole(i, limit: 4096) {
                return bytes
            }
            guard entry.compressedSize <= 4096, let offset = try? index.dataOffset(of: entry, in: source),
                  offset + entry.compressedSize <= UInt64(input.count) else { return nil }
            return Array(input[Int(offset)..<Int(offset + entry.compressedSize)])
        }
        // "tree-symlink-blowup" relaxed: with symlinks=inside, no target names links twice or more,
        // to fuzz on past Tree.resolve's exponential time (see fuzz-regressions).
        var linkNames = Set<[UInt8]>()
        if relaxed.contains("tree-symlink-blowup") {
            for e in index.entries where (e.unixMode ?? 0) & 0o170000 == 0o120000 {
                let name = Array(index.name(of: e))
                if let last = name.split(separator: UInt8(ascii: "/")).last { linkNames.insert(Array(last)) }
            }
        }
        let tamedTarget: (Int) -> [UInt8]? = { i in
            guard let t = target(i) else { return nil }
            let links = t.split(separator: UInt8(ascii: "/")).filter { linkNames.contains(Array($0)) }.count
            return links >= 2 ? nil : t
        }
        let umask = UInt16(input.last ?? 0) & 0o077
        for policy in SymlinkPolicy.allCases {
            let tree = Tree(index: index, options: TreeOptions(umask: umask, symlinks: policy, defaultTime: 1),
                            symlinkTarget: policy == .inside && !linkNames.isEmpty ? tamedTarget : target)
            statistics.treeNodes += tree.nodes.count
            checkTree(tree, umask: umask)
            if policy == .inside { checkBytecode(tree); checkProfile(input, tree) }
        }

        let libzip = scratch ? crossCheckLibzip(input, index, raw: raw) : false
        if libzip { decodeMembers(index, reader) }
        withExtendedLifetime(file) {}
        if scratch { serveFromFiles(input, memoryIndex: index, umask: umask) }
    }

    // MARK: the real file path

    /// The input served as `pyzfs mount` serves it: ArchiveFile on a real file (in /dev/shm), the
    /// index and tree from it (symlink targets read through the member reader), and
    /// ArchiveFileSystem.read of every member in order, in reverse and at random with small counts,
    /// with a cache that holds members and one so small that they stream; then the same with the
    /// file's length disagreeing with the offsets it claims (cut short, or extended with zeros).
    /// Every byte served must equal the member's verified whole decode (from the input as given);
    /// a compressed member that cannot be decoded whole must serve nothing.
    func serveFromFiles(_ input: [UInt8], memoryIndex: ZipIndex, umask: UInt16) {
        let memory = MemorySource(input)
        let memoryReader = MemberReader(source: memory, index: memoryIndex, decoders: [DeflateDecoder(source: memory)],
                                        checksum: { crc, bytes in CRC32.update(crc, bytes) })
        var reference: [Int: [UInt8]] = [:]
        for (i, e) in memoryIndex.entries.enumerated() where e.uncompressedSize <= 1 << 20 && (e.method == 0 || e.method == 8) {
            if let bytes = try? memoryReader.readWhole(i, limit: 1 << 20) { reference[i] = bytes }
        }
        let seed = input.count >= 2 ? Int(input[input.count - 2]) : 0
        serveFromFile(input, reference: reference, seed: seed, umask: umask, exact: true)
        // The length disagrees with the offsets: cut by 1 to 256 bytes, or extended as much.
        let k = 1 + seed
        if input.count > k {
            serveFromFile(Array(input.dropLast(k)), reference: reference, seed: seed, umask: umask, exact: false)
        }
        serveFromFile(input + [UInt8](repeating: 0, count: k), reference: reference, seed: seed, umask: umask, exact: false)
    }

    func serveFromFile(_ bytes: [UInt8], reference: [Int: [UInt8]], seed: Int, umask: UInt16, exact: Bool) {
        guard writeScratchFile(bytes), let file = try? ArchiveFile(path: scratchPath) else { return }
        guard let index = try? ZipIndex.read(from: file, path: "fuzz") else { return }
        statistics.fileIndexed += 1
        checkLayout(index, size: bytes.count)
        for e in index.entries where e.damage == nil {
            let (end, o1) = e.localHeaderOffset.addingReportingOverflow(30 + e.compressedSize)
            if o1 || end > index.centralDirectoryOffset || e.uncompressedSize > UInt64(Int64.max) {
                fail("index-numbers", "a member without damage has offset \(e.localHeaderOffset), sizes \(e.compressedSize)/\(e.uncompressedSize), directory at \(index.centralDirectoryOffset)")
            }
        }
        let decoders: [any MemberDecoder] = [DeflateDecoder(source: file), LibzipDecoder(archive: file, index: index)]
        let reader = MemberReader(source: file, index: index, decoders: decoders, checksum: { crc, bytes in CRC32.update(crc, bytes) })
        let policy: SymlinkPolicy = seed & 1 == 0 ? .inside : .all
        // Symlink targets as the server reads them.
        let tree = Tree(index: index, options: TreeOptions(umask: umask, symlinks: policy, defaultTime: 1)) { i in
            try? reader.readWhole(i, limit: 4096)
        }
        checkTree(tree, umask: umask)
        var rng = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 | 1
        func next() -> UInt64 {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return rng
        }
        for budget in [1 << 20, 2048] {
            let fs = ArchiveFileSystem(tree: tree, reader: reader, cacheBudget: budget, ownership: Ownership(uid: 0, gid: 0),
                                       inflater: ZlibCheckpointInflater(source: file))
            _ = fs.statistics
            for i in tree.nodes.indices where !tree.nodes[i].isHidden {
                let a = fs.attributes(of: i)
                switch tree.nodes[i].kind {
                case .directory:
                    _ = try? fs.children(of: i)
                case .symlink:
                    guard let target = try? fs.readlink(i) else {
                        fail("tree-symlink", "readlink of the visible link \(tree.path(of: i)) fails")
                        continue
                    }
                    // Resolution as a path lookup from the link's directory (what the kernel does).
                    let parent = tree.path(of: Int(tree.nodes[i].parent))
                    let joined = (parent.isEmpty ? "" : parent + "/") + String(decoding: target, as: UTF8.self)
                    _ = tree.lookup(path: joined)
                case .file:
                    let entryIndex = Int(tree.nodes[i].entry)
                    let entry = index.entries[entryIndex]
                    // The reference holds for the input as given; in a cut or extended file the same
                    // member may lie elsewhere (offsets counted from the end), so it must only not trap.
                    let expected = exact ? reference[entryIndex] : nil
                    readEveryWay(fs, i, size: a.size, entry: entry, expected: expected, strict: exact, next)
                }
            }
        }
        withExtendedLifetime(file) {}
    }

    /// Reads node `i` in order, in reverse and at random with counts of 1 to 4 KiB.
    func readEveryWay(_ fs: ArchiveFileSystem, _ i: Int, size: UInt64, entry: ZipEntry, expected: [UInt8]?,
                      strict: Bool, _ next: () -> UInt64) {
        // The first reads are in order: a stored member's first pass may serve them (not an ELF's).
        var inOrder = true
        func one(_ offset: UInt64, _ count: Int) -> Int {
            statistics.fileReads += 1
            guard let n = try? fs.read(i, offset: offset, count: count, { bytes -> Int in
                check(bytes, at: offset, count: count, size: size)
                return bytes.count
            }) else { return -1 }
            if n > 0 { statistics.fileReadsServed += 1 }
            return n
        }
        func check(_ bytes: UnsafeRawBufferPointer, at offset: UInt64, count: Int, size: UInt64) {
            if bytes.count > count || (offset >= size && bytes.count > 0) || (offset < size && UInt64(bytes.count) > size - offset) {
                fail("read-range", "\(bytes.count) bytes for \(count) at \(offset) of \(size)")
                return
            }
            guard strict, bytes.count > 0 else { return }
            if entry.damage != nil {
                return fail("read-damaged", "\(bytes.count) bytes served of a member with impossible numbers")
            }
            guard let expected else {
                // A member that does not verify: a deflated one is never served; a stored one only
                // during its first in-order pass, and never when it is an ELF file (docs/design.md).
                if entry.method == 8 { fail("read-unverified", "\(bytes.count) bytes served at \(offset) of a deflated member that does not decode") }
                else if entry.method == 0 {
                    if !inOrder {
                        fail("read-stored-unchecked", "\(bytes.count) bytes served at \(offset), out of order, of a stored member that does not verify")
                    } else if offset == 0 && bytes.count >= 4 && bytes[0] == 0x7F && bytes[1] == 0x45 && bytes[2] == 0x4C && bytes[3] == 0x46 {
                        fail("read-stored-unchecked", "an ELF member that does not verify was served")
                    }
                }
                return
            }
            guard offset <= UInt64(expected.count), UInt64(bytes.count) <= UInt64(expected.count) - offset,
                  expected[Int(offset)..<Int(offset) + bytes.count].elementsEqual(bytes) else {
                return fail("read-bytes", "\(bytes.count) bytes at \(offset) differ from the member's verified decode")
            }
        }
        let small = Int(1 + next() % 4096)
        var offset: UInt64 = 0
        var steps = 0
        while steps < 64 {  // in order
            let n = one(offset, small)
            if n <= 0 { break }
            offset += UInt64(n)
            steps += 1
        }
        inOrder = false
        let chunk: UInt64 = 512
        var k = size / chunk
        steps = 0
        while steps < 16 {  // reverse
            _ = one(k * chunk, Int(chunk))
            if k == 0 { break }
            k -= 1
            steps += 1
        }
        for _ in 0..<8 {  // random
            let at = next() % (size >= UInt64(Int64.max) ? UInt64(Int64.max) : size + 1)
            _ = one(at, Int(1 + next() % 4096))
        }
    }

    func checkLayout(_ index: ZipIndex, size: Int) {
        let size = UInt64(size)
        let (cdEnd, overflow) = index.centralDirectoryOffset.addingReportingOverflow(index.centralDirectorySize)
        if overflow || cdEnd > size {
            fail("index-layout", "central directory \(index.centralDirectoryOffset)+\(index.centralDirectorySize) past the end (\(size))")
        }
        if index.dataStart > index.centralDirectoryOffset {
            fail("index-layout", "data start \(index.dataStart) after the directory \(index.centralDirectoryOffset)")
        }
        if index.offsetShift > index.centralDirectoryOffset {
            fail("index-layout", "prefix \(index.offsetShift) longer than the data before the directory")
        }
        if index.comment.count > 65535 { fail("index-layout", "comment of \(index.comment.count) bytes") }
        if UInt64(index.entries.count) * 46 > index.centralDirectorySize {
            fail("index-layout", "\(index.entries.count) entries in \(index.centralDirectorySize) bytes")
        }
    }

    /// Name ranges lie inside `names`, back to back, in order.
    func checkNames(_ index: ZipIndex) {
        var next = 0
        for (i, e) in index.entries.enumerated() {
            let start = Int(e.nameOffset), end = start + Int(e.nameLength)
            if start != next || end > index.names.count {
                fail("index-names", "entry \(i): name at \(start)..<\(end), expected at \(next), names hold \(index.names.count)")
                return
            }
            next = end
        }
        if next != index.names.count { fail("index-names", "names hold \(index.names.count) bytes, entries use \(next)") }
    }

    /// One raw central-directory header, read independently of ZipIndex.
    struct RawEntry {
        var flags: UInt16
        var method: UInt16
        var crc32: UInt32
        var name: [UInt8]
        var extra: [UInt8]
        var hasUnicodePathField: Bool
    }

    /// Walks the central directory ZipIndex found, header by header, and compares.
    func walkCentralDirectory(_ input: [UInt8], _ index: ZipIndex) -> [RawEntry]? {
        let start = Int(index.centralDirectoryOffset), size = Int(index.centralDirectorySize)
        guard start + size <= input.count else { return nil }
        func u16(_ o: Int) -> Int { Int(input[o]) | Int(input[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) | UInt32(u16(o + 2)) << 16 }
        var raw: [RawEntry] = []
        var pos = start
        while pos < start + size {
            guard pos + 46 <= start + size, u32(pos) == 0x0201_4b50 else {
                fail("index-raw", "no central header at \(pos), but ZipIndex read one")
                return nil
            }
            let n = u16(pos + 28), x = u16(pos + 30), c = u16(pos + 32)
            guard pos + 46 + n + x + c <= start + size else {
                fail("index-raw", "header at \(pos) runs past the directory, but ZipIndex read it")
                return nil
            }
            let extra = Array(input[(pos + 46 + n)..<(pos + 46 + n + x)])
            var unicodePath = false
            var e = 0
            while e + 4 <= extra.count {
                let id = Int(extra[e]) | Int(extra[e + 1]) << 8, length = Int(extra[e + 2]) | Int(extra[e + 3]) << 8
                if id == 0x7075 { unicodePath = true }
                e += 4 + length
            }
            raw.append(RawEntry(flags: UInt16(u16(pos + 8)), method: UInt16(u16(pos + 10)), crc32: u32(pos + 16),
                                name: Array(input[(pos + 46)..<(pos + 46 + n)]), extra: extra, hasUnicodePathField: unicodePath))
            pos += 46 + n + x + c
        }
        guard raw.count == index.entries.count else {
            fail("index-raw", "\(raw.count) headers in the directory, ZipIndex has \(index.entries.count) entries")
            return nil
        }
        for (i, (r, e)) in zip(raw, index.entries).enumerated() {
            if r.flags != e.flags || r.method != e.method || r.crc32 != e.crc32 {
                fail("index-raw", "entry \(i): flags/method/crc differ from the header")
            }
            // UTF-8-flagged and ASCII names are kept byte for byte; others are decoded from CP437.
            let name = Array(index.name(of: e))
            if e.flags & 0x800 != 0 || !r.name.contains(where: { $0 >= 0x80 }) {
                if name != r.name { fail("index-raw", "entry \(i): name \(show(name)) for raw \(show(r.name))") }
            } else if String(validating: name, as: UTF8.self) == nil || name.count < r.name.count {
                fail("index-raw", "entry \(i): CP437 name \(show(r.name)) became \(show(name))")
            }
        }
        return raw
    }

    // MARK: the tree

    func checkTree(_ tree: Tree, umask: UInt16) {
        let nodes = tree.nodes
        let n = nodes.count
        let entries = tree.index.entries
        if nodes[0].kind != .directory || nodes[0].parent != 0 || nodes[0].isHidden {
            fail("tree-root", "the root is \(nodes[0].kind), parent \(nodes[0].parent), hidden \(nodes[0].isHidden)")
        }
        if tree.mtimes.count != n { fail("tree-structure", "\(tree.mtimes.count) mtimes for \(n) nodes") }
        var visible = 0
        var paths: [[UInt8]] = Array(repeating: [], count: n)
        for i in 1..<max(1, n) {
            let node = nodes[i]
            let name = Array(tree.name(of: i))
            if name.isEmpty || name.contains(UInt8(ascii: "/")) || name.contains(0) || name == [0x2E] || name == [0x2E, 0x2E]
                || name.count > PathRules.maxComponentLength {
                fail("tree-name", "node \(i) is named \(show(name))")
            }
            let p = Int(node.parent)
            guard p < i else {
                // Nodes come after their parents (pyzfs run extracts in this order).
                fail("tree-structure", "node \(i) has parent \(p)")
                continue
            }
            if nodes[p].kind != .directory { fail("tree-structure", "node \(i)'s parent \(p) is a \(nodes[p].kind)") }
            if nodes[p].isHidden { fail("tree-structure", "node \(i)'s parent \(p) is hidden") }
            paths[i] = p == 0 ? name : paths[p] + [UInt8(ascii: "/")] + name
            if node.isHidden {
                // Hidden: escaping symlinks, and the start profile (a file at the root).
                let profile = i == tree.profileNode && p == 0 && node.kind == .file && name.elementsEqual(StartProfile.memberName.utf8)
                if node.kind != .symlink && !profile { fail("tree-structure", "hidden node \(i) is a \(node.kind)") }
            } else {
                visible += 1
                let found = name.withUnsafeBytes { tree.child(of: p, named: $0) }
                if found != i { fail("tree-lookup", "node \(i) (\(show(paths[i]))) is found as \(found.map(String.init) ?? "nothing")") }
                if String(validating: paths[i], as: UTF8.self) != nil {
                    let path = tree.path(of: i)
                    let again = tree.lookup(path: path)
                    if again != i {
                        fail("tree-lookup-string", "lookup(path: \(path.debugDescription)) of node \(i) gives \(again.map(String.init) ?? "nil")")
                    }
                }
            }
            if node.entry < -1 || Int(node.entry) >= entries.count {
                fail("tree-entry", "node \(i) has entry \(node.entry)")
            } else if node.entry == -1 {
                if node.kind != .directory { fail("tree-entry", "\(node.kind) node \(i) has no entry") }
            } else {
                var member = Array(tree.index.name(of: entries[Int(node.entry)]))
                if member.last == UInt8(ascii: "/") { member.removeLast() }
                if member != paths[i] { fail("tree-entry", "node \(show(paths[i])) serves member \(show(member))") }
            }
            // Never group- or other-writable (docs/names.md); symlinks show 0777 as everywhere.
            if node.permissions & ~0o777 != 0 || node.permissions & umask != 0
                || (node.kind != .symlink && node.permissions & 0o022 != 0) {
                fail("tree-modes", "node \(show(paths[i])) has permissions \(String(node.permissions, radix: 8)) (umask \(String(umask, radix: 8)))")
            }
        }

        // Children: every visible node once, in its parent's list; counts agree.
        var seen = [Int](repeating: 0, count: n)
        var total = 0
        for i in 0..<n {
            let children = tree.children(of: i)
            if Int(nodes[i].childCount) != children.count { fail("tree-children", "node \(i): childCount \(nodes[i].childCount), \(children.count) children") }
            if nodes[i].kind != .directory && !children.isEmpty { fail("tree-children", "\(nodes[i].kind) \(i) has children") }
            total += children.count
            var directories = 0
            var names = Set<[UInt8]>()
            for c in children {
                let c = Int(c)
                guard c > 0 && c < n else { fail("tree-children", "node \(i) has child \(c)"); continue }
                seen[c] += 1
                if Int(nodes[c].parent) != i { fail("tree-children", "child \(c) of \(i) has parent \(nodes[c].parent)") }
                if nodes[c].isHidden { fail("tree-children", "hidden node \(c) is listed") }
                if nodes[c].kind == .directory { directories += 1 }
                if !names.insert(Array(tree.name(of: c))).inserted { fail("tree-children", "two children of \(i) named \(show(Array(tree.name(of: c))))") }
            }
            if Int(nodes[i].subdirectoryCount) != directories {
                fail("tree-children", "node \(i): subdirectoryCount \(nodes[i].subdirectoryCount), \(directories) directories")
            }
        }
        if total != visible { fail("tree-children", "\(total) listed children, \(visible) visible nodes") }
        for i in 1..<max(1, n) where seen[i] != (nodes[i].isHidden ? 0 : 1) {
            fail("tree-children", "node \(i) is listed \(seen[i]) times")
        }

        // Every member whose name is valid has a node at its path.
        var byPath: [[UInt8]: Int] = [:]
        for i in 1..<max(1, n) { byPath[paths[i]] = i }
        var ranges: [Range<Int>] = []
        for e in entries {
            let name = Array(tree.index.name(of: e))
            guard case .path = name.withUnsafeBytes({ PathRules.split($0, into: &ranges) }) else { continue }
            var path = name
            if path.last == UInt8(ascii: "/") { path.removeLast() }
            if byPath[path] == nil { fail("tree-entry", "member \(show(name)) has no node") }
        }

        // Symlinks: targets readable and non-empty; with symlinks=inside nothing visible leaves the mount.
        for (s, t) in tree.symlinkTargets {
            let s = Int(s)
            guard s < n, nodes[s].kind == .symlink else { fail("tree-symlink", "a target for non-link node \(s)"); continue }
            if t.isEmpty || t.contains(0) { fail("tree-symlink", "link \(show(paths[s])) -> \(show(t))") }
        }
        for i in 1..<max(1, n) where nodes[i].kind == .symlink && !nodes[i].isHidden {
            guard let t = tree.symlinkTargets[UInt32(i)] else {
                fail("tree-symlink", "visible link \(show(paths[i])) has no target")
                continue
            }
            guard tree.options.symlinks == .inside else { continue }
            var follows = 0
            if case .escape = resolve(tree, from: Int(nodes[i].parent), target: t, follows: &follows) {
                fail("tree-symlink-escape", "visible link \(show(paths[i])) -> \(show(t)) leaves the mount")
            }
        }
    }

    enum Resolution { case node(Int), escape, failure }

    /// Path resolution as the kernel does it in the mount: visible nodes only, `..` at the root
    /// leaves the mount, at most 40 links followed in all (ELOOP), ENOENT/ENOTDIR end it.
    func resolve(_ tree: Tree, from start: Int, target: [UInt8], follows: inout Int) -> Resolution {
        if target.first == UInt8(ascii: "/") { return .escape }
        var cur = start
        let parts = target.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
        for (k, part) in parts.enumerated() {
            if part.elementsEqual([0x2E]) { continue }
            if part.elementsEqual([0x2E, 0x2E]) {
                if cur == Tree.root { return .escape }
                cur = Int(tree.nodes[cur].parent)
                continue
            }
            guard let c = Array(part).withUnsafeBytes({ tree.child(of: cur, named: $0) }) else { return .failure }
            switch tree.nodes[c].kind {
            case .directory: cur = c
            case .file: return k == parts.count - 1 ? .node(c) : .failure
            case .symlink:
                follows += 1
                guard follows <= 40, let t = tree.symlinkTargets[UInt32(c)] else { return .failure }
                switch resolve(tree, from: Int(tree.nodes[c].parent), target: t, follows: &follows) {
                case .escape: return .escape
                case .failure: return .failure
                case let .node(x):
                    if k == parts.count - 1 { return .node(x) }
                    guard tree.nodes[x].kind == .directory else { return .failure }
                    cur = x
                }
            }
        }
        return .node(cur)
    }

    func checkBytecode(_ tree: Tree) {
        let index = BytecodeIndex(tree: tree)
        for (py, pycs) in index.candidates {
            let py = Int(py)
            guard tree.nodes[py].kind == .file, tree.name(of: py).suffix(3).elementsEqual(".py".utf8) else {
                fail("bytecode", "candidate source \(tree.path(of: py)) is not a .py file")
                continue
            }
            for pyc in pycs.map(Int.init) {
                let dir = Int(tree.nodes[pyc].parent)
                if tree.nodes[pyc].kind != .file || !tree.name(of: dir).elementsEqual("__pycache__".utf8)
                    || tree.nodes[dir].parent != tree.nodes[py].parent {
                    fail("bytecode", "\(tree.path(of: pyc)) is taken for \(tree.path(of: py))")
                }
            }
        }
        let (total, without) = index.sources(in: tree)
        if without > total { fail("bytecode", "\(without) of \(total) sources without bytecode") }
    }

    // MARK: members

    /// Decodes every member of up to 1 MiB (4 MiB in all) through pyzfs's reader, with libzip for
    /// compressed methods; what is returned must have the declared size and CRC-32.
    func decodeMembers(_ index: ZipIndex, _ reader: MemberReader) {
        var budget: UInt64 = 4 << 20
        for (i, e) in index.entries.enumerated() where e.uncompressedSize <= min(1 << 20, budget) {
            guard let bytes = try? reader.readWhole(i, limit: 1 << 20) else { continue }
            budget -= e.uncompressedSize
            statistics.membersDecoded += 1
            if UInt64(bytes.count) != e.uncompressedSize {
                fail("member", "entry \(i): \(bytes.count) bytes returned, \(e.uncompressedSize) declared")
            }
            let crc = bytes.withUnsafeBytes { CRC32.update(0, $0) }
            if crc != e.crc32 {
                // An empty member is its own case: libzip skips the CRC when there are no compressed bytes.
                fail(bytes.isEmpty ? "member-empty-crc" : "member", "entry \(i) (method \(e.method)): CRC-32 \(crc) returned, \(e.crc32) declared")
            }
            checkELF(bytes[...])
            _ = bytes.withUnsafeBytes { BytecodeIndex.timestampFields(ofHeader: $0) }
        }
    }

    // MARK: libzip

    func writeScratchFile(_ input: [UInt8]) -> Bool {
        let fd = open(scratchPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var done = 0
        while done < input.count {
            let n = input.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    /// libzip's listing of the same bytes (from the prefix pyzfs found) against pyzfs's.
    /// Returns whether libzip opened it.
    ///
    /// Where they may legitimately differ:
    /// - libzip refuses what pyzfs accepts (stricter checks): nothing to compare.
    /// - several end-of-central-directory signatures in the tail: libzip keeps the first that
    ///   parses (or the most consistent), pyzfs and CPython's zipfile the last; not compared.
    /// - names that are not plain ASCII and not flagged UTF-8: pyzfs decodes CP437 as CPython's
    ///   zipfile does; libzip keeps what looks like UTF-8 and maps control bytes to CP437 glyphs.
    ///   Compared only where both rules give the same answer.
    /// - an Info-ZIP Unicode Path field (0x7075): libzip takes the name from it, zipimport does not.
    /// - a NUL in a name: libzip's name is a C string (cut there); pyzfs skips such members.
    /// - method 99 (WinZip AES): libzip reports the real method from the AES field.
    func crossCheckLibzip(_ input: [UInt8], _ index: ZipIndex, raw: [RawEntry]?) -> Bool {
        let theirs: [LibzipEntry]
        do {
            theirs = try LibzipListing.entries(path: scratchPath, start: index.offsetShift)
        } catch {
            statistics.libzipRefused += 1
            return false
        }
        statistics.libzipOpened += 1
        // Mismatches are excused when libzip may have chosen another end record: a second
        // signature in its search window (the last 65,577 bytes after the prefix).
        var mismatches: [Violation] = []
        if theirs.count != index.entries.count {
            mismatches.append(Violation(check: "libzip-count", detail: "libzip lists \(theirs.count) members, pyzfs \(index.entries.count)"))
        } else {
            for (k, (ours, other)) in zip(index.entries, theirs).enumerated() {
                let name = Array(index.name(of: ours))
                if let r = raw?[k], !Self.libzipNameMayDiffer(r) {
                    if name != other.name {
                        mismatches.append(Violation(check: "libzip-name", detail: "entry \(k): pyzfs \(show(name)), libzip \(show(other.name))"))
                    }
                } else {
                    statistics.namesExempt += 1
                }
                // A member with impossible numbers keeps safe ones instead (ZipEntry.damage).
                if ours.damage == nil && (ours.uncompressedSize != other.size || ours.compressedSize != other.compressedSize) || ours.crc32 != other.crc32
                    || (ours.method != other.method && ours.method != 99) || ours.externalAttributes != other.externalAttributes {
                    mismatches.append(Violation(check: "libzip-fields", detail: "entry \(k) (\(show(name))): pyzfs size \(ours.uncompressedSize)/\(ours.compressedSize) crc \(ours.crc32) method \(ours.method) attributes \(ours.externalAttributes), libzip \(other.size)/\(other.compressedSize) crc \(other.crc32) method \(other.method) attributes \(other.externalAttributes)"))
                }
            }
        }
        if mismatches.isEmpty {
            statistics.libzipCompared += 1
            return true
        }
        var signatures = 0
        var i = max(Int(index.offsetShift), input.count - 65_577)
        while i + 4 <= input.count {
            if input[i] == 0x50, input[i + 1] == 0x4B, input[i + 2] == 5, input[i + 3] == 6 { signatures += 1 }
            i += 1
        }
        if signatures > 1 {
            statistics.libzipAmbiguous += 1
            if getenv("PYZFS_FUZZ_SHOW_EXCUSED") != nil {
                for m in mismatches.prefix(3) { print("excused (\(signatures) end-record signatures): \(m)") }
            }
            return true
        }
        statistics.libzipCompared += 1
        for m in mismatches { fail(m.check, m.detail) }
        return true
    }

    /// Whether libzip's name rules (guessed encoding, Unicode Path field, C strings) can give a
    /// different name than CPython's, which pyzfs follows, for this raw header.
    static func libzipNameMayDiffer(_ r: RawEntry) -> Bool {
        if r.hasUnicodePathField || r.name.contains(0) { return true }
        if r.flags & 0x800 != 0 { return false }
        // Plain printable ASCII (and tab, CR, LF): both keep it as it is.
        let plain = r.name.allSatisfy { ($0 >= 0x20 && $0 < 0x80) || $0 == 9 || $0 == 10 || $0 == 13 }
        if plain { return false }
        // Control bytes: libzip maps them to glyphs; pyzfs keeps them.
        if r.name.contains(where: { $0 < 0x20 && $0 != 9 && $0 != 10 && $0 != 13 }) { return true }
        // High bytes: libzip keeps what looks like UTF-8, decodes the rest from CP437 (as pyzfs).
        return looksLikeUTF8(r.name) || r.name.contains(where: { $0 == 9 || $0 == 10 || $0 == 13 || $0 == 0x7F })
    }

    /// libzip 1.7's test: every byte >= 0x80 starts a 2-4 byte sequence of continuation bytes.
    static func looksLikeUTF8(_ b: [UInt8]) -> Bool {
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            let more: Int
            if c & 0xE0 == 0xC0 { more = 1 } else if c & 0xF0 == 0xE0 { more = 2 } else if c & 0xF8 == 0xF0 { more = 3 } else { return false }
            if i + more >= b.count { return false }
            for j in 1...more where b[i + j] & 0xC0 != 0x80 { return false }
            i += more + 1
        }
        return true
    }

    // MARK: the pycache overlay

    /// importlib's writes into `__pycache__`, driven by the input's first bytes, within what the
    /// kernel lets through (offsets and sizes below 2^63). The bytes held must match the files.
    func checkOverlay(_ input: [UInt8]) {
        guard input.count >= 2 else { return }
        let budget = 4096
        let overlay = PycacheOverlay(budget: budget, firstInode: 100)
        var inodes: [UInt64] = [1]
        let names: [[UInt8]] = ["__pycache__", "m.cpython-311.pyc", "m.cpython-311.pyc.42", "m.cpython-311.pyc.7",
                                "x.pyc", ".pyc", "a.pyc.", "m.pyc.1x", "__init__.py",
                                // Over 255 bytes: a pyc and a temporary, which must never be taken.
                                String(repeating: "n", count: 252) + ".pyc", String(repeating: "n", count: 252) + ".pyc.42",
                                ].map { Array($0.utf8) }
        var p = 0
        func next() -> Int {
            defer { p += 1 }
            return p < input.count ? Int(input[p]) : 0
        }
        func name() -> [UInt8] { names[next() % names.count] }
        func inode() -> UInt64 {
            let k = next()
            return k == 255 ? UInt64(k) << 20 : inodes[k % inodes.count]
        }
        // The FUSE layer hands write, truncate and read only inodes the overlay contains.
        func overlayInode() -> UInt64 {
            let ino = inode()
            return overlay.contains(ino) ? ino : 1 << 30
        }
        // "overlay-large" relaxed: offsets and sizes below 2^32, to fuzz on past the known overflow.
        let largest: UInt64 = relaxed.contains("overlay-large") ? 1 << 32 : UInt64(Int64.max)
        func offset() -> UInt64 {
            switch next() % 4 {
            case 0: return UInt64(next())
            case 1: return UInt64(next() << 8 | next())
            case 2: return largest - UInt64(next())
            default: return min(largest, UInt64(1) << UInt64(next() % 63))
            }
        }
        let limit = min(input.count, 512)
        while p < limit {
            statistics.overlayOperations += 1
            let now = Int64(p)
            switch next() % 8 {
            case 0: if let i = try? overlay.mkdir(parent: inode(), name: name(), now: now) { inodes.append(i) }
            case 1:
                let parent = inode()
                if let i = try? overlay.create(parent: parent, parentIsPycache: next() & 1 == 0, name: name(), now: now) { inodes.append(i) }
            case 2:
                let ino = overlayInode()
                let count = next() % 64
                var off = offset()
                if off > UInt64(Int64.max) - UInt64(count) { off = UInt64(Int64.max) - UInt64(count) }
                let data = [UInt8](repeating: 0x61, count: count)
                _ = data.withUnsafeBytes { try? overlay.write(ino, offset: off, bytes: $0, now: now) }
            case 3:
                let ino = overlayInode()
                let size = min(offset(), UInt64(Int64.max))
                try? overlay.truncate(ino, to: size)
            case 4:
                let ino = overlayInode(), off = min(offset(), UInt64(Int64.max)), count = next() << 4
                _ = try? overlay.read(ino, offset: off, count: count) { $0.count }
            case 5:
                let parent = inode(), n1 = name(), n2 = name()
                try? overlay.rename(parent: parent, name: n1, newParent: next() & 1 == 0 ? parent : inode(), newName: n2,
                                    targetInArchive: next() & 1 == 0)
            case 6: try? overlay.unlink(parent: inode(), name: name())
            default:
                _ = overlay.lookup(parent: inode(), name: name())
                _ = overlay.children(of: inode())
            }
            // The bytes accounted equal the live files' sizes, and stay within the budget.
            var held = 0
            for ino in inodes where overlay.contains(ino) {
                if let node = overlay.node(ino), !node.isDirectory { held += node.data.count }
            }
            let stats = overlay.statistics
            if stats.bytes != held || stats.bytes + stats.entryBytes > budget || stats.bytes < 0 {
                fail("overlay", "the overlay counts \(stats.bytes) bytes, files hold \(held) (budget \(budget))")
                return
            }
            // Entries: as many as live nodes, each number given once, no name over 255 bytes.
            let live = inodes.filter { overlay.node($0) != nil }
            if stats.entries != live.count || Set(inodes).count != inodes.count {
                fail("overlay", "the overlay counts \(stats.entries) entries, \(live.count) live, inodes \(inodes)")
                return
            }
            for ino in inodes where overlay.children(of: ino).contains(where: { $0.name.count > PathRules.maxComponentLength }) {
                fail("overlay", "inode \(ino) holds a name over \(PathRules.maxComponentLength) bytes")
                return
            }
        }
    }
}

/// A name for messages: printable ASCII as is, other bytes as \xNN.
func show(_ bytes: [UInt8]) -> String {
    var s = "\""
    for b in bytes.prefix(200) {
        if b >= 0x20 && b < 0x7F && b != 0x22 && b != 0x5C { s.append(Character(Unicode.Scalar(b))) } else {
            s += "\\x" + String(b, radix: 16).leftPad(2)
        }
    }
    return s + (bytes.count > 200 ? "...\"(\(bytes.count) bytes)" : "\"")
}

func show(_ bytes: ArraySlice<UInt8>) -> String { show(Array(bytes)) }

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// CRC-32 (ISO-HDLC), the check zip uses; independent of the libraries under test.
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }
}
