import ArgumentParser
import Logging
import PyzfsCore
import PyzfsFUSE
#if canImport(Glibc)
import Glibc
#endif

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a zipapp (.pyz) or zip archive read-only.",
        discussion: """
        Returns once the mount is usable; the server then runs in the background and logs to \
        syslog/journald (-o log=FILE for a file). With -f it stays in the foreground and logs to \
        stderr. The mount is always read-only, nosuid and nodev: rw, dev and suid are overridden \
        with a warning; the one exception is bytecode (see pycache=): with the bytecode overlay \
        the kernel mount is rw, and the server refuses every other change with EROFS. Unmount with \
        'pyzfs unmount MOUNTPOINT' (or fusermount3 -u, or umount).

        Options (-o, comma-separated; each paragraph below is one):

        cache_size=SIZE: memory for decompressed members, such as 256M or 1G (default: an \
        eighth of the memory this process may use, cgroup limit included, between 64M and 1G).

        uid=N, gid=N: owner and group of every file (default: the mounting user's).

        umask=OCT: permission bits cleared from every mode, such as 022.

        log=FILE: the log file of the background server (default: syslog).

        symlinks=inside|all: links pointing out of the mount are hidden (inside, the default) \
        or shown as they are (all).

        pycache=auto|memory|off: with memory, CPython may write .pyc files into __pycache__ \
        directories; they are held in memory until unmount, so each module is compiled once \
        per mount (the kernel mount is then rw; every other write is still refused with EROFS, \
        and only the mounting user and root may write bytecode). auto (the default) chooses \
        memory when most .py files have no pyc beside them (shiv, pex); ro turns it off.

        ro: a read-only kernel mount (findmnt shows ro), with the bytecode overlay off \
        whatever pycache= says; fstab's ro does the same.

        sha256=HEX: the archive's SHA-256 as sha256sum prints it. The whole file is hashed \
        before anything is read from it (one pass, about 1 GB/s), a mismatch exits 65 (125 for \
        pyzfs run), and once mounted any change of the file (size, mtime or ctime: a write, even \
        with the mtime put back, or a chmod) fails the reads that need it with EIO.

        pycache_size=SIZE: bytes of bytecode held at most, each file's and directory's name and \
        384 bytes per entry counted too (default 64M; beyond, CPython just does not cache).

        prefetch=N: threads that decompress shared libraries before they are read (default: \
        one less than the CPUs, at least 1; 0 disables).

        threads=N: threads answering reads that wait for a decompression or the disk (default: \
        the CPUs, at least 2).

        allow_other, allow_root, default_permissions, auto_unmount, fsname=, subtype=, \
        max_read=, blkdev, blksize=, the SELinux context options and the mount(8) flags \
        libfuse 3.14 takes (ro, nosuid, nodev, exec, noexec, atime, noatime, sync, async, \
        dirsync) are passed to libfuse; defaults, nofail, _netdev, auto, noauto, user(s) and \
        x-* (fstab words) are ignored. Any other option is an error, the atime words libfuse \
        3.14 refuses (relatime, strictatime, lazytime, diratime, their no- forms) and \
        max_threads=, max_idle_threads= included. pyzfs run refuses auto_unmount.

        As an fstab entry (mount(8) runs /sbin/mount.fuse.pyzfs, or mount.fuse3, which runs \
        'pyzfs ARCHIVE MOUNTPOINT -o OPTIONS'): \
        /opt/app.pyz /mnt/app fuse.pyzfs allow_other,nofail 0 0

        Exit codes: 0 mounted; 64 bad option; 65 not a zip or damaged; 66 archive unreadable; \
        69 FUSE unavailable; 70 internal error; 71 mount failed; 73 bad mount point; \
        75 mount point in use; 77 no permission (docs/errors.md).
        """)

    @Argument(help: "The zipapp or zip file to mount.")
    var archive: String

    @Argument(help: "An existing directory to mount it on.")
    var mountpoint: String

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options, comma-separated (see below).", valueName: "options"))
    var options: [String] = []

    @Flag(name: .customShort("f"), help: "Stay in the foreground and log to stderr.")
    var foreground = false

    @Flag(name: .customShort("d"), help: "Log every FUSE request (implies -f).")
    var debug = false

    @Flag(name: .customShort("v"), help: "Log each decompression with its size and duration.")
    var verbose = false


    func run() throws {
        try Mounter(archive: archive, mountpoint: mountpoint, optionGroups: options,
                    foreground: foreground || debug, debug: debug, verbose: verbose).mount()
    }
}

/// `pyzfs mount` step by step; every failure is a `Failure` with its exit code.
struct Mounter {
    let archive: String
    let mountpoint: String
    let optionGroups: [String]
    let foreground: Bool
    let debug: Bool
    let verbose: Bool

    func mount() throws(Failure) {
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
    func replacingOccurrences(of target: String, with replacement: String) -> String {
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
func isDeadMount(_ path: String) -> Bool {
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
