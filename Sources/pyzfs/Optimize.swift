import ArgumentParser
import PyzfsApps
import PyzfsCore
import PyzfsFUSE
import PyzfsRun
#if canImport(Glibc)
import Glibc
#endif

struct OptimizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "optimize",
        abstract: "Rewrite an archive to mount and start fast.",
        usage: """
        pyzfs optimize [--python <path>] INPUT OUTPUT
        pyzfs optimize [--python <path>] --profile INPUT OUTPUT [-- ARG...]
        """,
        discussion: """
        Writes OUTPUT from INPUT: the #! line, names, modes and times kept; shared libraries \
        (ELF) stored uncompressed, so they are mapped straight from the archive instead of \
        inflated on first use; everything else deflated; and for every .py an unchecked-hash \
        pyc made by the target interpreter (--python, default the archive's #! one), which that \
        interpreter loads without looking at the source's time or size. Existing pycs of other \
        interpreters are kept; those of the target are replaced. The output is written beside \
        OUTPUT and renamed into place; INPUT is never overwritten. Progress is shown on a terminal.

        With --profile, OUTPUT is then mounted read-only and run once by the target \
        interpreter, as `PYTHON MOUNT ARG...` (in the current directory, with this terminal), \
        and the order in which that start first read each member is stored in OUTPUT as its \
        start profile: the hidden root member .pyzfs-profile (one path a line, at most 64 KiB; \
        no mount shows it, nothing can import it). Every mount of OUTPUT then decodes those \
        members in that order on its prefetch threads, ahead of the app's reads, within the \
        cache budget (`pyzfs stats` shows preload_members and preloaded; -o prefetch=0 turns it \
        off). Run the app the way its start should be fast (a short command, say); an app that \
        exits non-zero still gets its profile, with a warning. Optimizing an archive again \
        records its profile anew; any mount hands out its record as the attribute \
        user.pyzfs.profile of its root.
        Exit codes: 0 written; 64 bad arguments; 65, 66 the input as for mount; 73 OUTPUT \
        cannot be written or is INPUT; 127 no interpreter; 1 the rewrite or the profiling \
        mount failed.
        """)

    @Argument(help: "The archive to read.")
    var input: String

    @Argument(help: "The archive to write.")
    var output: String

    @Option(help: ArgumentHelp("The interpreter that compiles the pycs (default: the input's #! line).", valueName: "path"))
    var python: String?

    @Flag(help: "Run OUTPUT once from a mount and store the order its start read members in (a start profile).")
    var profile = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("With --profile: the app's arguments for the profiling run.", valueName: "arg"))
    var arguments: [String] = []

    func validate() throws {
        if !arguments.isEmpty && !profile { throw ValidationError("arguments after -- are for the profiling run: add --profile") }
    }

    func run() throws {
        var options = MountOptions()
        options.pycache = .off
        LogSink.shared.setLevel(.error)
        let opened = try openArchive(input, options: options)
        let interpreter = try Interpreter.resolve(python: python, opened: opened)
        try Optimizer.rewrite(opened, with: interpreter, to: output)
        guard profile else { return }
        let recorded = try Self.recordProfile(of: output, with: interpreter, arguments: arguments)
        try Optimizer.addProfile(recorded, to: output, with: interpreter)
        let members = recorded.split(separator: "\n").count - 1
        print("\(output): start profile of \(members) members stored as \(StartProfile.memberName)")
    }

    /// Mounts `archive` read-only in a new directory, runs it once with `interpreter` and
    /// returns the server's record of first reads (`user.pyzfs.profile`), unmounting in any case.
    static func recordProfile(of archive: String, with interpreter: Interpreter, arguments: [String]) throws(Failure) -> String {
        var base = "/tmp"
        if let t = readEnvironment("TMPDIR"), t.hasPrefix("/") { base = t }
        guard let directory = makeUniqueDirectory(in: base, prefix: "pyzfs-profile") else {
            throw Failure(Exit.badMountPoint, "cannot make a mount directory in \(base): \(errnoText(errno)); set TMPDIR to a writable directory")
        }
        defer { rmdir(directory) }
        // This very binary serves the mount, so the profile is the record of the same server.
        var exe = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &exe, exe.count - 1)
        let me = n > 0 ? String(decoding: exe[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "pyzfs"
        let mounted = runProgram([me, "mount", "-o", "ro", archive, directory])
        guard mounted == 0 else {
            throw Failure(Exit.failure, "cannot mount \(archive) for the profiling run (pyzfs mount exited with \(mounted)); \(archive) is written, without a start profile")
        }
        let status = runProgram([interpreter.path, directory] + arguments)
        let recorded = readControlAttribute(mountpoint: directory, name: "profile")
        // Lazily: a process the app left behind must not keep the directory mounted.
        try? unmount(directory, lazy: true, quiet: true)
        guard let recorded, recorded.hasPrefix(StartProfile.header + "\n") else {
            throw Failure(Exit.failure, "cannot read the start profile from the mount of \(archive); \(archive) is written, without one")
        }
        if status != 0 {
            LogSink.shared.setLevel(.warning)
            writeAll(2, "pyzfs: warning: the profiling run of \(archive) exited with \(status); its profile is stored all the same\n")
        }
        return recorded
    }
}
