import Glibc
@testable import PyzfsCore
@testable import PyzfsFUSE
import Testing

/// The libfuse options a `pyzfs run` in a namespace hands mount(2) itself: every word pyzfs
/// accepts is either translated as libfuse's mount.c does, or refused with a message.
@Suite("Kernel mount requests")
struct KernelMountTests {
    @Test("every libfuse option pyzfs accepts is translated or refused, never dropped")
    func everyOptionAccountedFor() throws {
        let words = MountOptions.libfuseFlags.sorted() + MountOptions.libfuseValued.sorted().map { $0 + "=1" }
        for word in words {
            let base = try KernelMount.request(source: "/a.pyz", options: [])
            do {
                let r = try KernelMount.request(source: "/a.pyz", options: [word])
                let key = String(word.split(separator: "=")[0])
                let changed = r != base
                #expect(changed || KernelMount.sessionWords.contains(key) || ["rw", "exec", "suid", "dev", "async", "atime",
                        "diratime", "norelatime", "nostrictatime", "nolazytime"].contains(key),
                        "\(word) changed nothing in the mount and is no session option")
            } catch {
                #expect(["blkdev", "blksize=1"].contains(word), "\(word) refused: \(error)")
            }
        }
    }

    @Test("flags, kernel options, source and type")
    func translation() throws {
        let r = try KernelMount.request(source: "/a.pyz", options: [
            "rw", "nosuid", "nodev", "default_permissions", "fsname=/x\\,y\\\\z.pyz", "subtype=pyzfs", "noexec",
            "noatime", "allow_root", "max_read=65536", "ro", "exec", "noexec", "max_threads=4",
        ])
        #expect(r.source == "/x,y\\z.pyz")
        #expect(r.type == "fuse.pyzfs")
        #expect(r.flags == UInt(MS_NOSUID) | UInt(MS_NODEV) | UInt(MS_NOEXEC) | UInt(MS_NOATIME) | UInt(MS_RDONLY))
        #expect(r.data == ["default_permissions", "allow_other", "max_read=65536"])
        #expect(try KernelMount.request(source: "/a.pyz", options: ["ro", "rw"]).flags & UInt(MS_RDONLY) == 0)
        #expect(throws: MountFailure.unsupportedOption("blkdev")) { try KernelMount.request(source: "/a.pyz", options: ["blkdev"]) }
    }
}
