/// The one integrity record of a member, whichever path serves it (stored at any offset, cached
/// whole, large with checkpoints, streamed).
///
/// The server cannot tell an `mmap` fault from a read, so the rules are:
/// - an ELF member (what the dynamic loader maps and runs) is verified whole before its first
///   byte is served;
/// - any other member may be served during its first in-order pass, in which every byte served
///   has been fed to the running CRC-32 in order; a read that starts past what the pass has
///   covered breaks the pass and is answered only after the whole member was verified;
/// - a member that failed fails every later read, and the kernel is told to drop its pages.
final class MemberIntegrity: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`, which also serialises the in-order pass.
    enum State: Equatable {
        case unverified
        case verified
        case failed(MemberError)
    }

    let lock = ConditionLock()
    var state: State = .unverified
    /// The first pass: bytes `0..<covered` went through `crc` in order (stored members), or were
    /// served in order (members whose decoder checks the CRC as it inflates).
    var covered: UInt64 = 0
    var crc: UInt32 = 0
    /// Whether the member starts with the ELF magic; nil until its first bytes were seen.
    var isELF: Bool? = nil

    /// The failure, if the member failed (lock held).
    var failure: MemberError? {
        if case let .failed(e) = state { return e }
        return nil
    }

    /// Whether a read at `offset` continues the first pass (lock held): it starts within what
    /// the pass has covered. A read that leaves a gap breaks it, even by one byte: a gap read
    /// and checked first would serve bytes (the read's own) the CRC has not vouched for yet.
    func continuesPass(at offset: UInt64) -> Bool { offset <= covered }

    /// Whether `bytes` (at least 4 of them, from offset 0) start an ELF file.
    static func isELF(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x7F && bytes[1] == UInt8(ascii: "E")
            && bytes[2] == UInt8(ascii: "L") && bytes[3] == UInt8(ascii: "F")
    }

    /// Whether `error` is about the member's own bytes (remembered for good), rather than a
    /// passing failure of the file or the archive as a whole.
    static func isPermanent(_ error: MemberError) -> Bool {
        switch error {
        case .crcMismatch, .sizeMismatch, .corrupt: return true
        case .encrypted, .unsupportedMethod, .archiveChanged, .io: return false
        }
    }
}
