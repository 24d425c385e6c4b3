import ArgumentParser
import PyzfsApps
import PyzfsCore
import PyzfsRun
import PyzfsFUSE
#if canImport(Glibc)
import Glibc
#endif

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the pyzfs mounts of this mount namespace: archive, mount point, mode, server pid.",
        discussion: """
        MODE is ro for a read-only kernel mount, or rw,bytecode for a read-write one whose only \
        writable part is the in-memory bytecode overlay (-o pycache=memory, or pycache=auto on an \
        archive without pycs): every other change is refused with EROFS. ,warm marks the mount \
        of a warm server, kept by pyzfs run for later runs (pyzfs unmount --warm ends them).
        """)

    @Flag(help: "Print JSON lines for tools.")
    var json = false

    func run() throws {
        let mounts = MountTable.current().filter(\.isPyzfs)
        let warm = Set(WarmServers.mounts())
        if !json && !mounts.isEmpty { print("ARCHIVE\tMOUNTPOINT\tMODE\tPID") }
        for m in mounts {
            let pid = readControlAttribute(mountpoint: m.mountPoint, name: "pid")
            // pyzfs makes a read-write kernel mount only for the bytecode overlay.
            let readOnly = m.options.split(separator: ",").contains("ro")
            let mode = (readOnly ? "ro" : "rw,bytecode") + (warm.contains(m.mountPoint) ? ",warm" : "")
            if json {
                let p = pid.map { $0 } ?? "null"
                print("{\"archive\":\(jsonString(m.source)),\"mountpoint\":\(jsonString(m.mountPoint)),\"mode\":\"\(readOnly ? "ro" : "rw")\",\"bytecode_overlay\":\(!readOnly),\"warm\":\(warm.contains(m.mountPoint)),\"pid\":\(p),\"alive\":\(pid != nil)}")
            } else {
                print("\(m.source)\t\(m.mountPoint)\t\(mode)\t\(pid ?? "- (dead: pyzfs unmount \(m.mountPoint))")")
            }
        }
    }
}

