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

    /// Examples of every case: with texts that a line-based format would break (newlines, the
    /// old format's separators, spaces), and empty ones.
    static let examples: [MountFailure] = [
        .noDevice, .deviceDenied("Permission denied"), .mountDenied("Operation not permitted"),
        .allowOtherDenied("x y"), .namespaceDenied("Operation not permitted"), .noFusermount, .badOptions("a,b"),
        .unsupportedOption("blkdev"), .noScratch(["/a b", "/tmp"]), .noScratch([]), .noScratch(["/a\u{1f}b", ""]),
        .failed(""), .failed("with\nnewline"), .failed("noDevice "), .deviceDenied("é \"quoted\" \\"),
    ]

    /// The position of `failure`'s case in the declaration: this switch stops compiling when a
    /// case is added, so that `examples` gets one.
    static func caseNumber(_ failure: MountFailure) -> Int {
        switch failure {
        case .noDevice: 0
        case .deviceDenied: 1
        case .mountDenied: 2
        case .allowOtherDenied: 3
        case .namespaceDenied: 4
        case .noFusermount: 5
        case .badOptions: 6
        case .unsupportedOption: 7
        case .noScratch: 8
        case .failed: 9
        }
    }

    @Test("the examples hold every case")
    func examplesHoldEveryCase() {
        #expect(Set(Self.examples.map(Self.caseNumber)) == Set(0...9))
    }

    @Test("every case survives the trial's pipe, as one line", arguments: examples)
    func roundTrip(failure: MountFailure) {
        #expect(MountFailure(encoded: failure.encoded) == failure)
        #expect(!failure.encoded.contains("\n"))
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

    @Test("text that no failure wrote reads as none", arguments: ["", "ok", "noDevice", "{}", "{\"unknown\":{}}"])
    func notAFailure(text: String) {
        #expect(MountFailure(encoded: text) == nil)
    }
}
