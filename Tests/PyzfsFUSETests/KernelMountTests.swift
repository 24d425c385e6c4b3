import CFuse3
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
        for word in Self.acceptedWords {
            let base = try KernelMount.request(source: "/a.pyz", options: [])
            do {
                let r = try KernelMount.request(source: "/a.pyz", options: [word])
                let key = String(word.split(separator: "=")[0])
                let changed = r != base
                // A word that changes nothing is a session option or a flag word that clears
                // its flag (already clear in the base request).
                #expect(changed || KernelMount.sessionWords.contains(key) || KernelMount.flagWords[key]?.set == false,
                        "\(word) changed nothing in the mount and is no session option")
            } catch {
                #expect(["blkdev", "blksize=1"].contains(word), "\(word) refused: \(error)")
            }
        }
    }

    /// Every word of pyzfs's tables, as `MountOptions.parse` would hand it on.
    static let acceptedWords = MountOptions.libfuseFlags.sorted() + MountOptions.libfuseValued.sorted().map { $0 + "=1" }

    @Test("the linked libfuse's fuse_session_new accepts every libfuse word pyzfs accepts, and refuses those pyzfs refuses as refused by it")
    func libfuseAcceptsEveryWord() throws {
        func accepted(_ word: String) -> Bool {
            let argv: [String] = ["pyzfs", "-o", word]
            var cStrings = argv.map { strdup($0) }
            defer { cStrings.forEach { free($0) } }
            var ops = fuse_lowlevel_ops()
            return cStrings.withUnsafeMutableBufferPointer { buffer -> Bool in
                var args = fuse_args(argc: 3, argv: buffer.baseAddress, allocated: 0)
                defer { fuse_opt_free_args(&args) }
                guard let se = pyzfs_fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, nil) else { return false }
                fuse_session_destroy(se)
                return true
            }
        }
        for word in Self.acceptedWords { #expect(accepted(word), "libfuse refuses -o \(word), which pyzfs accepts") }
        for word in MountOptions.refusedByLibfuse.sorted() {
            #expect(!accepted(word) && !accepted(word + "=1"), "libfuse accepts -o \(word), which pyzfs refuses")
            #expect(throws: OptionError.refusedByLibfuse(word)) { try MountOptions.parse([word]) }
        }
    }

    @Test("flags, kernel options, source and type")
    func translation() throws {
        let r = try KernelMount.request(source: "/a.pyz", options: [
            "rw", "nosuid", "nodev", "default_permissions", "fsname=/x\\,y\\\\z.pyz", "subtype=pyzfs", "noexec",
            "noatime", "allow_root", "max_read=65536", "ro", "exec", "noexec", "auto_unmount",
        ])
        #expect(r.source == "/x,y\\z.pyz")
        #expect(r.type == "fuse.pyzfs")
        #expect(r.flags == UInt(MS_NOSUID) | UInt(MS_NODEV) | UInt(MS_NOEXEC) | UInt(MS_NOATIME) | UInt(MS_RDONLY))
        #expect(r.data == ["default_permissions", "allow_other", "max_read=65536"])
        #expect(try KernelMount.request(source: "/a.pyz", options: ["ro", "rw"]).flags & UInt(MS_RDONLY) == 0)
        #expect(throws: MountFailure.unsupportedOption("blkdev")) { try KernelMount.request(source: "/a.pyz", options: ["blkdev"]) }
    }
}
