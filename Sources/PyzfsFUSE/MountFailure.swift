/// Why a FUSE mount could not be made, whichever way pyzfs mounts: through libfuse (`pyzfs
/// mount`, `pyzfs run --no-namespace`) or with mount(2) in a private namespace (`pyzfs run`).
/// Each case says what is wrong and what would fix it; the commands add their exit codes.
public enum MountFailure: Error, Equatable, Sendable, CustomStringConvertible {
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
    public var explanation: String {
        switch self {
        case .noDevice: return "there is no /dev/fuse"
        case let .deviceDenied(r): return "/dev/fuse cannot be opened (\(r))"
        case let .mountDenied(r): return "mount(2) was refused (\(r)): no CAP_SYS_ADMIN, or a seccomp or AppArmor profile forbids it"
        case let .allowOtherDenied(r): return r
        case let .namespaceDenied(r): return "no private mount namespace could be made (\(r))"
        case .noFusermount: return "this user may not mount and there is no fusermount3 (in /usr/bin or on PATH)"
        case let .badOptions(r): return "libfuse refused the options: \(r)"
        case let .unsupportedOption(o): return "-o \(o) needs a block device, which a mount in a private namespace cannot have"
        case let .noScratch(places): return "no writable directory for the mount point (tried \(places.joined(separator: ", ")))"
        case let .failed(r): return r
        }
    }

    /// What would fix it.
    public var fix: String {
        switch self {
        case .noDevice: return "load the fuse module (modprobe fuse), or in a container add --device /dev/fuse (and --cap-add SYS_ADMIN)"
        case .deviceDenied: return "give this user access to /dev/fuse, or in a container add --device /dev/fuse"
        case .mountDenied: return "mount as root, or in a container add --cap-add SYS_ADMIN (and --security-opt apparmor=unconfined on AppArmor hosts)"
        case .allowOtherDenied: return "add user_allow_other to /etc/fuse.conf, or mount as root"
        case .namespaceDenied: return "run as root, or allow unprivileged user namespaces"
        case .noFusermount: return "install fuse3 (fusermount3) or run as root"
        case .badOptions: return "check the -o options (pyzfs mount --help)"
        case .unsupportedOption: return "leave it out, or run with --no-namespace"
        case .noScratch: return "set TMPDIR to a writable directory (in a container: --tmpfs /tmp)"
        case .failed: return "pyzfs mount -f -d shows libfuse's messages; a server's log may say more (syslog, or -o log=FILE)"
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

    /// One line, for a pipe between processes (`init(encoded:)` reads it back).
    public var encoded: String {
        switch self {
        case .noDevice: return "noDevice "
        case let .deviceDenied(r): return "deviceDenied " + r
        case let .mountDenied(r): return "mountDenied " + r
        case let .allowOtherDenied(r): return "allowOtherDenied " + r
        case let .namespaceDenied(r): return "namespaceDenied " + r
        case .noFusermount: return "noFusermount "
        case let .badOptions(r): return "badOptions " + r
        case let .unsupportedOption(o): return "unsupportedOption " + o
        case let .noScratch(places): return "noScratch " + places.joined(separator: "\u{1f}")
        case let .failed(r): return "failed " + r
        }
    }

    public init?(encoded: String) {
        guard let space = encoded.firstIndex(of: " ") else { return nil }
        let r = String(encoded[encoded.index(after: space)...])
        switch encoded[..<space] {
        case "noDevice": self = .noDevice
        case "deviceDenied": self = .deviceDenied(r)
        case "mountDenied": self = .mountDenied(r)
        case "allowOtherDenied": self = .allowOtherDenied(r)
        case "namespaceDenied": self = .namespaceDenied(r)
        case "noFusermount": self = .noFusermount
        case "badOptions": self = .badOptions(r)
        case "unsupportedOption": self = .unsupportedOption(r)
        case "noScratch": self = .noScratch(r.split(separator: "\u{1f}").map(String.init))
        case "failed": self = .failed(r)
        default: return nil
        }
    }
}
