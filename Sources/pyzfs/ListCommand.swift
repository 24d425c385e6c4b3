import ArgumentParser
import PyzfsCore
import PyzfsFUSE
#if canImport(Glibc)
import Glibc
#endif

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the pyzfs mounts of this mount namespace: archive, mount point, server pid.")

    @Flag(help: "Print JSON lines for tools.")
    var json = false

    func run() throws {
        let mounts = MountTable.current().filter(\.isPyzfs)
        if !json && !mounts.isEmpty { print("ARCHIVE\tMOUNTPOINT\tPID") }
        for m in mounts {
            let pid = readControlAttribute(mountpoint: m.mountPoint, name: "pid")
            if json {
                let p = pid.map { $0 } ?? "null"
                print("{\"archive\":\(jsonString(m.source)),\"mountpoint\":\(jsonString(m.mountPoint)),\"pid\":\(p),\"alive\":\(pid != nil)}")
            } else {
                print("\(m.source)\t\(m.mountPoint)\t\(pid ?? "- (dead: pyzfs unmount \(m.mountPoint))")")
            }
        }
    }
}

