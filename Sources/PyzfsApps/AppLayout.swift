import Logging
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// How an app in an archive is started from its mount: plain zipapps run `__main__.py` as
/// `python3 ARCHIVE` would (`AppLayout.zipappBootstrap`); shiv and pex archives (whose own
/// start-up code would extract them into ~/.shiv or ~/.cache/pex) are started in place from
/// their metadata (`BundledApp`), by a small Python program
/// (`AppLayout.bootstrap`) that sets sys.path, the environment and sys.argv as the tool would,
/// with the mount in place of the extracted copy, and runs the entry point. Nothing is written.
///
/// Made in two steps: `init` reads and checks the metadata (before mounting, so a malformed
/// archive fails with nothing to undo), `command(root:)` gives the command once `root` is known.
public struct AppLayout {
    public let interpreter: Interpreter
    /// The archive as the caller wrote it: the app's `sys.argv[0]`.
    public let archive: String
    public let arguments: [String]
    /// The shiv or pex metadata; nil for a plain zipapp.
    public let bundled: BundledApp?
    /// The name the mount directory must have: a shiv preamble reads its parent's name as
    /// shiv's extraction directory (`NAME_BUILDID`) and may tidy that directory's siblings, so
    /// it gets that name, alone in a directory of its own. nil: any name.
    /// A `--venv` pex's mount is alone in a directory of its own too, beside its venv.
    public var mountDirectoryName: String? {
        if venv != nil { return "app" }
        return bundled?.preamble == nil ? nil : bundled?.shivDirectoryName
    }
    /// Whether `writeVenv(beside:)` writes a venv beside the mount (a `--venv` pex).
    public var writesVenv: Bool { venv != nil }
    /// What the bootstrap is told, `key=value`, paths relative to the root (see `bootstrap`).
    public let settings: [String]
    /// The interpreter options the tool adds: pex's inject_python_args, and `-I` where pex
    /// isolates the app.
    let pythonOptions: [String]
    /// The venv a `--venv` pex runs in, written beside the mount (`writeVenv(beside:)`); nil for
    /// any other app.
    let venv: AppVenv?

    /// Reads the archive's shiv or pex metadata and the tools' overrides in `environment`.
    /// - Throws: a `Failure` with a one-line message: exit 125 when the metadata is malformed,
    ///   names a script the archive does not have, or an override is invalid; 127 when a
    ///   --sh-boot pex finds no python3 on PATH.
    public init(_ opened: OpenedArchive, archive: String, interpreter: Interpreter, arguments: [String],
         environment: (String) -> String? = readEnvironment) throws(Failure) {
        self.archive = archive
        self.arguments = arguments
        let bundled = try BundledApp(opened)
        let python = bundled == nil ? interpreter : try Self.python(for: interpreter, archive: opened.path)
        self.bundled = bundled
        self.interpreter = python
        settings = try bundled.map { app throws(Failure) in
            try Self.settings(for: app, archive: archive, environment: environment) {
                InterpreterProbe.quickFacts(of: python.path) ?? InterpreterProbe.facts(of: python.path)
            }
        } ?? []
        // pex isolates a hermetic --venv pex's venv always, and re-executes another hermetic
        // pex with -I when PYTHONPATH is set (pex_boot.py).
        let isolated = bundled.map { app in
            app.hermeticBoot && (app.isVenv || environment("PYTHONPATH") != nil && (environment("PEX_INHERIT_PATH") ?? "false") == "false")
        } ?? false
        pythonOptions = (bundled?.injectPythonArguments ?? []) + (isolated ? ["-I"] : [])
        if let bundled, bundled.isVenv {
            let paths = settings.compactMap { $0.hasPrefix("path=") ? String($0.dropFirst(5)) : nil }
            venv = try AppVenv(bundled, paths: paths, opened: opened, interpreter: python.path)
        } else {
            venv = nil
        }
    }

    /// Writes the venv of a `--venv` pex mounted on `root` beside it (`pyzfs-run-XXXXXX/venv`,
    /// which `MountDirectory.remove` removes with the mount directory); nil for other apps.
    /// - Throws: a `Failure` (exit 125) when it cannot be written.
    public func writeVenv(beside root: String) throws(Failure) -> String? {
        guard let venv else { return nil }
        let directory = String(root[..<(root.lastIndex(of: "/") ?? root.startIndex)]) + "/" + AppVenv.directoryName
        try venv.write(into: directory, root: root)
        return directory
    }

    /// A pex built with --sh-boot starts with a /bin/sh script that looks for Python (its #! line
    /// names the shell): python3 (else python) from PATH then, as `python3 app.pex` would be run.
    private static func python(for interpreter: Interpreter, archive: String) throws(Failure) -> Interpreter {
        let shells: Set<String> = ["sh", "bash", "dash", "ash", "ksh", "zsh", "busybox"]
        guard let name = interpreter.path.split(separator: "/").last, shells.contains(String(name)) else { return interpreter }
        guard let python = findExecutable("python3") ?? findExecutable("python") else {
            throw Failure(Exit.notFound, "no interpreter found: python3 (\(archive) starts with a \(name) script, which would look for one); install it or pass --python PATH")
        }
        return Interpreter(path: python, leadingArguments: [])
    }

    /// The command that runs the app mounted on (or extracted to) `root`: for a plain zipapp
    /// `[python] + #! arguments + ["-c", zipappBootstrap, root, archive] + arguments`; for shiv and pex
    /// `[python] + #! arguments + pythonOptions + ["-c", bootstrap, N, N settings] + arguments`,
    /// where python is the venv's when `venv` (`writeVenv(beside:)`) is given.
    public func command(root: String, venv: String? = nil) -> [String] {
        guard bundled != nil else {
            return [interpreter.path] + interpreter.leadingArguments + ["-c", Self.zipappBootstrap, root, archive] + arguments
        }
        let told = ["root=\(root)"] + settings + (venv == nil ? [] : ["venv=1"])
        let python = venv.map(AppVenv.executable(in:)) ?? interpreter.path
        return [python] + interpreter.leadingArguments + pythonOptions
            + ["-c", Self.bootstrap, String(told.count)] + told + arguments
    }

    /// The settings of a shiv or pex app, after the tools' overrides in `environment`.
    private static func settings(for app: BundledApp, archive: String, environment: (String) -> String?,
                                 facts: () -> InterpreterFacts?) throws(Failure) -> [String] {
        let entry: BundledApp.Entry, injectsArguments: Bool
        do {
            (entry, injectsArguments) = try app.entry(environment: environment)
        } catch {
            throw Failure(error.code, "cannot run \(archive) as a \(app.kind): \(error.message)")
        }
        func set(_ name: String) -> String? { environment(name).flatMap { $0.isEmpty ? nil : $0 } }
        var settings = ["kind=\(app.kind.rawValue)"]

        // sys.argv[0]: the archive, as after `python ARCHIVE` (pex gives a data script its name).
        switch entry {
        case let .callable(module, attributes): settings += ["argv0=\(archive)", "run=call:\(module):\(attributes.joined(separator: "."))"]
        case let .module(name): settings += ["argv0=\(archive)", "run=module:\(name)"]
        case let .script(path, argv0): settings += ["argv0=\(argv0 ?? archive)", "run=script:\(path)"]
        case let .executable(path): settings += ["argv0=\(archive)", "run=exec:\(path)"]
        case .interpreter: settings += ["argv0=\(archive)", "run=interpreter"]
        }

        // The distributions' directories; of a project with a wheel per platform (a pex built
        // for several), only the one pex would pick for this interpreter.
        var wheels: [String: [BundledApp.Distribution]] = [:]
        for d in app.distributions where d.wheelTags != nil { wheels[d.name.lowercased(), default: []].append(d) }
        var listed: Set<String> = []  // shiv's distributions share site-packages
        let choices = wheels.filter { $0.value.count > 1 }.sorted { $0.key < $1.key }
        if !choices.isEmpty {
            guard let facts = facts() else {
                throw Failure(Exit.runFailed, "cannot run \(archive) as a pex: it has a wheel per platform of \(choices[0].key), and the interpreter did not say which it loads")
            }
            for (project, candidates) in choices {
                guard let pick = facts.preferredWheel(candidates.map { $0.wheelTags! }) else {
                    throw Failure(Exit.runFailed, "cannot run \(archive) as a pex: it has no wheel of \(project) that Python \(facts.summary) loads (\(candidates.map { $0.wheelTags! }.joined(separator: ", ")))")
                }
                for (i, other) in candidates.enumerated() where i != pick { listed.formUnion(other.sysPath) }
            }
        }
        for d in app.distributions {
            for path in d.sysPath where listed.insert(path).inserted { settings.append("path=\(path)") }
        }
        for path in app.sitePackages where listed.insert(path).inserted { settings.append("path=\(path)") }

        switch app.kind {
        case .shiv:
            if let preamble = app.preamble { settings.append("preamble=site-packages/bin/\(preamble)") }
            if let prepend = set("SHIV_PREPEND_PYTHONPATH") ?? app.prependedPath { settings.append("prepend=\(prepend)") }
            let extend = set("SHIV_EXTEND_PYTHONPATH").map { ["yes", "true", "t", "1"].contains($0.lowercased()) } ?? app.extendsPythonPath
            if extend { settings.append("extend=1") }
            settings += ["unset=SHIV_MODULE", "unset=SHIV_ENTRY_POINT", "unset=SHIV_CONSOLE_SCRIPT"]

        case .pex:
            var inherit = app.inheritPath
            if let value = set("PEX_INHERIT_PATH") {
                switch value.lowercased() {
                case "false", "0": break  // as pex: the archive's own setting then
                case "prefer", "true", "1": inherit = .prefer
                case "fallback": inherit = .fallback
                default: throw Failure(Exit.runFailed, "cannot run \(archive) as a pex: PEX_INHERIT_PATH must be false, prefer or fallback, not '\(value)'")
                }
            }
            settings.append("inherit=\(inherit.rawValue)")
            for extra in (set("PEX_EXTRA_SYS_PATH") ?? "").split(separator: ":") { settings.append("extra=\(extra)") }
            for constraint in app.interpreterConstraints { settings.append("python=\(constraint)") }
            if !app.interpreterConstraints.isEmpty { settings.append("select=\(app.interpreterSelection)") }
            if app.stripsToolEnvironment { settings.append("unset=PEX_*") }
            settings.append("setenv=PEX=\(archive)")
            for (name, value) in app.injectEnvironment.sorted(by: { $0.key < $1.key }) { settings.append("env=\(name)=\(value)") }
            for (name, resource) in app.resourceBindings.sorted(by: { $0.key < $1.key }) { settings.append("resource=\(name)=\(resource)") }
            if injectsArguments { settings += app.injectArguments.map { "arg=\($0)" } }
        }
        return settings
    }
}
