import ArgumentParser
import PyzfsCore
import PyzfsRun

struct UnmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount",
        abstract: "Unmount a pyzfs mount, including one whose server has died.",
        discussion: """
        A mount whose server is gone answers "Transport endpoint is not connected"; this clears it.
        Exit codes: 0 unmounted; 1 failed; 73 not a pyzfs mount point; 75 busy (files open).
        """,
        aliases: ["umount"])

    @Argument(help: "The mount point.")
    var mountpoint: String

    @Flag(name: [.customShort("l"), .long], help: "Detach now; the mount goes once nothing uses it.")
    var lazy = false

    func run() throws {
        try unmount(mountpoint, lazy: lazy)
    }
}
