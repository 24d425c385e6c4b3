import PyzfsApps
import PyzfsCore
import PyzfsRun
#if canImport(Glibc)
import Glibc
#endif

/// pyzfs called as `mount.fuse.pyzfs` or `mount.pyzfs` (symlinks installed in /sbin, where
/// mount(8) looks for helpers of `-t fuse.pyzfs` and `-t pyzfs`):
/// `mount.fuse.pyzfs SOURCE MOUNTPOINT [-f] [-n] [-s] [-v] [-o OPTIONS]`.
///
/// Compared with going through mount.fuse3 it adds no `dev,suid` (so no warnings about
/// overriding them), accepts `-t pyzfs`, honours mount(8)'s `-f` (fake), and answers with
/// mount(8)'s exit codes: 0 mounted, 1 bad usage or permissions, 32 mount failure.
enum MountHelper {
    static let names: Set<String> = ["mount.fuse.pyzfs", "mount.pyzfs", "mount.fuse3.pyzfs"]

    /// Whether this process was started under a helper's name.
    static var isInvoked: Bool {
        let arg0 = CommandLine.arguments.first ?? ""
        return names.contains(String(arg0.split(separator: "/").last ?? ""))
    }

    static func main() -> Never {
        var positional: [String] = []
        var groups: [String] = []
        var fake = false
        var args = CommandLine.arguments.dropFirst().makeIterator()
        while let a = args.next() {
            switch a {
            case "-o":
                guard let v = args.next() else { usage("-o needs options") }
                groups.append(v)
            case "-f": fake = true
            case "-n", "-s", "-v", "-w", "-r":
                if a == "-r" { groups.append("ro") }  // -w (rw) is overridden anyway
            default:
                if a.hasPrefix("-o") && a.count > 2 { groups.append(String(a.dropFirst(2))) } else if a.hasPrefix("-") {
                    usage("unknown flag \(a)")
                } else {
                    positional.append(a)
                }
            }
        }
        guard positional.count == 2 else { usage("needs SOURCE and MOUNTPOINT") }
        // Options that only mean something to mount(8) or fstab.
        let fstabOnly: Set<String> = ["rw", "dev", "suid", "exec", "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser", "owner", "group", "loop"]
        let options = groups.map { g in
            MountOptions.splitOptions(g).filter { !fstabOnly.contains($0) && !$0.hasPrefix("x-") }.joined(separator: ",")
        }.filter { !$0.isEmpty }
        if fake { exit(0) }
        do {
            try Mounter(archive: positional[0], mountpoint: positional[1], optionGroups: options,
                        foreground: false, debug: false, verbose: false).mount()
            exit(0)
        } catch {
            writeAll(2, "mount.fuse.pyzfs: \(error.message)\n")
            exit(error.code == Exit.usage || error.code == Exit.noPermission ? 1 : 32)
        }
    }

    static func usage(_ why: String) -> Never {
        writeAll(2, "mount.fuse.pyzfs: \(why)\nusage: mount.fuse.pyzfs SOURCE MOUNTPOINT [-f] [-n] [-s] [-v] [-o OPTIONS]\n")
        exit(1)
    }
}
