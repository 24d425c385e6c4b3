@testable import PyzfsFUSE
import Testing

/// The one type for a mount that cannot be made: libfuse's words read in one place, and the
/// line a namespace trial sends back to its parent.
@Suite("Mount failures")
struct MountFailureTests {
    @Test("libfuse's messages classified")
    func libfuseWords() {
        #expect(MountFailure.libfuse("fuse: failed to open /dev/fuse: Permission denied")
                == .deviceDenied("fuse: failed to open /dev/fuse: Permission denied"))
        #expect(MountFailure.libfuse("fuse: mount failed: Operation not permitted") == .mountDenied("fuse: mount failed: Operation not permitted"))
        #expect(MountFailure.libfuse("fusermount3: option allow_other only allowed if 'user_allow_other' is set in /etc/fuse.conf")
                == .allowOtherDenied("fusermount3: option allow_other only allowed if 'user_allow_other' is set in /etc/fuse.conf"))
        #expect(MountFailure.libfuse("fuse: device not found, try 'modprobe fuse' first") == .noDevice)
        #expect(MountFailure.libfuse("fuse: mount failed: Invalid argument") == .failed("fuse: mount failed: Invalid argument"))
    }

    @Test("every case survives the trial's pipe", arguments: [
        MountFailure.noDevice, .deviceDenied("Permission denied"), .mountDenied("Operation not permitted"),
        .allowOtherDenied("x y"), .namespaceDenied("Operation not permitted"), .noFusermount, .badOptions("a,b"),
        .unsupportedOption("blkdev"), .noScratch(["/a b", "/tmp"]), .noScratch([]), .failed(""), .failed("with\nnewline"),
    ])
    func roundTrip(failure: MountFailure) {
        #expect(MountFailure(encoded: failure.encoded) == failure)
        #expect(!failure.explanation.isEmpty || failure == .failed("") || failure == .allowOtherDenied(""))
        #expect(!failure.fix.isEmpty)
    }

    @Test("only a refusal that means FUSE cannot be had here lets --fallback=extract stand in", arguments: [
        (MountFailure.noDevice, true), (.deviceDenied("Permission denied"), true), (.mountDenied("Operation not permitted"), true),
        (.namespaceDenied("Operation not permitted"), true), (.noFusermount, true),
        (.libfuse("fusermount3: mount failed: Operation not permitted"), true),
        (.allowOtherDenied("x"), false), (.badOptions("a"), false), (.unsupportedOption("blkdev"), false),
        (.noScratch(["/tmp"]), false), (.failed("the server exited before the mount was ready"), false),
    ])
    func fuseUnavailable(failure: MountFailure, unavailable: Bool) {
        #expect(failure.meansFUSEUnavailable == unavailable, "\(failure)")
    }
}
