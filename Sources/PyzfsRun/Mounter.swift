import Logging
import PyzfsApps
import PyzfsCore
import PyzfsFUSE
#if canImport(Glibc)
import Glibc
#endif

/// `pyzfs mount` step by step; every failure is a `Failure` with its exit code.
public struct Mounter {
    public let archive: String
    public let mountpoint: String
    public let optionGroups: [String]
    public let foreground: Bool
    public let debug: Bool
    public let verbose: Bool

    public init(archive: String, mountpoint: String, optionGroups: [String], foreground: Bool, debug: Bool, verbose: Bool) {
        self.archive = archive
        self.mountpoint = mountpoint
        self.optionGroups = optionGroups
        self.foreground = foreground
        self.debug = debug
        self.verbose = verbose
    }

    public func mount() throws(Failure) {
        let options: MountOptions
        do { options = try MountOptions.parse(optionGroups) } catch { throw Failure(Exit.usage, "\(error)") }
        if debug || verbose { LogSink.shared.setLevel(.debug) }
        for o in options.overridden {
            log.warning("option '\(o)' ignored: pyzfs mounts are always read-only, nosuid and nodev")
        }
        if options.noexec {
            log.warning("noexec: native extensions (.so) on this mount cannot be loaded")
        }
        var logFD: Int32 = -1
        if let file = options.logFile, !foreground {
            logFD = openLogFile(options)
            if logFD < 0 { throw Failure(Exit.usage, "cannot open log file \(file): \(errnoText(errno)); check the path, or drop log= to log to syslog") }
        }

        let opened = try openArchive(archive, options: options)
        let target = try checkMountPoint(mountpoint)
        if let unavailable = fuseUnavailable() { throw mountFailure(unavailable, mountpoint: target) }

        var configuration = opened.serverConfiguration(options)
        configuration.debug = debug

        let operations = Operations(fs: opened.filesystem, archivePath: opened.path, logger: log)
        let server: Server
        do {
            server = try Server(operations: operations, mountpoint: target, configuration: configuration)
        } catch {
            throw mountFailure(error, mountpoint: target)
        }
        do {
            try server.mount()
        } catch {
            throw mountFailure(error, mountpoint: target)
        }
        var summary = "mounted \(opened.path) on \(target): \(opened.index.entries.count) entries, cache \(formatSize(UInt64(opened.filesystem.cache.budget)))"
        if let o = opened.filesystem.overlay { summary += ", bytecode written into memory (up to \(formatSize(UInt64(o.budget))))" }
        // `python3 MOUNTPOINT` would run the tool's own __main__, which reads its zip and extracts it.
        let hint = BundledApp.kind(of: opened.filesystem.tree).map {
            "\(opened.path) is a \($0.rawValue) app: start it with 'pyzfs run \(opened.path)' (a mount alone does not run its bootstrap)"
        }

        if foreground {
            log.info("\(summary)")
            if let hint { log.info("\(hint)") }
            let status = "READY=1\nSTATUS=\(summary)"
            Privileges.dropForServing(keep: [.sysAdmin, .dacReadSearch])
            let rc = server.run(onReady: { SystemdNotify.send(status) })
            SystemdNotify.send("STOPPING=1")
            exit(rc == 0 ? 0 : Exit.software)
        }
        daemonize(server: server, summary: summary, hint: hint, logFD: logFD, archiveFD: opened.file.fd, mountpoint: target)
    }

    /// Forks the server into the background; this process exits 0 once the kernel's INIT has been
    /// answered (the mount is usable), after logging `hint`; or reports the server's death and cleans up.
    private func daemonize(server: Server, summary: String, hint: String?, logFD: Int32, archiveFD: Int32, mountpoint: String) -> Never {
        var fds: [Int32] = [-1, -1]
        guard makePipe(&fds) else {
            fail(Failure(Exit.software, "cannot create a pipe: \(errnoText(errno))"), mountpoint: mountpoint)
        }
        let pid = fork()
        if pid < 0 { fail(Failure(Exit.software, "cannot fork: \(errnoText(errno))"), mountpoint: mountpoint) }
        if pid == 0 {
            close(fds[0])
            detachFromCaller(keeping: [fds[1], server.fd, archiveFD], logFD: logFD)
            log.info("\(summary)")
            let ready = fds[1]
            // The mount is made and no thread runs yet: what serving does not need goes now.
            Privileges.dropForServing(keep: [.sysAdmin, .dacReadSearch])
            let rc = server.run(onReady: { signalReady(ready) })
            log.info("unmounted \(mountpoint)")
            _exit(rc == 0 ? 0 : 1)
        }
        close(fds[1])
        if waitForReady(fds[0]) {
            if let hint { log.info("\(hint)") }
            _exit(0)
        }
        let status = WaitStatus.wait(for: pid).map { "\($0)" } ?? "vanished"
        fail(Failure(Exit.software, "the server \(status) before the mount was ready; run pyzfs mount -f -d to see why"),
             mountpoint: mountpoint)
    }

    /// Reports a failure after the mount was made, and removes the mount.
    private func fail(_ failure: Failure, mountpoint: String) -> Never {
        _ = umount2(mountpoint, Int32(MNT_DETACH))
        writeAll(2, "pyzfs: \(failure.message)\n")
        _exit(failure.code)
    }
}

/// Escapes `,` and `\` for libfuse's -o parser.
func escapeOption(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ",", with: "\\,")
}

extension String {
    public func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        return split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

/// The absolute mount point, after checking that something can be mounted on it.
func checkMountPoint(_ path: String) throws(Failure) -> String {
    // A dead FUSE mount may still answer stat from the kernel's attribute cache; the mount
    // table and statfs (never cached) tell the truth.
    let lexical = normalizePath(path.hasPrefix("/") ? path : currentDirectory() + "/" + path)
    if let m = MountTable.mount(at: lexical) {
        if isDeadMount(lexical) {
            throw Failure(Exit.busy, "\(lexical) is a dead mount (Transport endpoint is not connected: its server is gone); clear it with: pyzfs unmount \(lexical)")
        }
        let what = m.isPyzfs ? "pyzfs already mounts \(m.source) there" : "a \(m.fsType) filesystem is mounted there"
        throw Failure(Exit.busy, "\(lexical) is already a mount point (\(what)); unmount it first: pyzfs unmount \(lexical)")
    }
    var st = stat()
    if stat(path, &st) != 0 {
        let e = errno
        switch e {
        case ENOENT:
            throw Failure(Exit.badMountPoint, "mount point \(path) does not exist; create it with: mkdir -p \(path)")
        case EACCES:
            throw Failure(Exit.noPermission, "cannot reach mount point \(path): \(errnoText(e)); mount as a user who can, or choose another mount point")
        default:
            throw Failure(Exit.badMountPoint, "cannot use mount point \(path): \(errnoText(e)); choose another mount point")
        }
    }
    guard (st.st_mode & S_IFMT) == S_IFDIR else {
        throw Failure(Exit.badMountPoint, "mount point \(path) is not a directory; give a directory (mkdir one)")
    }
    let absolute = absolutePath(path)
    if let entries = directoryNames(absolute)?.count {
        if entries > 0 {
            log.warning("mount point \(absolute) is not empty: its \(entries) entr\(entries == 1 ? "y is" : "ies are") hidden until the archive is unmounted")
        }
    }
    if absolute != lexical, let m = MountTable.mount(at: absolute) {
        throw Failure(Exit.busy, "\(absolute) is already a mount point (a \(m.fsType) filesystem is mounted there); unmount it first: umount \(absolute)")
    }
    return absolute
}

/// Whether the mount at `path` has lost its server ("Transport endpoint is not connected").
public func isDeadMount(_ path: String) -> Bool {
    var st = statvfs()
    return statvfs(path, &st) != 0 && errno == ENOTCONN
}

/// Why no FUSE mount can be attempted here at all (nil: one can be).
func fuseUnavailable() -> MountFailure? {
    if access("/dev/fuse", F_OK) != 0 { return .noDevice }
    if getuid() != 0 && Fusermount.path() == nil { return .noFusermount }
    return nil
}

/// `pyzfs mount`'s failure for a mount that cannot be made: one line and its exit code.
func mountFailure(_ failure: MountFailure, mountpoint: String) -> Failure {
    let code: Int32
    switch failure {
    case .noDevice, .noFusermount: code = Exit.noFUSE
    case .deviceDenied, .mountDenied, .allowOtherDenied, .namespaceDenied: code = Exit.noPermission
    case .badOptions, .unsupportedOption: code = Exit.usage
    case .noScratch, .failed: code = Exit.mountFailed
    }
    return Failure(code, "cannot mount on \(mountpoint): \(failure.explanation); \(failure.fix)")
}
