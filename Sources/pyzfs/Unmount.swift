import ArgumentParser
import PyzfsCore
import PyzfsRun

struct UnmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount",
        abstract: "Unmount a pyzfs mount, including one whose server has died.",
        discussion: """
        A mount whose server is gone answers "Transport endpoint is not connected"; this clears it. \
        --warm ends every warm server of this user (pyzfs run --help): each is detached, and its \
        server exits once no app still running uses it.
        Exit codes: 0 unmounted; 1 failed; 73 not a pyzfs mount point; 75 busy (files open).
        """,
        aliases: ["umount"])

    @Argument(help: "The mount point.")
    var mountpoint: String?

    @Flag(help: "End every warm server of this user (no mount point then).")
    var warm = false

    @Flag(name: [.customShort("l"), .long], help: "Detach now; the mount goes once nothing uses it.")
    var lazy = false

    func validate() throws {
        if warm == (mountpoint != nil) { throw ValidationError(warm ? "--warm takes no mount point" : "missing the mount point (or --warm)") }
    }

    func run() throws {
        if let mountpoint { return try unmount(mountpoint, lazy: lazy) }
        for point in WarmServers.mounts() { try unmount(point, lazy: true, quiet: true) }
    }
}
