import FoundationEssentials
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// What `pyzfs inspect` reports.
public struct InspectionReport: Codable {
    public struct Distribution: Codable { var name: String; var version: String; var tags: [String]; var path: String; var problems: [String] }
    public struct Extension: Codable {
        public var path: String; var size: UInt64; var compressed: Bool; var machine: String?; var glibc: String?; var problems: [String]
    }
    public var archive: String
    public var size: UInt64
    public var members: Int
    var prefixBytes: UInt64
    var prefixCountedInOffsets: Bool
    public var interpreterLine: String?
    public var kind: String
    public var entryPoint: String?
    public var interpreter: InterpreterFacts?
    var interpreterPath: String?
    var interpreterNote: String?
    public var distributions: [Distribution]
    public var extensions: [Extension]
    var sharedLibraries: [Extension]
    var compressedSharedLibraryBytes: UInt64
    /// ELF programs (executable members that are not shared objects, such as a wheel's bin/ruff).
    public var executables: [Extension]
    var timestampPycs: Int
    var hashPycs: Int
    var sourcesWithoutBytecode: Int
    /// `.py` sources (other than `__main__.py`) and those with no pyc this interpreter loads: none
    /// in `__pycache__` with its cache tag (any tag when the interpreter did not answer) and no
    /// legacy `NAME.pyc` beside the source.
    var sources: Int
    var sourcesWithoutBytecodeForInterpreter: Int
    public var undecodable: [String]
    public var encrypted: [String]
    var outOfTreeSymlinks: [String]
    public var skippedNames: [String]
    public var problems: [String]

    /// Whether most sources have no pyc the interpreter loads (shiv and pex archives, plain zipapps).
    public var lacksBytecode: Bool { sources > 0 && sourcesWithoutBytecodeForInterpreter * 2 > sources }

    public var text: String {
        var t: [String] = []
        t.append("archive: \(archive) (\(formatSize(size)), \(members) members)")
        if prefixBytes > 0 {
            t.append("prefix: \(prefixBytes) bytes\(interpreterLine.map { ", #!\($0)" } ?? "")\(prefixCountedInOffsets ? "" : " (cat-ed onto the zip: offsets do not count it)")")
        }
        t.append("kind: \(kind)\(entryPoint.map { ", entry point \($0)" } ?? "")")
        if let f = interpreter {
            t.append("interpreter: \(interpreterPath ?? "?") (\(f.implementation) \(f.version) on \(f.machine)\(f.libc.isEmpty ? "" : " with \(f.libc) \(f.libcVersion)"))")
        } else if let note = interpreterNote {
            t.append("interpreter: \(note)")
        }
        t.append("distributions (\(distributions.count)):")
        for d in distributions {
            t.append("  \(d.name) \(d.version)  \(d.tags.joined(separator: ", "))")
        }
        let bad = extensions.filter { !$0.problems.isEmpty }
        t.append("native extensions: \(extensions.count)\(interpreter == nil ? "" : bad.isEmpty ? ", all loadable by this interpreter" : ", \(bad.count) cannot load")")
        t.append("vendored shared libraries: \(sharedLibraries.count)")
        let compressed = (extensions + sharedLibraries).filter(\.compressed)
        if !compressed.isEmpty {
            t.append("shared libraries stored compressed: \(compressed.count) (\(formatSize(compressedSharedLibraryBytes))), each inflated on first use; pyzfs optimize stores them")
        }
        t.append("executables: \(executables.count)")
        let inflated = executables.filter(\.compressed)
        if !inflated.isEmpty {
            let size = inflated.reduce(UInt64(0)) { $0.addingSaturating($1.size) }
            t.append("executables stored compressed: \(inflated.count) (\(formatSize(size))), each inflated whole on first run; pyzfs optimize stores them")
        }
        t.append("bytecode: \(timestampPycs) timestamp pycs, \(hashPycs) hash-based pycs, \(sourcesWithoutBytecode) sources without bytecode")
        if lacksBytecode {
            let tag = interpreter?.cacheTag.map { " for \($0)" } ?? ""
            t.append("most sources lack bytecode\(tag): \(sourcesWithoutBytecodeForInterpreter) of \(sources), each compiled on every start (once per mount with the in-memory __pycache__); pyzfs optimize adds it")
        }
        t.append("members the linked libraries cannot decompress: \(undecodable.isEmpty ? "none" : undecodable.joined(separator: ", "))")
        t.append("encrypted members: \(encrypted.isEmpty ? "none" : encrypted.joined(separator: ", "))")
        t.append("symlinks out of the archive (hidden): \(outOfTreeSymlinks.isEmpty ? "none" : outOfTreeSymlinks.joined(separator: ", "))")
        if !skippedNames.isEmpty { t.append("skipped names: \(skippedNames.count) (pyzfs mount lists them)") }
        if problems.isEmpty {
            t.append("problems: none")
        } else {
            t.append("problems (\(problems.count)):")
            for p in problems { t.append("  " + p) }
        }
        return t.joined(separator: "\n")
    }
}

/// Gathers an `InspectionReport`.
public struct Inspector {
    public let opened: OpenedArchive
    /// Whether the linked decoders decompress a compression method (libzip's answer, given by the caller).
    public let decodes: (UInt16) -> Bool

    public init(opened: OpenedArchive, decodes: @escaping (UInt16) -> Bool) {
        self.opened = opened
        self.decodes = decodes
    }
    public var fs: ArchiveFileSystem { opened.filesystem }
    public var tree: Tree { fs.tree }

    public func bytes(of node: Int, limit: UInt64 = 1 << 30) -> [UInt8]? {
        guard tree.nodes[node].kind == .file, tree.nodes[node].entry >= 0 else { return nil }
        return try? fs.reader.readWhole(Int(tree.nodes[node].entry), limit: limit)
    }

    public func report(python: String?) -> InspectionReport {
        let index = opened.index
        let line = Zipapp.interpreterLine(of: opened.file, index: index)
        var facts: InterpreterFacts? = nil
        var interpreterPath: String? = nil
        var note: String? = nil
        do {
            let interpreter = try Interpreter.resolve(python: python, opened: opened)
            interpreterPath = interpreter.path
            facts = InterpreterProbe.facts(of: interpreter.path)
            if facts == nil { note = "\(interpreter.path) did not answer; compatibility not checked" }
        } catch {
            note = "\(error.message); compatibility not checked"
        }

        var distributions: [InspectionReport.Distribution] = []
        var extensions: [InspectionReport.Extension] = []
        var libraries: [InspectionReport.Extension] = []
        var executables: [InspectionReport.Extension] = []
        var compressedBytes: UInt64 = 0
        var timestamp = 0, hashed = 0
        var undecodable: [String] = [], encrypted: [String] = []
        let wheelTags = facts == nil ? [:] : wheelTagsByFile()
        for (i, node) in tree.nodes.enumerated() where !node.isHidden {
            let name = String(decoding: tree.name(of: i), as: UTF8.self)
            if node.kind == .directory && name.hasSuffix(".dist-info") {
                distributions.append(distribution(i, name: name, facts: facts))
                continue
            }
            guard node.kind == .file else { continue }
            let entry = index.entries[Int(node.entry)]
            let path = tree.path(of: i)
            if entry.isEncrypted { encrypted.append(path); continue }
            if entry.method != 0 && entry.method != 8 && !decodes(entry.method) {
                undecodable.append("\(path) (\(compressionMethodName(entry.method)))")
                continue
            }
            if name.hasSuffix(".pyc") {
                if let head = try? fs.read(i, offset: 0, count: 16, { Array($0) }), head.count >= 8 {
                    if head[4] & 1 == 0 { timestamp += 1 } else { hashed += 1 }
                }
                continue
            }
            guard name.hasSuffix(".so") || name.contains(".so.") else {
                // Only members marked executable are read (a compressed one is inflated for it).
                if node.permissions & 0o111 != 0, let head = try? fs.read(i, offset: 0, count: 4, { Array($0) }), head == [0x7f, 0x45, 0x4c, 0x46] {
                    executables.append(.init(path: path, size: entry.uncompressedSize, compressed: entry.method != 0,
                                             machine: nil, glibc: nil, problems: []))
                }
                continue
            }
            let elf = bytes(of: i).flatMap { b in b.withUnsafeBytes { ELFDependencies.parse($0) } }
            let inLibs = tree.path(of: Int(node.parent)).hasSuffix(".libs")
            var problems = facts.map { Compatibility.problems(extensionNamed: name, elf: elf, for: $0) } ?? []
            if let facts, ExtensionTag(fileName: name)?.abi == "abi3", let tags = wheelTags[path] {
                problems += Compatibility.problems(abi3ExtensionOf: tags, for: facts)
            }
            if elf == nil { problems.append("not a readable ELF shared object") }
            let item = InspectionReport.Extension(
                path: path, size: entry.uncompressedSize, compressed: entry.method != 0, machine: elf?.machineName,
                glibc: elf?.glibcRequired.map { "\($0.0).\($0.1)" }, problems: problems)
            if entry.method != 0 { compressedBytes = compressedBytes.addingSaturating(entry.uncompressedSize) }
            if inLibs || !name.hasSuffix(".so") { libraries.append(item) } else { extensions.append(item) }
        }
        let sources = fs.bytecode.sources(in: tree)
        let forInterpreter = sourcesWithoutBytecode(cacheTag: facts?.cacheTag)
        let hidden = tree.warnings.filter { $0.reason.hasPrefix("hidden: the symlink") }.map(\.name)
        let skipped = tree.warnings.filter { $0.reason.hasPrefix("skipped") }.map(\.description)

        var problems: [String] = []
        for e in extensions + libraries where !e.problems.isEmpty {
            problems.append("\(e.path): \(e.problems.joined(separator: "; "))\(facts.map { " (this interpreter: \($0.summary))" } ?? "")")
        }
        for d in distributions where !d.problems.isEmpty {
            problems.append("\(d.name) \(d.version): no wheel tag fits this interpreter (\(d.problems.joined(separator: "; ")))")
        }
        problems += undecodable.map { "\($0): the linked libraries cannot decompress it (reads fail with EIO)" }
        problems += encrypted.map { "\($0): encrypted (reads fail with EACCES)" }
        let (kind, entryPoint) = kindAndEntryPoint()
        return InspectionReport(
            archive: opened.path, size: opened.file.size, members: index.entries.count, prefixBytes: index.dataStart,
            prefixCountedInOffsets: index.offsetShift == 0, interpreterLine: line?.joined(separator: " "), kind: kind,
            entryPoint: entryPoint, interpreter: facts, interpreterPath: interpreterPath, interpreterNote: note,
            distributions: distributions, extensions: extensions, sharedLibraries: libraries,
            compressedSharedLibraryBytes: compressedBytes, executables: executables, timestampPycs: timestamp, hashPycs: hashed,
            sourcesWithoutBytecode: sources.withoutBytecode, sources: sources.total,
            sourcesWithoutBytecodeForInterpreter: forInterpreter, undecodable: undecodable, encrypted: encrypted,
            outOfTreeSymlinks: hidden, skippedNames: skipped, problems: problems)
    }

    /// How many `.py` sources (not `__main__.py`) have neither `__pycache__/NAME.TAG[.opt-N].pyc`
    /// for `cacheTag` (any pyc there when nil) nor a legacy `NAME.pyc` beside them.
    func sourcesWithoutBytecode(cacheTag: String?) -> Int {
        let tagged = cacheTag.map { Array(".\($0).".utf8) }
        var without = 0
        for (i, node) in tree.nodes.enumerated() where node.kind == .file && !node.isHidden {
            let name = tree.name(of: i)
            guard name.count > 3, name.suffix(3).elementsEqual(".py".utf8), !name.elementsEqual("__main__.py".utf8) else { continue }
            let pycs = fs.bytecode.candidates[UInt32(i)] ?? []
            let fits = pycs.contains { pyc in
                guard let tagged else { return true }
                // NAME.TAG.pyc or NAME.TAG.opt-N.pyc: ".TAG." follows the source's stem.
                let pycName = Array(tree.name(of: Int(pyc)))
                return pycName[(name.count - 3)...].starts(with: tagged)
            }
            let legacy = (Array(name) + [UInt8(ascii: "c")]).withUnsafeBytes { tree.child(of: Int(node.parent), named: $0) }
            if !fits && legacy.map({ tree.nodes[$0].kind == .file }) != true { without += 1 }
        }
        return without
    }

    func distribution(_ i: Int, name: String, facts: InterpreterFacts?) -> InspectionReport.Distribution {
        var dname = String(name.dropLast(".dist-info".count))
        var version = ""
        if let dash = dname.lastIndex(of: "-") {
            version = String(dname[dname.index(after: dash)...])
            dname = String(dname[..<dash])
        }
        func field(_ text: String, _ key: String) -> [String] {
            text.split(separator: "\n").filter { $0.hasPrefix(key + ": ") }.map { String($0.dropFirst(key.count + 2)).trimmingCharacters(in: " \r") }
        }
        if let m = tree.child(of: i, named: "METADATA"), let text = bytes(of: m, limit: 1 << 20).map({ String(decoding: $0, as: UTF8.self) }) {
            dname = field(text, "Name").first ?? dname
            version = field(text, "Version").first ?? version
        }
        var tags: [String] = []
        if let w = tree.child(of: i, named: "WHEEL"), let text = bytes(of: w, limit: 1 << 20).map({ String(decoding: $0, as: UTF8.self) }) {
            tags = field(text, "Tag")
        }
        let problems = facts.map { Compatibility.problems(wheelTags: tags.compactMap(WheelTag.init), for: $0) } ?? []
        return .init(name: dname, version: version, tags: tags, path: tree.path(of: i), problems: problems)
    }

    func kindAndEntryPoint() -> (String, String?) {
        do {
            if let app = try BundledApp(opened) {
                let kind = app.kind.rawValue + (app.toolVersion.map { " \($0)" } ?? "") + ", runs in place with pyzfs run"
                return (kind, app.entryPoint ?? app.script.map { "script \($0)" })
            }
        } catch {
            return ("shiv or pex with unreadable metadata: \(error.message)", nil)
        }
        if tree.lookup(path: "__main__.py") != nil { return ("zipapp (__main__.py)", nil) }
        return ("zip (no __main__.py)", nil)
    }
}

/// Asks an interpreter what it can load, in a few milliseconds (-I -S: no site, no imports but
/// os and sys), so that pyzfs run can afford it while it mounts.
struct InterpreterProbe {
    public static let script = """
    import os, sys
    i = sys.implementation
    v = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    libc, _, version = (v or "musl ").partition(" ") if getattr(i, "_multiarch", "").endswith("musl") or v else ("", "", "")
    print("|".join([".".join(map(str, sys.version_info[:3])), i.name, i.cache_tag or "",
                    (i.cache_tag + "-" + i._multiarch) if getattr(i, "_multiarch", None) and i.cache_tag else "",
                    os.uname().machine, libc, version]))
    """
    public let process: Subprocess

    /// Starts the interpreter; `finish()` collects its answer.
    public static func start(_ python: String) -> InterpreterProbe? {
        Subprocess.start([python, "-I", "-S", "-c", Self.script], captureOutput: true, quiet: true).map { InterpreterProbe(process: $0) }
    }

    /// The interpreter's answer (nil if it gave none).
    public func finish() -> InterpreterFacts? {
        let out = process.finish().output
        let f = String(decoding: out, as: UTF8.self).trimmingCharacters(in: " \n").split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard f.count == 7, !f[0].isEmpty else { return nil }
        return InterpreterFacts(version: f[0], implementation: f[1], cacheTag: f[2].isEmpty ? nil : f[2],
                                soabi: f[3].isEmpty ? nil : f[3], machine: f[4], libc: f[5], libcVersion: f[6])
    }

    public static func facts(of python: String) -> InterpreterFacts? { start(python)?.finish() }

    /// The facts of a CPython binary named `pythonX.Y` (after symlinks) on this system, without
    /// running it; nil for anything else (a wrapper, a pyenv shim, even one named `pythonX.Y`:
    /// not an ELF file), which must be asked.
    static func quickFacts(of python: String) -> InterpreterFacts? {
        guard let real = realpath(python, nil) else { return nil }
        defer { free(real) }
        let path = string(fromCString: real)
        guard isELF(path) else { return nil }
        let name = String(path.split(separator: "/").last ?? "")
        guard name.hasPrefix("python"), let dot = name.firstIndex(of: "."),
              let major = Int(name[name.index(name.startIndex, offsetBy: 6)..<dot]),
              let minor = Int(name[name.index(after: dot)...]) else { return nil }
        var u = utsname()
        uname(&u)
        let machine = withUnsafeBytes(of: u.machine) { raw -> String in
            let b = raw.bindMemory(to: UInt8.self)
            return String(decoding: b[0..<(b.firstIndex(of: 0) ?? b.count)], as: UTF8.self)
        }
        typealias Version = @convention(c) () -> UnsafePointer<CChar>?
        let glibc = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gnu_get_libc_version")
            .flatMap { unsafeBitCast($0, to: Version.self)() }.map { string(fromCString: $0) }
        let tag = "cpython-\(major)\(minor)"
        return InterpreterFacts(version: "\(major).\(minor)", implementation: "cpython", cacheTag: tag,
                                soabi: glibc == nil ? nil : "\(tag)-\(machine)-linux-gnu", machine: machine,
                                libc: glibc == nil ? "" : "glibc", libcVersion: glibc ?? "")
    }
}

/// The warnings pyzfs run prints before starting an app whose native extensions cannot load in
/// the chosen interpreter (the check of pyzfs inspect, on file names and wheel tags only).
public enum StartCheck {
    /// Starts finding out about the interpreter while the mount is made.
    public static func begin(_ interpreter: Interpreter, opened: OpenedArchive) -> (() -> InterpreterFacts?)? {
        let tree = opened.filesystem.tree
        let tagged = tree.nodes.indices.contains { i in
            tree.nodes[i].kind == .file && ExtensionTag(fileName: String(decoding: tree.name(of: i), as: UTF8.self))?.abi?.hasPrefix("cpython-") == true
        }
        guard tagged, readEnvironment("PYZFS_NO_CHECK") == nil else { return nil }
        if let quick = InterpreterProbe.quickFacts(of: interpreter.path) { return { quick } }
        guard let probe = InterpreterProbe.start(interpreter.path) else { return nil }
        return { probe.finish() }
    }

    /// Warns about extensions that cannot load (at most five lines).
    public static func warn(_ facts: InterpreterFacts?, opened: OpenedArchive) {
        guard let facts else { return }
        let tree = opened.filesystem.tree
        var problems: [String] = []
        for (i, n) in tree.nodes.enumerated() where n.kind == .file && !n.isHidden {
            let name = String(decoding: tree.name(of: i), as: UTF8.self)
            guard name.hasSuffix(".so") else { continue }
            let p = Compatibility.problems(extensionNamed: name, elf: nil, for: facts)
            if !p.isEmpty { problems.append("\(tree.path(of: i)) cannot load: \(p.joined(separator: "; "))") }
        }
        for p in problems.prefix(5) { log.warning("\(p) (this interpreter: \(facts.summary))") }
        if problems.count > 5 { log.warning("\(problems.count - 5) more extensions cannot load (pyzfs inspect lists them)") }
    }
}
