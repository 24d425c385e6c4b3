import ArgumentParser
import PyzfsApps
import PyzfsCore
import PyzfsRun

struct OptimizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "optimize",
        abstract: "Rewrite an archive to mount and start fast.",
        discussion: """
        Writes OUTPUT from INPUT: the #! line, names, modes and times kept; shared libraries \
        (ELF) stored uncompressed, so they are mapped straight from the archive instead of \
        inflated on first use; everything else deflated; and for every .py an unchecked-hash \
        pyc made by the target interpreter (--python, default the archive's #! one), which that \
        interpreter loads without looking at the source's time or size. Existing pycs of other \
        interpreters are kept; those of the target are replaced. The output is written beside \
        OUTPUT and renamed into place; INPUT is never overwritten. Progress is shown on a terminal.
        Exit codes: 0 written; 64 bad arguments; 65, 66 the input as for mount; 73 OUTPUT \
        cannot be written or is INPUT; 127 no interpreter; 1 the rewrite failed.
        """)

    @Argument(help: "The archive to read.")
    var input: String

    @Argument(help: "The archive to write.")
    var output: String

    @Option(help: ArgumentHelp("The interpreter that compiles the pycs (default: the input's #! line).", valueName: "path"))
    var python: String?

    func run() throws {
        var options = MountOptions()
        options.pycache = .off
        LogSink.shared.setLevel(.error)
        let opened = try openArchive(input, options: options)
        let interpreter = try Interpreter.resolve(python: python, opened: opened)
        try Optimizer.rewrite(opened, with: interpreter, to: output)
    }
}
