import ArgumentParser
import PyzfsApps
import PyzfsCore
import PyzfsRun
#if canImport(Glibc)
import Glibc
#endif

struct Pyzfs: ParsableCommand {
    /// What --version prints: the version from VERSION and the commit it was built from.
    static let version = "pyzfs \(BuildVersion.version) (commit \(BuildVersion.commit))"
    static let configuration = CommandConfiguration(
        commandName: "pyzfs",
        abstract: "Mount Python zipapps read-only, so the stock interpreter imports their native extensions in place.",
        discussion: """
        'pyzfs ARCHIVE MOUNTPOINT -o OPTIONS' is 'pyzfs mount' (the form mount.fuse3 uses for \
        fstab entries of type fuse.pyzfs). A server in the background logs to syslog/journald, \
        or to the file given with -o log=FILE.
        """,
        version: version,
        subcommands: [MountCommand.self, UnmountCommand.self, ListCommand.self, StatsCommand.self, RunCommand.self, CacheCommand.self, InspectCommand.self, OptimizeCommand.self],
        defaultSubcommand: MountCommand.self)

    /// Parses and runs; a `Failure` prints one line and exits with its code.
    static func runMain() -> Never {
        do {
            var command = try parseAsRoot(separatingJoinedOptions(Array(CommandLine.arguments.dropFirst())))
            try command.run()
            Glibc.exit(0)
        } catch let failure as Failure {
            writeAll(2, "pyzfs: \(failure.message)\n")
            Glibc.exit(failure.code)
        } catch {
            exit(withError: error)
        }
    }

    /// `-oOPTIONS` as `-o OPTIONS` for mount (named, or the default) and for run, before its archive.
    static func separatingJoinedOptions(_ arguments: [String]) -> [String] {
        guard let first = arguments.first else { return arguments }
        if first == RunCommand.configuration.commandName {
            return [first] + MountOptions.separatingJoined(Array(arguments.dropFirst()), valueOptions: RunCommand.valueOptions, untilOperand: true)
        }
        let named = configuration.subcommands.contains { $0.configuration.commandName == first || $0.configuration.aliases.contains(first) }
        guard !named || first == MountCommand.configuration.commandName else { return arguments }
        return MountOptions.separatingJoined(arguments, valueOptions: ["-o"], untilOperand: false)
    }
}
