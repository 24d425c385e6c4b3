import ArgumentParser
import FoundationEssentials
import PyzfsApps
import PyzfsCore
import PyzfsRun
import PyzfsZip

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what an archive holds and whether its native extensions load in an interpreter.",
        discussion: """
        Without mounting: the prefix and #! line, the kind of app (zipapp, shiv, pex), the \
        distributions with their wheel tags, every native extension checked against the \
        interpreter (the archive's #! one by default, or --python) for Python version and ABI, \
        machine, and libc kind and version (manylinux/musllinux level, glibc symbol versions), \
        shared libraries stored compressed (inflated on first use), bytecode, members the linked \
        libraries cannot decompress, encrypted members and symlinks out of the archive.
        Exit codes: 0 (also when problems are found; see the JSON's "problems"), 65, 66 as for mount.
        """)

    @Argument(help: "The zipapp or zip file.")
    var archive: String

    @Option(help: ArgumentHelp("The interpreter to check against (default: the archive's #! line).", valueName: "path"))
    var python: String?

    @Flag(help: "Print JSON for tools.")
    var json = false

    func run() throws {
        var options = MountOptions()
        options.pycache = .off
        LogSink.shared.setLevel(.error)  // the report says what the mount would warn about
        let opened = try openArchive(archive, options: options)
        let report = Inspector(opened: opened, decodes: LibzipDecoder.supports(method:)).report(python: python)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(report)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(report.text)
        }
    }
}
