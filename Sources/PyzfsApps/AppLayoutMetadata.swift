import FoundationEssentials
import PyzfsCore

/// What a shiv or pex archive records about its app: read from `environment.json` (shiv) or
/// `PEX-INFO` (pex) and from the distributions it bundles, without mounting. Paths are relative
/// to the archive's root ("" is the root). `pyzfs run` starts the app from it; `pyzfs inspect`
/// can report it.
public struct BundledApp: Sendable {
    public enum Kind: String, Sendable {
        case shiv, pex
    }

    /// What the tool's start-up code runs.
    public enum Entry: Equatable, Sendable {
        /// `module:attr.attr` called with no arguments; its result is the exit status.
        case callable(module: String, attributes: [String])
        /// A module run as `__main__`.
        case module(String)
        /// A Python script in the archive run as `__main__` (shiv's `site-packages/bin/NAME`, a pex
        /// distribution's data script), with `sys.argv[0]` set to `argv0` when the tool does so.
        case script(path: String, argv0: String?)
        /// A script that is not Python (pex runs it with the app's arguments).
        case executable(path: String)
        /// No entry point: an interpreter over the app's path (`-c CODE`, `-m MODULE`, a file, `-`
        /// or an interactive prompt), as both tools offer.
        case interpreter
    }

    /// A distribution the archive bundles.
    public struct Distribution: Equatable, Sendable {
        /// The project name as its metadata directory (or wheel file) spells it.
        public var name: String
        public var version: String
        /// Its `.dist-info` directory, or nil when it is kept as a `.whl` file.
        var metadataDirectory: String?
        /// pex: the wheel's tags from its file name (`cp311-cp311-manylinux_2_17_x86_64`).
        public var wheelTags: String?
        /// pex: where the wheel's scripts and data were stashed (`.deps/NAME.whl/.prefix`).
        var stash: String? = nil
        /// The sys.path entries it adds: shiv's `site-packages`, pex's `.deps/NAME.whl`, or what
        /// pex's `.layout.json` says.
        var sysPath: [String] = []
    }

    /// pex's inherit_path: whether the interpreter's own site-packages stay on sys.path.
    enum InheritPath: String, Sendable {
        /// Dropped (the default).
        case `false`
        /// Kept, before the app's distributions.
        case prefer
        /// Kept, after the app's distributions.
        case fallback
    }

    public let kind: Kind
    /// The shiv or pex version that built the archive.
    public let toolVersion: String?
    /// The recorded entry point (`module:function`, or a module), before environment overrides.
    public let entryPoint: String?
    /// The recorded script name (a console script, or a script a distribution installs), before
    /// environment overrides; shiv and pex record an entry point instead when `-c` names a
    /// console script.
    public let script: String?
    /// Directories put on sys.path as site directories (their .pth files processed), in order:
    /// shiv's `site-packages`; each pex distribution's chroot (or `.whl` file).
    let sitePackages: [String]
    /// pex: the user code's directory, first on sys.path (the archive root); nil for shiv, whose
    /// root is first on sys.path as the archive itself is.
    let userCode: String?
    public let distributions: [Distribution]

    // pex settings (empty for shiv)
    let inheritPath: InheritPath
    let injectEnvironment: [String: String]
    let injectArguments: [String]
    let injectPythonArguments: [String]
    /// pex's hermetic boot: a --venv pex whose venv scripts run with -I (the default), or
    /// another pex with inherit_path false.
    let hermeticBoot: Bool
    /// Whether it is a --venv pex.
    let isVenv: Bool
    /// Interpreter constraints such as `CPython>=3.9,<3.13`, one of which must hold.
    let interpreterConstraints: [String]
    /// `oldest` or `newest`: which interpreter meeting the constraints pex prefers.
    let interpreterSelection: String
    /// Whether PEX_* variables are removed before the app runs.
    let stripsToolEnvironment: Bool
    /// Variables set to the path of a resource found on sys.path (pex bind_resource_paths).
    let resourceBindings: [String: String]

    // shiv settings
    /// SHIV_EXTEND_PYTHONPATH: the app's paths exported in PYTHONPATH for subprocesses.
    let extendsPythonPath: Bool
    /// SHIV_PREPEND_PYTHONPATH: a directory put first on sys.path.
    let prependedPath: String?
    /// A script shiv runs before the entry point (`site-packages/bin/NAME`).
    public let preamble: String?
    /// The name of shiv's extraction directory, `ARCHIVE-NAME_BUILD-ID`, which preambles read
    /// (`site_packages.parent`); nil for a pex.
    public let shivDirectoryName: String?

    private let tree: Tree
    private let reader: MemberReader
}

// MARK: reading

extension BundledApp {
    /// The archive's shiv or pex metadata, or nil for any other archive: shiv has
    /// `environment.json` and `_bootstrap/` at its root, pex has `PEX-INFO`.
    /// - Throws: a `Failure` (exit 125) when the metadata is there but malformed.
    public init?(_ opened: OpenedArchive) throws(Failure) {
        let tree = opened.filesystem.tree
        switch Self.kind(of: tree) {
        case .pex?: try self.init(pex: opened, info: tree.lookup(path: "PEX-INFO")!)
        case .shiv?: try self.init(shiv: opened, environment: tree.lookup(path: "environment.json")!)
        case nil: return nil
        }
    }

    /// Whether the tree is a shiv's or a pex's, by the files named above (nothing is read).
    public static func kind(of tree: Tree) -> Kind? {
        func has(_ path: String, _ kind: NodeKind) -> Bool { tree.lookup(path: path).map { tree.nodes[$0].kind == kind } ?? false }
        if has("PEX-INFO", .file) { return .pex }
        if has("environment.json", .file) && has("_bootstrap", .directory) { return .shiv }
        return nil
    }

    private init(shiv opened: OpenedArchive, environment node: Int) throws(Failure) {
        let fail = { (why: String) in Failure(Exit.runFailed, "cannot run \(opened.path) as a shiv: \(why)") }
        let tree = opened.filesystem.tree
        let json = try Self.decode(ShivEnvironment.self, node, in: opened, name: "environment.json", fail: fail)
        guard let site = tree.lookup(path: "site-packages"), tree.nodes[site].kind == .directory else {
            throw fail("it has no site-packages directory")
        }
        var distributions: [Distribution] = []
        for child in tree.children(of: site) where tree.nodes[Int(child)].kind == .directory {
            let name = String(decoding: tree.name(of: Int(child)), as: UTF8.self)
            guard name.hasSuffix(".dist-info") else { continue }
            let (project, version) = Self.splitNameVersion(String(name.dropLast(".dist-info".count)))
            distributions.append(Distribution(name: project, version: version,
                                              metadataDirectory: "site-packages/" + name, sysPath: ["site-packages"]))
        }
        kind = .shiv
        toolVersion = json.shivVersion
        entryPoint = json.entryPoint.flatMap { $0.isEmpty ? nil : $0 }
        script = json.script.flatMap { $0.isEmpty ? nil : $0 }
        sitePackages = ["site-packages"]
        userCode = nil
        self.distributions = distributions
        inheritPath = .false
        injectEnvironment = [:]
        injectArguments = []
        injectPythonArguments = []
        hermeticBoot = false
        isVenv = false
        interpreterConstraints = []
        interpreterSelection = "oldest"
        stripsToolEnvironment = false
        resourceBindings = [:]
        extendsPythonPath = json.extendPythonPath ?? false
        prependedPath = json.prependPythonPath.flatMap { $0.isEmpty ? nil : $0 }
        preamble = json.preamble.flatMap { $0.isEmpty ? nil : $0 }
        // shiv: Path(archive).resolve().name + "_" + build_id; opened.path is resolved already.
        shivDirectoryName = json.buildId.map { String(opened.path.split(separator: "/").last ?? "") + "_" + $0 }
        // A preamble is given that name as its directory's: one that cannot name a directory is
        // the archive's fault, not the scratch place's.
        if preamble != nil, let name = shivDirectoryName, let buildId = json.buildId,
           buildId.contains("/") || buildId.utf8.contains(0) || name.utf8.count > 255 {
            throw fail("its environment.json's build_id '\(buildId.prefix(80))\(buildId.count > 80 ? "..." : "")' cannot name shiv's extraction directory (\(name.utf8.count > 255 ? "over 255 bytes with the archive's name" : "a name cannot hold '/'")); the archive is damaged: rebuild it with shiv")
        }
        self.tree = tree
        reader = opened.filesystem.reader
    }

    private init(pex opened: OpenedArchive, info node: Int) throws(Failure) {
        let fail = { (why: String) in Failure(Exit.runFailed, "cannot run \(opened.path) as a pex: \(why)") }
        let tree = opened.filesystem.tree
        let info = try Self.decode(PexInfo.self, node, in: opened, name: "PEX-INFO", fail: fail)
        if !(info.pexPath ?? "").isEmpty || !(info.pexPaths ?? []).isEmpty {
            let others = ((info.pexPaths ?? []) + [info.pexPath ?? ""]).filter { !$0.isEmpty }
            throw fail("it merges other pex files (pex_path \(others.joined(separator: ":"))), which pyzfs does not mount; run it with python directly")
        }
        let wheelFiles = info.depsAreWheelFiles ?? false
        // Each distribution's chroot under .deps/, in archive order (PEX-INFO's dictionary has none).
        let recorded = Set((info.distributions ?? [:]).keys)
        let deps = tree.lookup(path: ".deps").map { tree.children(of: $0).map(Int.init) } ?? []
        let name = { (node: Int) in String(decoding: tree.name(of: node), as: UTF8.self) }
        if let missing = recorded.subtracting(deps.map(name)).sorted().first {
            throw fail("PEX-INFO lists \(missing), which is not in .deps/")
        }
        var distributions: [Distribution] = []
        for chroot in deps where recorded.contains(name(chroot)) {
            let file = name(chroot), location = ".deps/" + file
            guard let wheel = WheelName(file) else { throw fail("\(file) in .deps/ is not named as a wheel") }
            var distribution = Distribution(name: wheel.name, version: wheel.version,
                                            metadataDirectory: nil, wheelTags: wheel.tags)
            if wheelFiles {
                // Kept zipped: zipimport loads pure Python from it, but no native code.
                guard tree.nodes[chroot].kind == .file else { throw fail("\(location) is not a wheel file") }
                guard wheel.isPure else {
                    throw fail("\(file) is kept as a .whl file inside it (pex --no-pre-install-wheels), whose native code cannot be loaded in place; rebuild it without --no-pre-install-wheels")
                }
                distribution.sysPath = [location]
            } else {
                guard tree.nodes[chroot].kind == .directory else { throw fail("\(location) is not a directory") }
                let layout = try Self.layout(of: location, in: opened, fail: fail)
                distribution.stash = layout.stashDir.map { location + "/" + $0 }
                for entry in layout.sysPathEntries ?? [""] {
                    guard let path = Self.normalize(entry, under: location) else {
                        throw fail("\(location)/.layout.json names a sys.path entry outside its directory: \(entry)")
                    }
                    distribution.sysPath.append(path)
                }
                distribution.metadataDirectory = tree.children(of: chroot).lazy.map { name(Int($0)) }
                    .first { $0.hasSuffix(".dist-info") }.map { location + "/" + $0 }
            }
            distributions.append(distribution)
        }
        kind = .pex
        toolVersion = info.buildProperties?.pexVersion
        entryPoint = info.entryPoint.flatMap { $0.isEmpty ? nil : $0 }
        script = info.script.flatMap { $0.isEmpty ? nil : $0 }
        sitePackages = distributions.flatMap(\.sysPath)
        userCode = ""
        self.distributions = distributions
        switch info.inheritPath?.value ?? "false" {
        case "false": inheritPath = (info.venv == true && info.venvSystemSitePackages == true) ? .fallback : .false
        case "prefer": inheritPath = .prefer
        case "fallback": inheritPath = .fallback
        case let other: throw fail("PEX-INFO has an unknown inherit_path '\(other)'")
        }
        injectEnvironment = info.injectEnv ?? [:]
        injectArguments = info.injectArgs ?? []
        injectPythonArguments = info.injectPythonArgs ?? []
        isVenv = info.venv == true
        hermeticBoot = isVenv ? info.venvHermeticScripts != false : inheritPath == .false
        interpreterConstraints = (info.interpreterConstraints ?? []).filter { !$0.isEmpty }
        interpreterSelection = info.interpreterSelectionStrategy ?? "oldest"
        stripsToolEnvironment = info.stripPexEnv ?? true
        resourceBindings = info.bindResourcePaths ?? [:]
        extendsPythonPath = false
        prependedPath = nil
        preamble = nil
        shivDirectoryName = nil
        self.tree = tree
        reader = opened.filesystem.reader
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ node: Int, in opened: OpenedArchive, name: String,
                                             fail: (String) -> Failure) throws(Failure) -> T {
        let bytes = try read(node, in: opened, name: name, fail: fail)
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch let error as DecodingError {
            throw fail("\(name) is malformed (\(describe(error)))")
        } catch {
            throw fail("\(name) is malformed (\(error))")
        }
    }

    private static func read(_ node: Int, in opened: OpenedArchive, name: String, fail: (String) -> Failure) throws(Failure) -> [UInt8] {
        let entry = Int(opened.filesystem.tree.nodes[node].entry)
        guard entry >= 0 else { throw fail("\(name) is not a file") }
        do {
            return try opened.filesystem.reader.readWhole(entry, limit: 16 << 20)
        } catch {
            throw fail("cannot read \(name): \(error)")
        }
    }

    private static func layout(of location: String, in opened: OpenedArchive, fail: (String) -> Failure) throws(Failure) -> InstalledLayout {
        guard let node = opened.filesystem.tree.lookup(path: location + "/.layout.json") else {
            return InstalledLayout(stashDir: nil, sysPathEntries: nil)  // older pex: the chroot alone
        }
        return try decode(InstalledLayout.self, node, in: opened, name: location + "/.layout.json", fail: fail)
    }

    /// `entry` (relative, "." or "" for the directory itself) joined to `directory`, or nil when
    /// it leaves it.
    static func normalize(_ entry: String, under directory: String) -> String? {
        var parts = directory.split(separator: "/").map(String.init)
        let floor = parts.count
        for part in entry.split(separator: "/") where part != "." {
            if part == ".." {
                guard parts.count > floor else { return nil }
                parts.removeLast()
            } else {
                parts.append(String(part))
            }
        }
        return entry.hasPrefix("/") ? nil : parts.joined(separator: "/")
    }

    /// "name-1.0" as ("name", "1.0"): metadata directories escape "-" in names.
    static func splitNameVersion(_ s: String) -> (String, String) {
        guard let dash = s.firstIndex(of: "-") else { return (s, "") }
        return (String(s[..<dash]), String(s[s.index(after: dash)...]))
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
            return keys.isEmpty ? "" : keys.joined(separator: ".") + ": "
        }
        func kind(_ type: Any.Type) -> String {
            let name = String(describing: type)
            if name.hasPrefix("Dictionary") { return "an object" }
            if name.hasPrefix("Array") { return "a list" }
            return ["String": "a string", "Bool": "true or false"][name] ?? name
        }
        switch error {
        case let .typeMismatch(type, context): return "\(path(context))expected \(kind(type))"
        case let .valueNotFound(type, context): return "\(path(context))expected \(kind(type)), found null"
        case let .keyNotFound(key, context): return "\(path(context))\(key.stringValue) missing"
        case let .dataCorrupted(context):
            return context.codingPath.isEmpty ? "not JSON" : "\(path(context))\(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

// MARK: scripts and entry points

extension BundledApp {
    /// A console (or GUI) script of the bundled distributions: (distribution, `module:attr`).
    func consoleScript(named name: String) -> (Distribution, String)? {
        for distribution in distributions {
            if let value = consoleScripts(of: distribution)[name] { return (distribution, value) }
        }
        return nil
    }

    /// The `console_scripts` and `gui_scripts` of a distribution's entry_points.txt, by name.
    func consoleScripts(of distribution: Distribution) -> [String: String] {
        guard let directory = distribution.metadataDirectory, let text = text(of: directory + "/entry_points.txt") else { return [:] }
        var scripts: [String: String] = [:]
        var section = ""
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = trimmed(raw)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = trimmed(line.dropFirst().dropLast())
            } else if section == "console_scripts" || section == "gui_scripts", let equals = line.firstIndex(of: "=") {
                let key = trimmed(line[..<equals])
                if scripts[key] == nil { scripts[key] = trimmed(line[line.index(after: equals)...]) }
            }
        }
        return scripts
    }

    /// What the tool would run, after the environment's overrides (`SHIV_ENTRY_POINT`,
    /// `SHIV_MODULE`, `SHIV_CONSOLE_SCRIPT`, `SHIV_INTERPRETER`; `PEX_MODULE`, `PEX_SCRIPT`,
    /// `PEX_INTERPRETER`), and whether pex's inject_args apply (not under an override).
    /// - Throws: a `Failure` (exit 125) when a script named cannot be found; its message is
    ///   meant to follow "cannot run ARCHIVE as a shiv: ".
    public func entry(environment: (String) -> String?) throws(Failure) -> (entry: Entry, injectsArguments: Bool) {
        func value(_ name: String) -> String? { environment(name).flatMap { $0.isEmpty ? nil : $0 } }
        switch kind {
        case .shiv:
            // shiv: a script takes precedence over an entry point; SHIV_INTERPRETER over both.
            if value("SHIV_INTERPRETER") != nil { return (.interpreter, false) }
            let script = value("SHIV_CONSOLE_SCRIPT") ?? self.script
            if let script {
                if isFile("site-packages/bin/" + script) { return (.script(path: "site-packages/bin/" + script, argv0: nil), false) }
                if let (_, target) = consoleScript(named: script) { return (Self.parseEntryPoint(target), false) }
                throw Failure(Exit.runFailed, "it has no script \(script) (neither site-packages/bin/\(script) nor a console script of its distributions)")
            }
            if let entry = value("SHIV_ENTRY_POINT") ?? value("SHIV_MODULE") ?? entryPoint {
                return (shivEntry(entry), false)
            }
            return (.interpreter, false)
        case .pex:
            if let flag = value("PEX_INTERPRETER"), !["0", "false", "False"].contains(flag) { return (.interpreter, false) }
            let overrideScript = value("PEX_SCRIPT"), overrideEntry = value("PEX_MODULE")
            if overrideScript != nil && overrideEntry != nil || overrideScript == nil && overrideEntry == nil && script != nil && entryPoint != nil {
                throw Failure(Exit.runFailed, "both a script and an entry point are given (PEX_SCRIPT, PEX_MODULE or PEX-INFO); pex refuses that too")
            }
            if let overrideScript { return (try pexScript(overrideScript), false) }
            if let overrideEntry { return (Self.parseEntryPoint(overrideEntry), false) }
            if let script { return (try pexScript(script), true) }
            if let entryPoint { return (Self.parseEntryPoint(entryPoint), true) }
            return (.interpreter, false)
        }
    }

    /// pex's reading of an entry point: `module:attr.attr` (extras in brackets ignored) or a module.
    static func parseEntryPoint(_ value: String) -> Entry {
        let spec = value.split(separator: "[", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let module = trimmed(parts[0])
        let attributes = parts.count > 1 ? trimmed(parts[1]) : ""
        return attributes.isEmpty ? .module(module) : .callable(module: module, attributes: attributes.split(separator: ".").map(String.init))
    }

    /// shiv's import_string: `a.b:c` or `a.b.c` is the longest module prefix found in the archive
    /// and attributes after it; a whole name that is a module runs as `__main__` (where shiv would
    /// try to call the module and fail).
    private func shivEntry(_ value: String) -> Entry {
        let names = value.split(whereSeparator: { $0 == ":" || $0 == "." }).map(String.init)
        for count in stride(from: names.count, to: 0, by: -1) where isModule(names[..<count]) {
            let module = names[..<count].joined(separator: ".")
            return count == names.count ? .module(module) : .callable(module: module, attributes: Array(names[count...]))
        }
        // Not in the archive (the standard library, say): as written.
        if value.contains(":") { return Self.parseEntryPoint(value) }
        guard names.count > 1 else { return .module(value) }
        return .callable(module: names.dropLast().joined(separator: "."), attributes: [names.last!])
    }

    /// Whether `names` is a module or package in the archive's root or site directories.
    private func isModule(_ names: ArraySlice<String>) -> Bool {
        for base in [userCode ?? ""] + sitePackages {
            let parent = ([base] + names.dropLast()).filter { !$0.isEmpty }.joined(separator: "/")
            guard let directory = parent.isEmpty ? Tree.root : tree.lookup(path: parent), tree.nodes[directory].kind == .directory else { continue }
            let last = names.last!
            for child in tree.children(of: directory) {
                let name = String(decoding: tree.name(of: Int(child)), as: UTF8.self)
                let package = name == last && tree.nodes[Int(child)].kind == .directory
                let source = name == last + ".py" || name == last + ".pyc"
                let native = name.hasPrefix(last + ".") && name.hasSuffix(".so")  // .cpython-311-x86_64-linux-gnu.so, .abi3.so
                if package || source || native { return true }
            }
        }
        return false
    }

    /// pex: a console script of the distributions, else a script a distribution installs.
    private func pexScript(_ name: String) throws(Failure) -> Entry {
        var found: [(Distribution, String)] = []
        for distribution in distributions {
            if let target = consoleScripts(of: distribution)[name], !found.contains(where: { $0.0.name == distribution.name }) {
                found.append((distribution, target))
            }
        }
        if found.count > 1 {
            throw Failure(Exit.runFailed, "the script \(name) is ambiguous, a console script of several distributions: "
                          + found.map { "\($0.1) from \($0.0.name) \($0.0.version)" }.joined(separator: ", "))
        }
        if let (_, target) = found.first { return Self.parseEntryPoint(target) }
        for distribution in distributions {
            guard let stash = distribution.stash, isFile(stash + "/bin/" + name) else { continue }
            let path = stash + "/bin/" + name
            let head = text(of: path).map { $0.prefix { $0 != "\n" } } ?? ""  // a large file: not a Python script
            return head.hasPrefix("#!") && head.contains("python") ? .script(path: path, argv0: name) : .executable(path: path)
        }
        if distributions.contains(where: { $0.metadataDirectory == nil }) {
            throw Failure(Exit.runFailed, "no script \(name) found: its distributions are kept as .whl files (pex --no-pre-install-wheels), whose scripts pyzfs does not read")
        }
        throw Failure(Exit.runFailed, "it has no script \(name) (neither a console script of its distributions nor a script they install)")
    }

    private func isFile(_ path: String) -> Bool {
        guard let n = tree.lookup(path: path) else { return false }
        return tree.nodes[n].kind == .file
    }

    /// A member of at most 1 MiB as text; nil when larger or unreadable.
    private func text(of path: String) -> String? {
        guard let n = tree.lookup(path: path), tree.nodes[n].kind == .file, tree.nodes[n].entry >= 0,
              let bytes = try? reader.readWhole(Int(tree.nodes[n].entry), limit: 1 << 20) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// `s` without leading and trailing spaces, tabs and carriage returns.
private func trimmed(_ s: some StringProtocol) -> String { String(s).trimmingCharacters(in: " \t\r") }

// MARK: file formats

/// A wheel file name: `name-version(-build)?-python-abi-platform.whl`.
struct WheelName: Equatable, Sendable {
    public var name: String
    public var version: String
    /// `python-abi-platform`, each part possibly dotted (`py2.py3-none-any`).
    public var tags: String

    public init?(_ file: String) {
        guard file.hasSuffix(".whl") else { return nil }
        let parts = file.dropLast(4).split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5 || parts.count == 6, !parts.contains(where: \.isEmpty) else { return nil }
        name = parts[0]
        version = parts[1]
        tags = parts.suffix(3).joined(separator: "-")
    }

    /// Whether the wheel has no platform-specific code (platform tag `any`).
    var isPure: Bool { tags.split(separator: "-").last.map { $0.split(separator: ".").contains("any") } ?? false }
}

/// shiv's environment.json (the keys pyzfs uses; others are ignored).
private struct ShivEnvironment: Decodable {
    var shivVersion: String?
    var entryPoint: String?
    var script: String?
    var extendPythonPath: Bool?
    var prependPythonPath: String?
    var preamble: String?
    var buildId: String?

    enum CodingKeys: String, CodingKey {
        case shivVersion = "shiv_version", entryPoint = "entry_point", script
        case extendPythonPath = "extend_pythonpath", prependPythonPath = "prepend_pythonpath", preamble
        case buildId = "build_id"
    }
}

/// pex's PEX-INFO (the keys pyzfs uses; others are ignored).
private struct PexInfo: Decodable {
    struct BuildProperties: Decodable {
        var pexVersion: String?
        enum CodingKeys: String, CodingKey { case pexVersion = "pex_version" }
    }

    /// "false", "prefer", "fallback"; old pex wrote a boolean (true meaning prefer).
    struct InheritPathValue: Decodable {
        var value: String
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let flag = try? container.decode(Bool.self) { value = flag ? "prefer" : "false" } else { value = try container.decode(String.self) }
        }
    }

    var entryPoint: String?
    var script: String?
    var inheritPath: InheritPathValue?
    var injectEnv: [String: String]?
    var injectArgs: [String]?
    var injectPythonArgs: [String]?
    var interpreterConstraints: [String]?
    var interpreterSelectionStrategy: String?
    var stripPexEnv: Bool?
    var distributions: [String: String]?
    var depsAreWheelFiles: Bool?
    var pexPath: String?
    var pexPaths: [String]?
    var bindResourcePaths: [String: String]?
    var venv: Bool?
    var venvSystemSitePackages: Bool?
    var venvHermeticScripts: Bool?
    var buildProperties: BuildProperties?

    enum CodingKeys: String, CodingKey {
        case entryPoint = "entry_point", script, inheritPath = "inherit_path", injectEnv = "inject_env"
        case injectArgs = "inject_args", injectPythonArgs = "inject_python_args"
        case interpreterConstraints = "interpreter_constraints", interpreterSelectionStrategy = "interpreter_selection_strategy"
        case stripPexEnv = "strip_pex_env", distributions, depsAreWheelFiles = "deps_are_wheel_files"
        case pexPath = "pex_path", pexPaths = "pex_paths", bindResourcePaths = "bind_resource_paths", venv
        case venvSystemSitePackages = "venv_system_site_packages", venvHermeticScripts = "venv_hermetic_scripts"
        case buildProperties = "build_properties"
    }
}

/// `.layout.json` of a pex distribution's chroot.
private struct InstalledLayout: Decodable {
    var stashDir: String?
    var sysPathEntries: [String]?
    enum CodingKeys: String, CodingKey { case stashDir = "stash_dir", sysPathEntries = "sys_path_entries" }
}
