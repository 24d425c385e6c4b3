import CLinux
import Logging
import PyzfsCore
import PyzfsFUSE
#if canImport(Glibc)
import Glibc
#endif

/// `pyzfs run`: mount, start the app on the mount, end the mount with the app.
///
/// Default, in a private mount namespace (the AppImage model): a server process is forked
/// first (it stays outside the namespace), then this process unshares a mount namespace, makes
/// its mounts private, mounts /dev/fuse with mount(2), hands the descriptor to the server over a
/// socket, waits for the kernel's INIT to be answered and `exec`s the interpreter, so pid,
/// signals and exit status are the app's own. When the last process in the namespace exits the
/// mount goes with it, the server's /dev/fuse reads end, and the server removes the directory.
/// With `--no-namespace`, or as PID 1, this process stays as the app's parent instead.
struct Launcher {
    let archive: String
    let python: String?
    let useNamespace: Bool
    let fallbackToExtract: Bool
    let optionGroups: [String]
    let arguments: [String]

    func launch() -> Never {
        do {
            try launchOrThrow()
        } catch {
            writeAll(2, "pyzfs: \(error.message)\n")
            exit(error.code)
        }
    }

    private func launchOrThrow() throws(Failure) -> Never {
        let options: MountOptions
        do { options = try MountOptions.parse(optionGroups) } catch { throw Failure(Exit.runFailed, "\(error)") }
        let opened: OpenedArchive
        do { opened = try openArchive(archive, options: options) } catch { throw Failure(Exit.runFailed, error.message) }
        // The app's command (shiv and pex metadata read and checked) before anything is mounted.
        let layout = try AppLayout(opened, archive: archive, interpreter: try Interpreter.resolve(python: python, opened: opened),
                                   arguments: arguments)
        let interpreter = layout.interpreter
        let check = StartCheck.begin(interpreter, opened: opened)

        var refusal: MountFailure? = nil
        if useNamespace {
            do { try launchInNamespace(opened, options: options, layout: layout, check: check) } catch let r { refusal = r }
        }
        // Without a namespace (asked for, or none could be made): the caller's namespace.
        if !useNamespace || refusal?.allowsPlainMount == true {
            do { try launchWithoutNamespace(opened, options: options, layout: layout, check: check) } catch let r {
                refusal = r  // the namespace's refusal, if any, allowed this try: this one says more
            }
        }
        let reason = refusal ?? .failed("no mount could be made")
        if fallbackToExtract {
            log.warning("\(reason.explanation); running from an extracted copy instead (--fallback=extract)")
            StartCheck.warn(check?(), opened: opened)
            try runExtracted(opened, layout: layout)
        }
        throw Failure(Exit.runFailed, refusalMessage(opened, reason))
    }

    private func refusalMessage(_ opened: OpenedArchive, _ reason: MountFailure, after: String = "") -> String {
        "cannot mount \(opened.path)\(after): \(reason.explanation); \(reason.fix)"
            + (fallbackToExtract ? "" : ", or run with --fallback=extract (PYZFS_FALLBACK=extract) to extract it into a cache")
    }

    // MARK: namespace mode

    private func launchInNamespace(_ opened: OpenedArchive, options: MountOptions, layout: AppLayout,
                                   check: (() -> InterpreterFacts?)?) throws(MountFailure) {
        // The libfuse options pyzfs mount would use, made into mount(2)'s arguments.
        let request = try KernelMount.request(source: opened.path, options: opened.serverConfiguration(options).libfuseOptions)
        let mountpoint = try makeMountDirectory(named: layout.mountDirectoryName)
        // Where something would fall back, tried in a throwaway child first: a refusal then
        // leaves this process in the caller's namespaces, where the plain mount through
        // fusermount3 and the extract fallback belong. (As root without --fallback=extract
        // nothing would: the trial's millisecond is saved.)
        let trial = fallbackToExtract || geteuid() != 0
        if trial, let refusal = probeNamespaceMount(request, on: mountpoint) {
            removeMountDirectory(mountpoint)
            throw refusal
        }
        var channel: [Int32] = [-1, -1]
        var ready: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &channel) == 0,
              makePipe(&ready) else {
            removeMountDirectory(mountpoint)
            throw .failed("cannot create a socket: \(errnoText(errno))")
        }
        // The server: forked twice, so that it is not the app's child, and before unshare(2),
        // so that it stays outside the namespace whose death ends the mount. As PID 1 it would
        // come back to this process anyway: forked once.
        let isInit = getpid() == 1
        let first = fork()
        if first < 0 {
            close(channel[0]); close(channel[1]); close(ready[0]); close(ready[1])
            removeMountDirectory(mountpoint)
            throw .failed("cannot fork: \(errnoText(errno))")
        }
        if first == 0 {
            if !isInit && fork() != 0 { _exit(0) }
            close(channel[0])
            close(ready[0])
            serveAdopted(opened, options: options, mountpoint: mountpoint, channel: channel[1], ready: ready[1])
        }
        if !isInit {
            var status: Int32 = 0
            waitpid(first, &status, 0)
        }
        close(channel[1])
        close(ready[1])
        func abandon() {
            close(channel[0])  // the server sees end-of-file and exits
            close(ready[0])
            _ = umount2(mountpoint, Int32(MNT_DETACH))
            removeMountDirectory(mountpoint)
        }
        // A refused unshare(2) changes nothing: the caller's namespace may still take a mount.
        do { try Self.unshareNamespace() } catch { abandon(); throw error }
        // Now in the new namespace: a failure cannot fall back.
        func fatal(_ r: MountFailure) -> Never {
            abandon()
            writeAll(2, "pyzfs: \(refusalMessage(opened, r, after: " in a private namespace\(trial ? " (a trial just worked)" : "")"))\n")
            _exit(Exit.runFailed)
        }
        let fd: Int32
        do { fd = try Self.mountInNamespace(request, on: mountpoint) } catch { fatal(error) }
        let sent = pyzfs_send_descriptor(channel[0], fd) == 0
        close(fd)
        guard sent, waitForReady(ready[0]) else { fatal(.failed("the server exited before the mount was ready")) }
        close(channel[0])
        close(ready[0])
        StartCheck.warn(check?(), opened: opened)
        // As PID 1 this process's exit kills the server before the namespace's end reaches it:
        // the mount is detached here and its directory removed, nothing waits for the server.
        let cleanup = Supervisor.InitCleanup(end: { _ = umount2(mountpoint, Int32(MNT_DETACH)); removeMountDirectory(mountpoint) }, server: nil)
        startApp(layout, opened: opened, mountpoint: mountpoint, supervise: isInit, waitForAll: false, asInit: cleanup)
    }

    /// Enters a new mount namespace, in a new user namespace unless root.
    /// - Throws: `.namespaceDenied` when unshare(2) refuses; this process is then unchanged.
    private static func unshareNamespace() throws(MountFailure) {
        if pyzfs_unshare_mount_namespace(geteuid() == 0 ? 0 : 1) != 0 { throw .namespaceDenied(errnoText(errno)) }
    }

    /// In the namespace `unshareNamespace` made: maps this user to itself, makes the mounts
    /// private and mounts /dev/fuse as `request` says. The kernel's owner is who mounts
    /// (`uid=`/`gid=` are the files' owner, in the tree).
    /// - Returns: the /dev/fuse descriptor.
    private static func mountInNamespace(_ request: KernelMount.Request, on mountpoint: String) throws(MountFailure) -> Int32 {
        let uid = getuid(), gid = getgid()
        if geteuid() != 0 {
            _ = writeFile("/proc/self/setgroups", "deny")
            guard writeFile("/proc/self/uid_map", "\(uid) \(uid) 1\n"), writeFile("/proc/self/gid_map", "\(gid) \(gid) 1\n") else {
                throw .namespaceDenied("cannot map this user into it: \(errnoText(errno))")
            }
        }
        // On systemd hosts / is shared: without this the mount would propagate to the host.
        if pyzfs_make_mounts_private() != 0 { throw .namespaceDenied("cannot make its mounts private: \(errnoText(errno))") }
        return try KernelMount.mount(request, on: mountpoint, uid: uid, gid: gid)
    }

    /// `unshareNamespace` and `mountInNamespace` in a child that then exits, its mount going
    /// with its namespace.
    /// - Returns: nil when it worked, else why not.
    private func probeNamespaceMount(_ request: KernelMount.Request, on mountpoint: String) -> MountFailure? {
        var answer: [Int32] = [-1, -1]
        guard makePipe(&answer) else { return .failed("cannot create a pipe: \(errnoText(errno))") }
        let child = fork()
        if child == 0 {
            close(answer[0])
            var result = "ok"
            do {
                try Self.unshareNamespace()
                close(try Self.mountInNamespace(request, on: mountpoint))
            } catch { result = error.encoded }
            writeAll(answer[1], result)
            _exit(0)
        }
        close(answer[1])
        defer { close(answer[0]) }
        if child < 0 { return .failed("cannot fork: \(errnoText(errno))") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            let n = Glibc.read(answer[0], &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        let status = WaitStatus.wait(for: child)
        let text = String(decoding: bytes, as: UTF8.self)
        if text == "ok" { return nil }
        return MountFailure(encoded: text) ?? .failed("the trial of a private namespace \(status.map { "\($0)" } ?? "vanished") without an answer")
    }

    /// The server of a namespace mount: receives the /dev/fuse descriptor and serves it until the
    /// namespace is gone, then removes the mount directory.
    private func serveAdopted(_ opened: OpenedArchive, options: MountOptions, mountpoint: String,
                              channel: Int32, ready: Int32) -> Never {
        detach(keeping: [channel, ready, opened.file.fd], options: options)
        let fd = pyzfs_receive_descriptor(channel)
        close(channel)
        if fd < 0 { _exit(0) }  // the launcher could not mount; it reports why
        // The same libfuse options as the launcher's mount: the session's own (allow_root,
        // max_threads) apply; libfuse ignores the mount options for a /dev/fd/N mount point.
        var configuration = opened.serverConfiguration(options)
        configuration.exitOnSignals = false
        let server: Server
        do {
            server = try Server(operations: Operations(fs: opened.filesystem, archivePath: opened.path, logger: log),
                                mountpoint: mountpoint, configuration: configuration)
            try server.adopt(descriptor: fd)
        } catch {
            log.error("cannot serve \(mountpoint): \(error)")
            _exit(1)
        }
        log.info("serving \(opened.path) for pyzfs run on \(mountpoint)")
        // The mount ends with the app's namespace: nothing to unmount, so no CAP_SYS_ADMIN.
        Privileges.dropForServing(keep: [.dacReadSearch])
        _ = server.run(onReady: { signalReady(ready) })
        removeMountDirectory(mountpoint)
        log.info("the app has exited; removed \(mountpoint)")
        _exit(0)
    }

    // MARK: the caller's namespace

    private func launchWithoutNamespace(_ opened: OpenedArchive, options: MountOptions, layout: AppLayout,
                                        check: (() -> InterpreterFacts?)?) throws(MountFailure) {
        if let refusal = fuseUnavailable() { throw refusal }
        let mountpoint = try makeMountDirectory(named: layout.mountDirectoryName)
        let server: Server
        do {
            var configuration = opened.serverConfiguration(options)
            configuration.exitOnSignals = false
            server = try Server(operations: Operations(fs: opened.filesystem, archivePath: opened.path, logger: log),
                                mountpoint: mountpoint, configuration: configuration)
            try server.mount()
        } catch {
            removeMountDirectory(mountpoint)
            throw error
        }
        var lifetime: [Int32] = [-1, -1]
        var ready: [Int32] = [-1, -1]
        guard makePipe(&lifetime), makePipe(&ready) else { fatal("cannot create a pipe: \(errnoText(errno))", mountpoint) }
        let isInit = getpid() == 1
        let first = fork()
        if first < 0 { fatal("cannot fork: \(errnoText(errno))", mountpoint) }
        if first == 0 {
            if !isInit && fork() != 0 { _exit(0) }
            close(lifetime[1])
            close(ready[0])
            detach(keeping: [lifetime[0], ready[1], opened.file.fd, server.fd], options: options)
            // Before the first thread (unmountWhenClosed's watcher), which umount2s the mount.
            Privileges.dropForServing(keep: [.sysAdmin, .dacReadSearch])
            // Unmounts once this launcher (and with it every process of the app) is gone.
            server.unmountWhenClosed(lifetime[0])
            let readyFD = ready[1]
            _ = server.run(onReady: { signalReady(readyFD) })
            removeMountDirectory(mountpoint)
            _exit(0)
        }
        if !isInit {
            var status: Int32 = 0
            waitpid(first, &status, 0)
        }
        close(lifetime[0])
        close(ready[1])
        close(server.fd)
        guard waitForReady(ready[0]) else { fatal("the server exited before the mount was ready", mountpoint) }
        close(ready[0])
        StartCheck.warn(check?(), opened: opened)
        // lifetime[1] stays open (close-on-exec) until this process exits; as PID 1 it is closed
        // once the app's processes are gone, and the server (a child then) unmounts and exits.
        let writeEnd = lifetime[1]
        let cleanup = Supervisor.InitCleanup(end: { close(writeEnd) }, server: isInit ? first : nil)
        startApp(layout, opened: opened, mountpoint: mountpoint, supervise: true, waitForAll: true, asInit: cleanup)
    }

    private func fatal(_ message: String, _ mountpoint: String) -> Never {
        _ = umount2(mountpoint, Int32(MNT_DETACH))
        removeMountDirectory(mountpoint)
        writeAll(2, "pyzfs: \(message)\n")
        _exit(Exit.runFailed)
    }

    // MARK: running the app

    private func startApp(_ layout: AppLayout, opened: OpenedArchive, mountpoint: String,
                          supervise: Bool, waitForAll: Bool, asInit: Supervisor.InitCleanup) -> Never {
        setenv("PYZFS_ARCHIVE", opened.path, 1)
        setenv("PYZFS_MOUNT", mountpoint, 1)
        let venv: String?
        do { venv = try layout.writeVenv(beside: mountpoint) } catch { fatal(error.message, mountpoint) }
        let argv = layout.command(root: mountpoint, venv: venv)
        if supervise { Supervisor.run(argv, waitForAll: waitForAll, asInit: asInit) }
        execute(argv)
    }

    private func runExtracted(_ opened: OpenedArchive, layout: AppLayout) throws(Failure) -> Never {
        let directory = try ExtractionCache.prepare(opened)
        setenv("PYZFS_ARCHIVE", opened.path, 1)
        setenv("PYZFS_MOUNT", directory, 1)
        let argv = layout.command(root: directory)
        if getpid() == 1 { Supervisor.run(argv, waitForAll: false) }
        execute(argv)
    }

    // MARK: helpers

    /// Leaves the caller's terminal, session and descriptors; logs to syslog or -o log=FILE, and
    /// its warnings to the caller's stderr too, which the server holds no longer than the app's
    /// mount lives (containers rarely have syslog).
    private func detach(keeping: Set<Int32>, options: MountOptions) {
        let callerError = fcntl(2, F_DUPFD_CLOEXEC, 3)
        detachFromCaller(keeping: keeping.union([callerError]), logFD: openLogFile(options))
        if callerError >= 0 { LogSink.shared.copyWarnings(to: callerError) }
    }

    /// A new directory for the mount point in the first usable scratch place; with `name`
    /// (`AppLayout.mountDirectoryName`), that name, alone in a new directory.
    private func makeMountDirectory(named name: String? = nil) throws(MountFailure) -> String {
        let places = scratchPlaces()
        for base in places where isWritableDirectory(base) {
            var template = Array("\(base)/pyzfs-run-XXXXXX".utf8CString)
            guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { continue }
            let directory = string(fromCString: p)
            guard let name else { return directory }
            if mkdir(directory + "/" + name, 0o700) == 0 { return directory + "/" + name }
            rmdir(directory)
        }
        throw .noScratch(places)
    }
}

/// Removes a mount directory `makeMountDirectory` made, and the directory of its own that a
/// named one sits in, with the venv beside it (`AppLayout.writeVenv`).
func removeMountDirectory(_ path: String) {
    rmdir(path)
    let parts = path.split(separator: "/")
    if parts.count > 1, parts[parts.count - 2].hasPrefix("pyzfs-run-"), !parts[parts.count - 1].hasPrefix("pyzfs-run-") {
        let parent = "/" + parts.dropLast().joined(separator: "/")
        _ = ExtractionCache.removeTree(parent + "/" + AppVenv.directoryName)
        rmdir(parent)
    }
}

/// Where `pyzfs run` may make its mount directory: `$TMPDIR`, `$XDG_RUNTIME_DIR`, then /tmp
/// (absolute paths only, as the XDG specification asks).
func scratchPlaces() -> [String] {
    var places: [String] = []
    for p in [readEnvironment("TMPDIR"), readEnvironment("XDG_RUNTIME_DIR"), "/tmp"] {
        if let p, p.hasPrefix("/"), !places.contains(p) { places.append(p) }
    }
    return places
}

/// A directory this process may create entries in, on a file system mounted read-write.
func isWritableDirectory(_ path: String) -> Bool {
    var fs = statvfs()
    return access(path, W_OK | X_OK) == 0 && statvfs(path, &fs) == 0 && fs.f_flag & UInt(ST_RDONLY) == 0
}

/// The interpreter command line of an app.
struct Interpreter {
    let path: String
    let leadingArguments: [String]

    /// `--python`, else the archive's #! line (a name found on PATH, or a path).
    /// - Throws: 127 when none is found, 126 when it is not executable.
    static func resolve(python: String?, opened: OpenedArchive) throws(Failure) -> Interpreter {
        var program: String
        var leading: [String] = []
        if let python {
            program = python
        } else if let words = Zipapp.interpreterLine(of: opened.file, index: opened.index),
                  let parsed = Zipapp.interpreter(fromLine: words) {
            program = parsed.program
            leading = parsed.arguments
        } else {
            program = "python3"
            log.info("\(opened.path) has no #! line; running it with python3")
        }
        guard let path = findExecutable(program) else {
            throw Failure(Exit.notFound, "no interpreter found: \(program) (from \(python == nil ? "the archive's #! line" : "--python")); install it or pass --python PATH")
        }
        guard access(path, X_OK) == 0 else {
            throw Failure(Exit.cannotExecute, "the interpreter \(path) cannot be executed: \(errnoText(errno))")
        }
        return Interpreter(path: path, leadingArguments: leading)
    }
}

/// Replaces this process with `argv`; on failure exits 126 or 127 as env(1) does.
func execute(_ argv: [String]) -> Never {
    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    execv(argv[0], &cArgs)
    let e = errno
    writeAll(2, "pyzfs: cannot execute \(argv[0]): \(errnoText(e))\n")
    _exit(e == ENOENT ? Exit.notFound : Exit.cannotExecute)
}
