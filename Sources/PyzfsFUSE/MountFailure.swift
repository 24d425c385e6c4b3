import Foundation

/// Why a FUSE mount could not be made, whichever way pyzfs mounts: through libfuse (`pyzfs
/// mount`, `pyzfs run --no-namespace`) or with mount(2) in a private namespace (`pyzfs run`).
/// Each case says what is wrong and what would fix it; the commands add their exit codes.
public enum MountFailure: Error, Equatable, Sendable, Codable, CustomStringConvertible {
    /// There is no /dev/fuse.
    case noDevice
    /// /dev/fuse exists but cannot be opened (permissions, a device cgroup); the reason.
    case deviceDenied(String)
    /// mount(2) was refused (no CAP_SYS_ADMIN, seccomp, AppArmor); the reason.
    case mountDenied(String)
    /// `allow_other` by a user without `user_allow_other` in /etc/fuse.conf; libfuse's words.
    case allowOtherDenied(String)
    /// No private mount namespace could be made; the reason.
    case namespaceDenied(String)
    /// Not root, and no fusermount3 in /usr/bin or on PATH.
    case noFusermount
    /// libfuse refused the options; its words.
    case badOptions(String)
    /// An option a mount(2) in a namespace cannot express (it needs a block device).
    case unsupportedOption(String)
    /// No scratch place could take the mount directory (the places tried).
    case noScratch([String])
    /// Another reason.
    case failed(String)

    /// The failure libfuse reported in `text` (its log line): libfuse gives no errno, so its
    /// words are read here, and only here.
    public static func libfuse(_ text: String) -> MountFailure {
        let denied = text.contains("Operation not permitted") || text.contains("Permission denied")
        if text.contains("user_allow_other") { return .allowOtherDenied(text) }
        if denied && text.contains("/dev/fuse") { return .deviceDenied(text) }
        if denied { return .mountDenied(text) }
        if text.contains("device not found") || text.contains("No such device") { return .noDevice }
        return .failed(text)
    }

    public var description: String { explanation }

    /// What is wrong.
    public var explanation: String { words.explanation }

    /// What would fix it.
    public var fix: String { words.fix }

    /// What is wrong and what would fix it, side by side.
    private var words: (explanation: String, fix: String) {
        switch self {
        case .noDevice:
            return ("there is no /dev/fuse",
                    "load the fuse module (modprobe fuse), or in a container add --device /dev/fuse (and --cap-add SYS_ADMIN)")
        case let .deviceDenied(r):
            return ("/dev/fuse cannot be opened (\(r))", "give this user access to /dev/fuse, or in a container add --device /dev/fuse")
        case let .mountDenied(r):
            return ("mount(2) was refused (\(r)): no CAP_SYS_ADMIN, or a seccomp or AppArmor profile forbids it",
                    "mount as root, or in a container add --cap-add SYS_ADMIN (and --security-opt apparmor=unconfined on AppArmor hosts)")
        case let .allowOtherDenied(r):
            return (r, "add user_allow_other to /etc/fuse.conf, or mount as root")
        case let .namespaceDenied(r):
            return ("no private mount namespace could be made (\(r))", "run as root, or allow unprivileged user namespaces")
        case .noFusermount:
            return ("this user may not mount and there is no fusermount3 (in /usr/bin or on PATH)", "install fuse3 (fusermount3) or run as root")
        case let .badOptions(r):
            return ("libfuse refused the options: \(r)", "check the -o options (pyzfs mount --help)")
        case let .unsupportedOption(o):
            return ("-o \(o) needs a block device, which a mount in a private namespace cannot have", "leave it out, or run with --no-namespace")
        case let .noScratch(places):
            return ("no writable directory for the mount point (tried \(places.joined(separator: ", ")))",
                    "set TMPDIR to a writable directory (in a container: --tmpfs /tmp)")
        case let .failed(r):
            return (r, "pyzfs mount -f -d shows libfuse's messages; a server's log may say more (syslog, or -o log=FILE)")
        }
    }

    /// Whether FUSE cannot be had here at all (no /dev/fuse, /dev/fuse not openable, mount(2) or
    /// fusermount3 refused for lack of privilege, no fusermount3, no user namespace), which
    /// `--fallback=extract` stands in for; a refusal of what was asked for (options, allow_other,
    /// no scratch place) or another failure is reported instead.
    public var meansFUSEUnavailable: Bool {
        switch self {
        case .noDevice, .deviceDenied, .mountDenied, .namespaceDenied, .noFusermount: return true
        case .allowOtherDenied, .badOptions, .unsupportedOption, .noScratch, .failed: return false
        }
    }

    /// A refused namespace changes nothing: the caller's namespace may still take a mount.
    public var allowsPlainMount: Bool { if case .namespaceDenied = self { return true } else { return false } }

    /// One line of JSON, for a pipe between processes (`init(encoded:)` reads it back).
    public var encoded: String {
        // Strings and arrays of strings always encode: a failure would be a bug in this type.
        String(decoding: try! JSONEncoder().encode(self), as: UTF8.self)
    }

    /// The failure `encoded` wrote; nil for any other text.
    public init?(encoded: String) {
        guard let failure = try? JSONDecoder().decode(MountFailure.self, from: Data(encoded.utf8)) else { return nil }
        self = failure
    }
}
