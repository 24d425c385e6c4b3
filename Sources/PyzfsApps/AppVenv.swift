import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// The virtual environment a `--venv` pex runs in under `pyzfs run`: what pex's own venv shows
/// the app (`sys.executable` and `sys.prefix` in it, `sysconfig.get_path("scripts")` its `bin/`,
/// where the distributions' console scripts and programs are), with the mount in place of the
/// installed files ([decision 0006](../../docs/decisions/0006-venv-beside-the-mount.md)).
///
/// Written beside the mount directory (`pyzfs-run-XXXXXX/venv`, removed with it): `pyvenv.cfg`,
/// `bin/pythonX.Y` linked to the base interpreter (`python`, `python3` to that), a `.pth` in
/// `lib/pythonX.Y/site-packages` that adds the distributions' directories on the mount as site
/// directories, and in `bin/` each script the distributions install: Python scripts with their
/// `#!` line pointing at the venv's python (as pex rewrites them), any other file (a wheel's
/// ELF program such as `bin/ruff`) a symbolic link to it on the mount. Nothing of the archive
/// is copied but those scripts.
public struct AppVenv: Sendable {
    /// A script of the venv's `bin/`.
    enum Script: Equatable, Sendable {
        /// A Python script: its text after the `#!` line, which is written for the venv.
        case python(body: String)
        /// Anything else: a link to this path relative to the root.
        case link(String)
    }

    /// The base interpreter (symbolic links resolved), the target of `bin/pythonX.Y`.
    let python: String
    /// Its `X.Y.Z`, or `X.Y` when read from its name.
    let version: String
    /// pex's venv_system_site_packages: the base interpreter's site-packages stay visible.
    let includesSystemSitePackages: Bool
    /// How the scripts start the venv's python: `-I` for pex's hermetic scripts, else `-sE`.
    let scriptOption: String
    /// The directories, relative to the root, the `.pth` adds as site directories, in order.
    let siteDirectories: [String]
    /// The scripts of `bin/` by name, in name order.
    let scripts: [(name: String, script: Script)]

    /// The name of the venv's directory beside the mount directory.
    public static let directoryName = "venv"

    /// `X.Y` of `version`.
    var shortVersion: String { version.split(separator: ".").prefix(2).joined(separator: ".") }

    /// The venv of a `--venv` pex whose sys.path entries (relative to the root) are `paths`, for
    /// the interpreter `base` (a program or a wrapper such as a pyenv shim, which is asked for
    /// the binary it runs).
    /// - Throws: a `Failure` (exit 125) when the interpreter does not say what it runs.
    init(_ app: BundledApp, paths: [String], opened: OpenedArchive, interpreter base: String) throws(Failure) {
        guard let (python, version) = Self.baseInterpreter(of: base) else {
            throw Failure(Exit.runFailed, "cannot run \(opened.path) as a --venv pex: \(base) did not say which python binary it runs")
        }
        self.python = python
        self.version = version
        includesSystemSitePackages = app.inheritPath != .false
        scriptOption = app.hermeticBoot ? "-I" : "-sE"
        siteDirectories = paths
        // The scripts of the distributions whose directories are on sys.path (of a pex with a
        // wheel per platform, those of the chosen one), as pex installs them into its venv.
        let tree = opened.filesystem.tree
        var scripts: [String: Script] = [:]
        for d in app.distributions where d.sysPath.allSatisfy(paths.contains) {
            guard let stash = d.stash, let bin = tree.lookup(path: stash + "/bin") else { continue }
            for child in tree.children(of: bin).map(Int.init) where tree.nodes[child].kind == .file {
                let name = String(decoding: tree.name(of: child), as: UTF8.self)
                guard scripts[name] == nil else { continue }
                let entry = Int(tree.nodes[child].entry)
                // A Python script's #! line names "python" (pex writes `#!python`); a large
                // file is a program, never read here.
                let text = entry < 0 ? nil : (try? opened.filesystem.reader.readWhole(entry, limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) }
                if let text, text.hasPrefix("#!"), text.prefix(while: { $0 != "\n" }).contains("python") {
                    scripts[name] = .python(body: String(text.drop(while: { $0 != "\n" }).dropFirst()))
                } else {
                    scripts[name] = .link(stash + "/bin/" + name)
                }
            }
        }
        self.scripts = scripts.sorted { $0.key < $1.key }.map { (name: $0.key, script: $0.value) }
    }

    /// The binary `python` runs (its `sys._base_executable`, symbolic links resolved) and its
    /// version: read from the name of an ELF `pythonX.Y`, else asked in one start without site
    /// (-I -S). A wrapper such as a pyenv shim (a script named `python3.11`) must be asked:
    /// linked to, it would start the interpreter under another name, outside the venv.
    static func baseInterpreter(of python: String) -> (String, String)? {
        if let real = realpath(python, nil) {
            defer { free(real) }
            let path = string(fromCString: real), name = path.split(separator: "/").last ?? ""
            let version = name.dropFirst("python".count)
            if name.hasPrefix("python"), version.split(separator: ".").count == 2,
               version.split(separator: ".").allSatisfy({ Int($0) != nil }), isELF(path) {
                return (path, String(version))
            }
        }
        let script = "import os, sys; print(os.path.realpath(getattr(sys, '_base_executable', None) or sys.executable)); print('.'.join(map(str, sys.version_info[:3])))"
        guard let process = Subprocess.start([python, "-I", "-S", "-c", script], captureOutput: true, quiet: true) else { return nil }
        let lines = String(decoding: process.finish().output, as: UTF8.self).split(separator: "\n").map(String.init)
        guard lines.count == 2, lines[0].hasPrefix("/"), !lines[1].isEmpty else { return nil }
        return (lines[0], lines[1])
    }

    /// `bin/python` of the venv in `directory`: the app's `sys.executable`.
    static func executable(in directory: String) -> String { directory + "/bin/python" }

    /// Writes the venv into the new directory `directory` for the app mounted on `root`.
    /// - Throws: a `Failure` (exit 125) naming what could not be written.
    func write(into directory: String, root: String) throws(Failure) {
        func fail(_ what: String) -> Failure {
            Failure(Exit.runFailed, "cannot write the venv of a --venv pex at \(directory)/\(what): \(errnoText(errno))")
        }
        let site = "lib/python\(shortVersion)/site-packages"
        for d in ["", "/bin", "/lib", "/lib/python\(shortVersion)", "/" + site] where mkdir(directory + d, 0o700) != 0 {
            throw fail(d.isEmpty ? "." : String(d.dropFirst()))
        }
        let dirname = String(python[..<(python.lastIndex(of: "/") ?? python.startIndex)])
        let configuration = "home = \(dirname.isEmpty ? "/" : dirname)\ninclude-system-site-packages = \(includesSystemSitePackages)\nversion = \(version)\nexecutable = \(python)\n"
        guard writeFile(directory + "/pyvenv.cfg", configuration, flags: O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o644) else { throw fail("pyvenv.cfg") }
        let binary = "python\(shortVersion)"
        guard symlink(python, directory + "/bin/" + binary) == 0 else { throw fail("bin/" + binary) }
        for alias in ["python", "python3"] where alias != binary {
            guard symlink(binary, directory + "/bin/" + alias) == 0 else { throw fail("bin/" + alias) }
        }
        // An import line: site processes it at every start of the venv's python (the app's, its
        // scripts', its subprocesses'), and addsitedir processes the distributions' own .pth files.
        let directories = siteDirectories.map { pythonLiteral($0.isEmpty ? root : root + "/" + $0) }.joined(separator: ", ")
        let pth = "import site; list(map(site.addsitedir, [\(directories)]))\n"
        guard writeFile(directory + "/" + site + "/_pyzfs_app.pth", pth, flags: O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o644) else { throw fail(site + "/_pyzfs_app.pth") }
        for (name, script) in scripts {
            let path = directory + "/bin/" + name
            switch script {
            case let .python(body):
                guard writeFile(path, "#!\(Self.executable(in: directory)) \(scriptOption)\n" + body, flags: O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o755) else { throw fail("bin/" + name) }
            case let .link(target):
                guard symlink(root + "/" + target, path) == 0 else { throw fail("bin/" + name) }
            }
        }
    }
}

/// Whether the file at `path` starts as an ELF file does.
func isELF(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var head = [UInt8](repeating: 0, count: 4)
    return read(fd, &head, 4) == 4 && head == [0x7f, 0x45, 0x4c, 0x46]
}

/// `s` as a Python string literal that any source encoding reads: ASCII, with escapes.
func pythonLiteral(_ s: String) -> String {
    var out = "'"
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "'": out += "\\'"
        case " "..."~": out.unicodeScalars.append(scalar)
        default:
            let hex = String(scalar.value, radix: 16)
            out += "\\U" + String(repeating: "0", count: 8 - hex.count) + hex
        }
    }
    return out + "'"
}
