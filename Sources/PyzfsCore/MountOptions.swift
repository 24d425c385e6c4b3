/// `-o` options of `pyzfs mount`, split into pyzfs's own (typed) and those handed to libfuse.
public struct MountOptions: Sendable, Equatable {
    /// Bytes of decompressed members held in memory (`cache_size=`); nil for the default.
    public var cacheSize: UInt64? = nil
    public var uid: UInt32? = nil
    public var gid: UInt32? = nil
    /// Bits cleared from every mode (`umask=`, octal).
    public var umask: UInt16? = nil
    /// Log file of a server in the background (`log=`); syslog otherwise.
    public var logFile: String? = nil
    public var symlinks: SymlinkPolicy = .inside
    /// Threads decompressing shared libraries ahead of their reads (`prefetch=`; 0 disables).
    public var prefetchThreads: Int? = nil
    /// Threads answering requests that wait for a decompression or the disk (`threads=`).
    public var workerThreads: Int? = nil
    /// Whether CPython may write bytecode into `__pycache__` directories, in memory (`pycache=`).
    public var pycache: PycachePolicy = .auto
    /// Bytes of bytecode the mount accepts (`pycache_size=`).
    public var pycacheSize: UInt64 = 64 << 20
    /// Options passed to libfuse, in order, without the ones pyzfs forces.
    public var libfuse: [String] = []
    /// What was asked for and overridden (`rw`, `dev`, `suid`), to warn about.
    public var overridden: [String] = []
    /// Whether `noexec` was asked for (native extensions then cannot load).
    public var noexec = false
    /// The SHA-256 the archive file must have (`sha256=`, 64 hex digits as sha256sum prints).
    public var sha256: String? = nil
    /// Whether `ro` was asked for: the kernel mount is then read-only and the bytecode overlay
    /// is off, whatever `pycache=` says (fstab and mount.fuse3 pass `ro` on).
    public var readOnly = false

    public init() {}

    /// Options libfuse 3.14's `fuse_session_new` accepts (its `fuse_ll_opts` and mount.c's
    /// `fuse_mount_opts`), passed on as given.
    static let libfuseFlags: Set<String> = [
        "allow_other", "allow_root", "default_permissions", "auto_unmount", "blkdev",
        "exec", "noexec", "atime", "noatime", "sync", "async", "dirsync",
        "ro", "nosuid", "nodev",
    ]
    static let libfuseValued: Set<String> = [
        "fsname", "subtype", "max_read", "blksize", "context", "fscontext", "defcontext", "rootcontext",
    ]
    /// mount(8) words libfuse 3.14's session refuses ("unknown option"), and its loop options,
    /// which `fuse_session_new` does not take either: refused here, before anything is mounted,
    /// so that every mode refuses them alike.
    static let refusedByLibfuse: Set<String> = [
        "diratime", "nodiratime", "relatime", "norelatime", "strictatime", "nostrictatime",
        "lazytime", "nolazytime", "max_threads", "max_idle_threads",
    ]
    /// mount(8) and fstab words that say nothing to a FUSE server.
    static let ignoredFlags: Set<String> = [
        "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser", "owner", "group",
        "noowner", "nogroup", "loud", "silent", "nouser_xattr", "user_xattr",
    ]
    /// Forced to read-only, nosuid, nodev whatever is asked.
    static let overriddenFlags: Set<String> = ["rw", "dev", "suid"]

    /// Parses comma-separated option strings (each as given to one `-o`).
    /// A backslash escapes a comma, as libfuse reads it.
    /// - Throws: `.unknownOption` or `.badValue`, naming the option.
    public static func parse(_ groups: [String]) throws(OptionError) -> MountOptions {
        var o = MountOptions()
        for group in groups {
            for option in splitOptions(group) where !option.isEmpty {
                try o.apply(option)
            }
        }
        return o
    }

    mutating func apply(_ option: String) throws(OptionError) {
        let key: String
        let value: String?
        if let eq = option.firstIndex(of: "=") {
            key = String(option[..<eq])
            value = String(option[option.index(after: eq)...])
        } else {
            key = option
            value = nil
        }
        func need() throws(OptionError) -> String {
            guard let value, !value.isEmpty else { throw .badValue(option: key, reason: "needs a value (\(key)=...)") }
            return value
        }
        switch key {
        case "cache_size":
            let v = try need()
            guard let bytes = parseSize(v), bytes > 0 else {
                throw .badValue(option: key, reason: "'\(v)' is not a size such as 256M, 1G or 1048576")
            }
            cacheSize = bytes
        case "uid":
            let v = try need()
            guard let n = UInt32(v) else { throw .badValue(option: key, reason: "'\(v)' is not a numeric user id") }
            uid = n
        case "gid":
            let v = try need()
            guard let n = UInt32(v) else { throw .badValue(option: key, reason: "'\(v)' is not a numeric group id") }
            gid = n
        case "umask":
            let v = try need()
            guard let n = UInt16(v, radix: 8), n <= 0o7777 else {
                throw .badValue(option: key, reason: "'\(v)' is not an octal mask such as 022")
            }
            umask = n
        case "log":
            logFile = try need()
        case "prefetch", "threads":
            let v = try need()
            guard let n = Int(v), n >= (key == "threads" ? 1 : 0), n <= 64 else {
                throw .badValue(option: key, reason: "'\(v)' is not a thread count (\(key == "threads" ? 1 : 0)-64)")
            }
            if key == "prefetch" { prefetchThreads = n } else { workerThreads = n }
        case "pycache":
            let v = try need()
            guard let p = PycachePolicy(rawValue: v) else {
                throw .badValue(option: key, reason: "'\(v)' is not one of auto, memory, off")
            }
            pycache = p
        case "pycache_size":
            let v = try need()
            guard let bytes = parseSize(v), bytes > 0 else {
                throw .badValue(option: key, reason: "'\(v)' is not a size such as 64M")
            }
            pycacheSize = bytes
        case "sha256":
            let v = try need().lowercased()
            guard v.utf8.count == 64, v.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                throw .badValue(option: key, reason: "'\(v)' is not 64 hexadecimal digits (what sha256sum prints)")
            }
            sha256 = v
        case "symlinks":
            let v = try need()
            guard let p = SymlinkPolicy(rawValue: v) else {
                throw .badValue(option: key, reason: "'\(v)' is not one of \(SymlinkPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            symlinks = p
        default:
            if value == nil && Self.overriddenFlags.contains(key) {
                if !overridden.contains(key) { overridden.append(key) }
            } else if value == nil && Self.ignoredFlags.contains(key) {
                break
            } else if key.hasPrefix("x-") || key == "comment" {
                break  // fstab annotations (x-systemd.*, x-gvfs-*) are for other programs
            } else if value == nil && Self.libfuseFlags.contains(key) {
                if key == "noexec" { noexec = true }
                if key == "ro" { readOnly = true }
                if key == "exec" { noexec = false }
                if !["ro", "nosuid", "nodev"].contains(key) { libfuse.append(key) }
            } else if value != nil && Self.libfuseValued.contains(key) {
                _ = try need()
                libfuse.append(option)
            } else if Self.refusedByLibfuse.contains(key) {
                throw .refusedByLibfuse(key)
            } else {
                throw .unknownOption(key)
            }
        }
    }

    /// Whether the mount takes CPython's bytecode into memory (and so must be a read-write kernel
    /// mount): never with `ro`; with `pycache=auto`, when most sources have no pyc beside them.
    /// - Parameter sources: counts of `.py` files in the archive, and of those without a pyc.
    public func acceptsBytecode(sources: () -> (total: Int, withoutBytecode: Int)) -> Bool {
        // An explicit ro is a read-only kernel mount, which the overlay could not write into.
        if readOnly { return false }
        switch pycache {
        case .memory: return true
        case .off: return false
        case .auto:
            // Archives built without bytecode (shiv, pex, plain zipapp) would compile every module
            // on every start; archives that carry pycs gain nothing and stay a read-only mount.
            let s = sources()
            return s.withoutBytecode * 2 > s.total
        }
    }

    /// `arguments` with each `-oOPTIONS` as `-o OPTIONS`, as sshfs, fuse-zip and squashfuse accept
    /// it (swift-argument-parser's joined short options cannot hold the `=` of mount options).
    /// `valueOptions` take the next word as their value; nothing after `--` is touched, and with
    /// `untilOperand` nothing from the first operand on (`pyzfs run`: the app's arguments).
    public static func separatingJoined(_ arguments: [String], valueOptions: Set<String>, untilOperand: Bool) -> [String] {
        var result: [String] = []
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            if word == "--" || (untilOperand && !word.hasPrefix("-")) { break }
            if word.hasPrefix("-o") && word.count > 2 {
                result += ["-o", String(word.dropFirst(2))]
            } else {
                result.append(word)
                if valueOptions.contains(word) && i + 1 < arguments.count { i += 1; result.append(arguments[i]) }
            }
            i += 1
        }
        return result + arguments[i...]
    }

    /// Splits at commas not preceded by a backslash; the backslashes stay (libfuse unescapes).
    public static func splitOptions(_ s: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for c in s {
            if escaped { current.append(c); escaped = false; continue }
            if c == "\\" { current.append(c); escaped = true; continue }
            if c == "," { parts.append(current); current = ""; continue }
            current.append(c)
        }
        parts.append(current)
        return parts
    }

    /// The value of a libfuse option given by the user, such as `fsname`.
    public func libfuseValue(_ key: String) -> String? {
        for o in libfuse where o.hasPrefix(key + "=") { return String(o.dropFirst(key.count + 1)) }
        return nil
    }
}

/// Whether a mount accepts CPython's bytecode into memory.
public enum PycachePolicy: String, Sendable {
    /// `memory` when most sources of the archive have no pyc beside them, else `off`.
    case auto
    /// `__pycache__` directories accept pycs, held in memory; the kernel mount is read-write for
    /// that, and everything else stays EROFS.
    case memory
    /// Read-only throughout (the kernel mount is `ro`).
    case off
}

/// An option pyzfs does not accept.
public enum OptionError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownOption(String)
    case badValue(option: String, reason: String)
    /// A mount(8) or libfuse word that libfuse 3.14's session refuses.
    case refusedByLibfuse(String)

    public var description: String {
        switch self {
        case let .unknownOption(o): return "unknown option '\(o)' (see pyzfs mount --help for the options)"
        case let .badValue(o, r): return "bad value for option '\(o)': \(r)"
        case let .refusedByLibfuse(o):
            return "option '\(o)' is refused by libfuse 3.14's session; leave it out"
                + (o.hasSuffix("threads") ? " (pyzfs runs its own request loop; threads= sets its workers)" : " (atime options other than atime and noatime are not FUSE mount options there)")
        }
    }
}

/// Parses `1048576`, `64K`, `256M`, `1G`, `1.5G` (powers of 1024; a trailing `B`/`iB` is allowed).
public func parseSize(_ text: String) -> UInt64? {
    var s = text.uppercased()
    if s.hasSuffix("IB") { s.removeLast(2) } else if s.hasSuffix("B") { s.removeLast() }
    var multiplier: Double = 1
    if let last = s.last, let m = ["K": 1024.0, "M": 1048576.0, "G": 1073741824.0, "T": 1099511627776.0][String(last)] {
        multiplier = m
        s.removeLast()
    }
    guard !s.isEmpty, let n = Double(s), n >= 0, n.isFinite else { return nil }
    let bytes = n * multiplier
    guard bytes < 1.8e19 else { return nil }
    return UInt64(bytes)
}

/// `1.5 GiB`-style text for messages.
public func formatSize(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(bytes)
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    if u == 0 { return "\(bytes) B" }
    let rounded = (v * 10).rounded() / 10
    return rounded == rounded.rounded() ? "\(Int(rounded)) \(units[u])" : "\(rounded) \(units[u])"
}
