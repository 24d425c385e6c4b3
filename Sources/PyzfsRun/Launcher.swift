import CLinux
import Logging
import PyzfsApps
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
public struct Launcher {
    public let archive: String
    public let python: String?
    public let useNamespace: Bool
    public let fallbackToExtract: Bool
    public let optionGroups: [String]
    public let arguments: [String]
    /// How long the mount is kept for later runs once no run uses it, in seconds; 0 keeps nothing.
    public let keep: Double

    public init(archive: String, python: String?, useNamespace: Bool, fallbackToExtract: Bool, optionGroups: [String],
                arguments: [String], keep: Double = WarmServers.defaultKeep) {
        self.keep = keep
        self.archive = archive
        self.python = python
        self.useNamespace = useNamespace
        self.fallbackToExtract = fallbackToExtract
        self.optionGroups = optionGroups
        self.arguments = arguments
    }

    public func launch() -> Never {
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
        // fusermount3's auto_unmount watchdog would be one more process of the app's to wait
        // for (--no-namespace never returned), and run unmounts by itself in every mode anyway.
        if options.libfuse.contains("auto_unmount") {
            throw Failure(Exit.runFailed, "-o auto_unmount is not for pyzfs run, which always ends its mount with the app; leave it out")
        }
        let opened: OpenedArchive
        do { opened = try openArchive(archive, options: options) } catch { throw Failure(Exit.runFailed, error.message) }
        // The app's command (shiv and pex metadata read and checked) before anything is mounted.
        let layout = try AppLayout(opened, archive: archive, interpreter: try Interpreter.resolve(python: python, opened: opened),
                                   arguments: arguments)
        launchWarm(opened, options: options, layout: layout)
        let check = StartCheck.begin(layout.interpreter, opened: opened)

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
        // Only where FUSE cannot be had: a refusal of what was asked for would run otherwise.
        if fallbackToExtract && reason.meansFUSEUnavailable {
            log.warning("\(reason.explanation); running from an extracted copy instead (--fallback=extract)")
            StartCheck.warn(check?(), opened: opened)
            try runExtracted(opened, layout: layout, pin: options.sha256)
        }
        throw Failure(Exit.runFailed, refusalMessage(opened, reason))
    }

    private func refusalMessage(_ opened: OpenedArchive, _ reason: MountFailure, after: String = "") -> String {
        "cannot mount \(opened.path)\(after): \(reason.explanation); \(reason.fix)"
            + (!fallbackToExtract ? ", or run with --fallback=extract (PYZFS_FALLBACK=extract) to extract it into a cache"
               : reason.meansFUSEUnavailable ? "" : " (--fallback=extract stands in only where FUSE cannot be had)")
    }

    // MARK: namespace mode

    private func launchInNamespace(_ opened: OpenedArchive, options: MountOptions, layout: AppLayout,
                                   check: (() -> InterpreterFacts?)?) throws(MountFailure) {
        // The libfuse options pyzfs mount would use, made into mount(2)'s arguments.
        let request = try KernelMount.request(source: opened.path, options: opened.serverConfiguration(options).libfuseOptions)
        if let refusal = Self.deviceRefusal() { throw refusal }
        let place: MountPlace
        do {
            place = .made(try makeMountDirectory(named: layout.mountDirectoryName))
        } catch .noScratch(let places) {
            // A private tmpfs in the namespace can hold the mount point instead, where it hides
            // nothing: over an empty directory.
            guard let cover = places.first(where: isEmptyDirectory) else { throw .noScratch(places) }
            place = .inNamespace(over: cover, named: layout.mountDirectoryName)
        }
        let made = place.made
        // Where something would fall back, tried in a throwaway child first: a refusal then
        // leaves this process in the caller's namespaces, where the plain mount through
        // fusermount3 and the extract fallback belong. (As root without --fallback=extract
        // nothing would: the trial's millisecond is saved.)
        let trial = fallbackToExtract || geteuid() != 0
        if trial, let refusal = probeNamespaceMount(request, at: place) {
            made?.remove()
            throw refusal
        }
        var channel: [Int32] = [-1, -1]
        var ready: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &channel) == 0,
              makePipe(&ready) else {
            made?.remove()
            throw .failed("cannot create a socket: \(errnoText(errno))")
        }
        // The server: forked twice, so that it is not the app's child, and before unshare(2),
        // so that it stays outside the namespace whose death ends the mount. As PID 1 it would
        // come back to this process anyway: forked once.
        let isInit = getpid() == 1
        let forked = Self.forkServer(twice: !isInit) {
            close(channel[0])
            close(ready[0])
            serveAdopted(opened, options: options, place: place, channel: channel[1], ready: ready[1])
        }
        if forked == nil {
            close(channel[0]); close(channel[1]); close(ready[0]); close(ready[1])
            made?.remove()
            throw .failed("cannot fork: \(errnoText(errno))")
        }
        close(channel[1])
        close(ready[1])
        var mountedOn = made?.path
        func abandon() {
            close(channel[0])  // the server sees end-of-file and exits
            close(ready[0])
            if let mountedOn { _ = umount2(mountedOn, Int32(MNT_DETACH)) }
            made?.remove()
        }
        // A refused unshare(2) changes nothing: the caller's namespace may still take a mount.
        do { try Self.unshareNamespace() } catch { abandon(); throw error }
        // Now in the new namespace: a failure cannot fall back.
        func fatal(_ r: MountFailure) -> Never {
            abandon()
            writeAll(2, "pyzfs: \(refusalMessage(opened, r, after: " in a private namespace\(trial ? " (a trial just worked)" : "")"))\n")
            _exit(Exit.runFailed)
        }
        let fd: Int32, mountpoint: String
        do { (fd, mountpoint) = try Self.mountInNamespace(request, at: place) } catch { fatal(error) }
        mountedOn = mountpoint
        let sent = pyzfs_send_descriptor(channel[0], fd) == 0
        close(fd)
        guard sent, waitForReady(ready[0]) else { fatal(.failed("the server exited before the mount was ready")) }
        close(channel[0])
        close(ready[0])
        StartCheck.warn(check?(), opened: opened)
        // As PID 1 this process's exit kills the server before the namespace's end reaches it:
        // the mount is detached here and its directory removed, nothing waits for the server.
        let cleanup = Supervisor.InitCleanup(end: { _ = umount2(mountpoint, Int32(MNT_DETACH)); made?.remove() }, server: nil)
        startApp(layout, opened: opened, mountpoint: mountpoint, supervise: isInit, waitForAll: false, asInit: cleanup)
    }

    /// /dev/fuse missing or not openable by this process, told before a mount directory is
    /// made: where FUSE cannot be had the scratch place does not matter (a read-only root with
    /// no /dev/fuse lacks both, and the fallback is for that).
    private static func deviceRefusal() -> MountFailure? {
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd >= 0 { close(fd); return nil }
        // As KernelMount.mount would answer.
        return errno == ENOENT ? .noDevice : .deviceDenied(errnoText(errno))
    }

    /// Enters a new mount namespace, in a new user namespace unless root.
    /// - Throws: `.namespaceDenied` when unshare(2) refuses; this process is then unchanged.
    private static func unshareNamespace() throws(MountFailure) {
        if pyzfs_unshare_mount_namespace(geteuid() == 0 ? 0 : 1) != 0 { throw .namespaceDenied(errnoText(errno)) }
    }

    /// In the namespace `unshareNamespace` made: maps this user to itself, makes the mounts
    /// private, makes the mount point if `place` says so, and mounts /dev/fuse as `request`
    /// says. The kernel's owner is who mounts (`uid=`/`gid=` are the files' owner, in the tree).
    /// - Returns: the /dev/fuse descriptor and the mount point.
    private static func mountInNamespace(_ request: KernelMount.Request, at place: MountPlace) throws(MountFailure) -> (Int32, String) {
        try prepareNamespace()
        let mountpoint: String
        switch place {
        case let .made(directory): mountpoint = directory.path
        case let .inNamespace(cover, name): mountpoint = try makeMountDirectory(over: cover, named: name)
        }
        return (try KernelMount.mount(request, on: mountpoint, uid: getuid(), gid: getgid()), mountpoint)
    }

    /// In the namespace `unshareNamespace` made: maps this user to itself and makes the mounts
    /// private.
    private static func prepareNamespace() throws(MountFailure) {
        let uid = getuid(), gid = getgid()
        if geteuid() != 0 {
            _ = writeFile("/proc/self/setgroups", "deny")
            guard writeFile("/proc/self/uid_map", "\(uid) \(uid) 1\n"), writeFile("/proc/self/gid_map", "\(gid) \(gid) 1\n") else {
                throw .namespaceDenied("cannot map this user into it: \(errnoText(errno))")
            }
        }
        // On systemd hosts / is shared: without this the mount would propagate to the host.
        if pyzfs_make_mounts_private() != 0 { throw .namespaceDenied("cannot make its mounts private: \(errnoText(errno))") }
    }

    /// In the private namespace, where no scratch place is writable: mounts a tmpfs over the
    /// empty directory `cover` (with its mode), makes the mount directory in it and makes the
    /// tmpfs read-only. The app then sees `cover` as it was, empty and read-only, but for the
    /// mount directory; the tmpfs goes with the namespace.
    private static func makeMountDirectory(over cover: String, named name: String?) throws(MountFailure) -> String {
        var st = stat()
        guard stat(cover, &st) == 0 else { throw .failed("cannot stat \(cover): \(errnoText(errno))") }
        // Owned by who mounts: the covered directory's owner may not be mapped in a user
        // namespace (root outside), and a tmpfs refuses an unmapped uid=.
        let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        guard Glibc.mount("pyzfs-run", cover, "tmpfs", flags, "mode=\(String(st.st_mode & 0o7777, radix: 8)),size=16k,nr_inodes=8") == 0 else {
            throw .failed("cannot mount a private tmpfs on \(cover) for the mount point: \(errnoText(errno))")
        }
        guard let directory = makeUniqueDirectory(in: cover, prefix: "pyzfs-run"),
              name.map({ mkdir(directory + "/" + $0, 0o700) == 0 }) ?? true else {
            throw .failed("cannot create the mount point in a private tmpfs on \(cover): \(errnoText(errno))")
        }
        guard Glibc.mount(nil, cover, nil, flags | UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil) == 0 else {
            throw .failed("cannot make the private tmpfs on \(cover) read-only: \(errnoText(errno))")
        }
        return name.map { directory + "/" + $0 } ?? directory
    }

    /// `unshareNamespace` and `mountInNamespace` in a child that then exits, its mount going
    /// with its namespace.
    /// - Returns: nil when it worked, else why not.
    private func probeNamespaceMount(_ request: KernelMount.Request, at place: MountPlace) -> MountFailure? {
        var answer: [Int32] = [-1, -1]
        guard makePipe(&answer) else { return .failed("cannot create a pipe: \(errnoText(errno))") }
        let child = fork()
        if child == 0 {
            close(answer[0])
            var result = "ok"
            do {
                try Self.unshareNamespace()
                close(try Self.mountInNamespace(request, at: place).0)
            } catch { result = error.encoded }
            writeAll(answer[1], result)
            _exit(0)
        }
        close(answer[1])
        defer { close(answer[0]) }
        if child < 0 { return .failed("cannot fork: \(errnoText(errno))") }
        let bytes = readAll(answer[0])
        let status = WaitStatus.wait(for: child)
        let text = String(decoding: bytes, as: UTF8.self)
        if text == "ok" { return nil }
        return MountFailure(encoded: text) ?? .failed("the trial of a private namespace \(status.map { "\($0)" } ?? "vanished") without an answer")
    }

    /// The server of a namespace mount: receives the /dev/fuse descriptor and serves it until the
    /// namespace is gone, then removes the mount directory if it made one.
    private func serveAdopted(_ opened: OpenedArchive, options: MountOptions, place: MountPlace,
                              channel: Int32, ready: Int32) -> Never {
        detach(keeping: [channel, ready, opened.file.fd], options: options)
        let fd = pyzfs_receive_descriptor(channel)
        close(channel)
        if fd < 0 { _exit(0) }  // the launcher could not mount; it reports why
        // The same libfuse options as the launcher's mount: the session's own (allow_root)
        // apply; libfuse ignores the mount options for a /dev/fd/N mount point.
        var configuration = opened.serverConfiguration(options)
        configuration.exitOnSignals = false
        let mountpoint = place.description
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
        if let made = place.made {
            made.remove()
            log.info("the app has exited; removed \(made.path)")
        }
        _exit(0)
    }

    // MARK: the caller's namespace

    private func launchWithoutNamespace(_ opened: OpenedArchive, options: MountOptions, layout: AppLayout,
                                        check: (() -> InterpreterFacts?)?) throws(MountFailure) {
        if let refusal = fuseUnavailable() { throw refusal }
        let directory = try makeMountDirectory(named: layout.mountDirectoryName)
        let mountpoint = directory.path
        let server: Server
        do { server = try mountInCallersNamespace(opened, options: options, on: mountpoint) } catch {
            directory.remove()
            throw error
        }
        var lifetime: [Int32] = [-1, -1]
        var ready: [Int32] = [-1, -1]
        guard makePipe(&lifetime), makePipe(&ready) else { fatal("cannot create a pipe: \(errnoText(errno))", directory) }
        let isInit = getpid() == 1
        let forked = Self.forkServer(twice: !isInit) {
            close(lifetime[1])
            close(ready[0])
            detach(keeping: [lifetime[0], ready[1], opened.file.fd, server.fd], options: options)
            // Before the first thread (unmountWhenClosed's watcher), which umount2s the mount.
            Privileges.dropForServing(keep: [.sysAdmin, .dacReadSearch])
            // Unmounts once this launcher (and with it every process of the app) is gone.
            server.unmountWhenClosed(lifetime[0])
            let readyFD = ready[1]
            _ = server.run(onReady: { signalReady(readyFD) })
            directory.remove()
            _exit(0)
        }
        guard let first = forked else { fatal("cannot fork: \(errnoText(errno))", directory) }
        close(lifetime[0])
        close(ready[1])
        close(server.fd)
        guard waitForReady(ready[0]) else { fatal("the server exited before the mount was ready", directory) }
        close(ready[0])
        StartCheck.warn(check?(), opened: opened)
        // lifetime[1] stays open (close-on-exec) until this process exits; as PID 1 it is closed
        // once the app's processes are gone, and the server (a child then) unmounts and exits.
        let writeEnd = lifetime[1]
        let cleanup = Supervisor.InitCleanup(end: { close(writeEnd) }, server: isInit ? first : nil)
        startApp(layout, opened: opened, mountpoint: mountpoint, supervise: true, waitForAll: true, asInit: cleanup)
    }

    /// A session of `pyzfs run`'s server (signals do not end it: the app's end does), mounted
    /// on `mountpoint` in this namespace.
    private func mountInCallersNamespace(_ opened: OpenedArchive, options: MountOptions, on mountpoint: String) throws(MountFailure) -> Server {
        var configuration = opened.serverConfiguration(options)
        configuration.exitOnSignals = false
        let server = try Server(operations: Operations(fs: opened.filesystem, archivePath: opened.path, logger: log),
                                mountpoint: mountpoint, configuration: configuration)
        try server.mount()
        return server
    }

    private func fatal(_ message: String, _ directory: MountDirectory) -> Never {
        _ = umount2(directory.path, Int32(MNT_DETACH))
        directory.remove()
        writeAll(2, "pyzfs: \(message)\n")
        _exit(Exit.runFailed)
    }

    // MARK: warm servers

    /// Runs the app on this archive's warm server (`WarmServers`), started here if none is
    /// alive. Returns, having changed nothing, where none may be kept or started: the caller
    /// then mounts afresh as without warm servers. Nothing is kept as PID 1 (the container's
    /// end would kill the server), with allow_other (others could reach it) or for a `--venv`
    /// pex (each run writes its venv beside the mount).
    ///
    /// The interpreter is part of the key: the extensions' check (`StartCheck`) runs when a
    /// server starts, and a later run of the same interpreter skips it (the check's probe of the
    /// interpreter costs a process start).
    private func launchWarm(_ opened: OpenedArchive, options: MountOptions, layout: AppLayout) {
        // Under a pin, nothing writable outlives a run: the bytecode overlay of a warm mount
        // would take pycs from any process of this user and give them to every later run.
        let sharesWrites = options.sha256 != nil && opened.filesystem.overlay != nil
        guard keep > 0, getpid() != 1, !layout.writesVenv, !options.libfuse.contains("allow_other"), !sharesWrites,
              let dir = WarmServers.directory(),
              let key = WarmServers.key(archive: opened.file.fd, optionGroups: optionGroups, mountDirectoryName: layout.mountDirectoryName,
                                        interpreter: layout.interpreter.path)
        else { return }
        let lockPath = dir + "/" + key + ".lock", socketPath = dir + "/" + key + ".sock"
        let mountpoint: String
        var check: (() -> InterpreterFacts?)? = nil
        do {
            guard let lock = WarmLock(lockPath, waitingAtMost: WarmLock.longestWait) else {
                if errno == ETIMEDOUT {
                    log.warning("another pyzfs run has held \(lockPath) for \(Int(WarmLock.longestWait)) s (fuser -v \(lockPath) names it): running \(opened.path) on a mount of its own")
                }
                return
            }
            switch WarmServers.attach(socketPath) {
            case let .attached(attached):
                mountpoint = attached
            case .failed:
                return
            case .none:
                check = StartCheck.begin(layout.interpreter, opened: opened)
                WarmServers.clearStale(dir: dir, key: key)
                guard let started = startWarmServer(opened, options: options, layout: layout, dir: dir, key: key, lockPath: lockPath,
                                                    socketPath: socketPath) else {
                    unlink(lockPath)  // no server: no lock file left behind (takers check its inode)
                    _ = check?()  // its probe reaped; the fresh mount checks and warns
                    return
                }
                mountpoint = started
            }
            _ = consume lock
        }
        StartCheck.warn(check?(), opened: opened)
        let none = Supervisor.InitCleanup(end: {}, server: nil)
        if useNamespace {
            // As on a fresh mount, the app runs in a private mount namespace; its copy of the
            // warm mount serves it and its processes for as long as they live.
            // A user's namespace is tried in a throwaway child first: where unshare(2) works but
            // the user cannot be mapped into it (an LSM refusing), the app runs supervised in
            // the caller's namespace instead of failing.
            var entered = geteuid() == 0 || Self.namespaceWorks()
            if entered { do { try Self.unshareNamespace() } catch { entered = false } }
            if entered {
                do { try Self.prepareNamespace() } catch {
                    writeAll(2, "pyzfs: cannot run \(opened.path) in a private namespace: \(error.explanation)\n")
                    _exit(Exit.runFailed)
                }
                startApp(layout, opened: opened, mountpoint: mountpoint, supervise: false, waitForAll: false, asInit: none)
            }
        }
        // This process stays attached until the app and every process it started have exited.
        startApp(layout, opened: opened, mountpoint: mountpoint, supervise: true, waitForAll: true, asInit: none)
    }

    /// Whether `unshareNamespace` and `prepareNamespace` work here, tried in a child.
    private static func namespaceWorks() -> Bool {
        let child = fork()
        if child == 0 {
            do {
                try unshareNamespace()
                try prepareNamespace()
            } catch { _exit(1) }
            _exit(0)
        }
        guard child > 0, let status = WaitStatus.wait(for: child) else { return false }
        return status.shellCode == 0
    }

    /// Mounts in the caller's namespace under `dir` and forks the warm server, attached to
    /// this process's run.
    /// - Returns: the mount point once the mount is usable, nil when none could be made (the
    ///   fresh mount that follows says why).
    private func startWarmServer(_ opened: OpenedArchive, options: MountOptions, layout: AppLayout, dir: String, key: String,
                                 lockPath: String, socketPath: String) -> String? {
        // Where this mount would be refused, the fresh mount after says why, once.
        guard fuseUnavailable() == nil, Self.deviceRefusal() == nil, let outer = makeUniqueDirectory(in: dir, prefix: key) else { return nil }
        var made = [outer]
        if let name = layout.mountDirectoryName {
            guard mkdir(outer + "/" + name, 0o700) == 0 else { rmdir(outer); return nil }
            made.insert(outer + "/" + name, at: 0)
        }
        let directory = MountDirectory(made: made)
        let mountpoint = directory.path
        // Held by the server for its life: WarmServers.clearStale leaves the directory of a
        // locked `KEY-XXXXXX.alive` alone.
        let directoryLock = open(outer + WarmServers.aliveSuffix, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard directoryLock >= 0, flock(directoryLock, LOCK_EX | LOCK_NB) == 0 else {
            if directoryLock >= 0 { close(directoryLock) }
            unlink(outer + WarmServers.aliveSuffix)
            directory.remove()
            return nil
        }
        let server: Server
        do { server = try mountInCallersNamespace(opened, options: options, on: mountpoint) } catch {
            log.debug("no warm server for \(opened.path): \(error.explanation)")
            close(directoryLock)
            unlink(outer + WarmServers.aliveSuffix)
            directory.remove()
            return nil
        }
        // The mount belongs to the server process from here: this process never unmounts it
        // through the session (its deinit would).
        _ = Unmanaged.passRetained(server)
        let listener = listenOn(socketPath)
        let pidfd = pyzfs_pidfd_open(getpid())
        let callerError = fcntl(2, F_DUPFD_CLOEXEC, 3)
        var ready: [Int32] = [-1, -1]
        func abandon() -> String? {
            for fd in [listener, pidfd, callerError, directoryLock, ready[0], ready[1], server.fd] where fd >= 0 { close(fd) }
            unlink(outer + WarmServers.aliveSuffix)
            Fusermount.detach(mountpoint)
            if listener >= 0 { unlink(socketPath) }  // bound here, under the key's lock
            directory.remove()
            return nil
        }
        guard listener >= 0, pidfd >= 0, callerError >= 0, makePipe(&ready) else { return abandon() }
        let forked = Self.forkServer(twice: true) {
            close(ready[0])
            detachFromCaller(keeping: [listener, ready[1], opened.file.fd, server.fd, pidfd, callerError, directoryLock],
                             logFD: openLogFile(options))
            // Before the first thread: unmounting at the end needs CAP_SYS_ADMIN as root.
            Privileges.dropForServing(keep: [.sysAdmin, .dacReadSearch])
            // SIGTERM, SIGINT or SIGHUP (systemd stopping a unit, docker stop of a shell's
            // container) end the server once no run is attached: blocked in every thread, read
            // by the keeper. (Server.run then sets SIG_IGN, but Linux queues a blocked signal
            // whatever its action.)
            let signals = pyzfs_termination_signalfd()
            let keeper = WarmKeeper(listener: listener, socketPath: socketPath, lockPath: lockPath, mountpoint: mountpoint, keep: keep,
                                    signals: signals)
            keeper.start(first: (pidfd, callerError))
            let readyFD = ready[1]
            _ = server.run(onReady: { signalReady(readyFD) })
            keeper.finish()
            directory.remove()
            unlink(outer + WarmServers.aliveSuffix)
            log.info("warm server of \(opened.path) ended; removed \(mountpoint)")
            _exit(0)
        }
        if forked == nil { return abandon() }
        for fd in [listener, pidfd, callerError, directoryLock, ready[1], server.fd] { close(fd) }
        let usable = waitForReady(ready[0])
        close(ready[0])
        if !usable {
            Fusermount.detach(mountpoint)
            directory.remove()
            unlink(outer + WarmServers.aliveSuffix)
            return nil
        }
        return mountpoint
    }

    /// Forks a server process that runs `body`: `twice`, so that it is not the app's child (the
    /// middle process exits at once and is reaped here); once as PID 1, where it would come back
    /// to this process anyway. The pid of the process forked (the server only when once); nil
    /// with errno when fork(2) failed.
    private static func forkServer(twice: Bool, _ body: () -> Never) -> pid_t? {
        let first = fork()
        if first < 0 { return nil }
        if first == 0 {
            if twice && fork() != 0 { _exit(0) }
            body()
        }
        if twice {
            var status: Int32 = 0
            waitpid(first, &status, 0)
        }
        return first
    }

    // MARK: running the app

    private func startApp(_ layout: AppLayout, opened: OpenedArchive, mountpoint: String,
                          supervise: Bool, waitForAll: Bool, asInit: Supervisor.InitCleanup) -> Never {
        setenv("PYZFS_ARCHIVE", opened.path, 1)
        setenv("PYZFS_MOUNT", mountpoint, 1)
        let venv: String?
        do { venv = try layout.writeVenv(beside: mountpoint) } catch {
            writeAll(2, "pyzfs: \(error.message)\n")
            // The server ends the mount once this process is gone, but as PID 1 this process's
            // exit kills it first: the mount is ended here then, as Supervisor.run would.
            if getpid() == 1 { asInit.run() }
            _exit(Exit.runFailed)
        }
        let argv = layout.command(root: mountpoint, venv: venv)
        if supervise { Supervisor.run(argv, waitForAll: waitForAll, asInit: asInit) }
        execute(argv)
    }

    private func runExtracted(_ opened: OpenedArchive, layout: AppLayout, pin: String?) throws(Failure) -> Never {
        let directory = try ExtractionCache.prepare(opened, pin: pin)
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
    private func makeMountDirectory(named name: String? = nil) throws(MountFailure) -> MountDirectory {
        let places = scratchPlaces()
        for base in places where isWritableDirectory(base) {
            guard let directory = makeUniqueDirectory(in: base, prefix: "pyzfs-run") else { continue }
            guard let name else { return MountDirectory(made: [directory]) }
            if mkdir(directory + "/" + name, 0o700) == 0 { return MountDirectory(made: [directory + "/" + name, directory]) }
            rmdir(directory)
        }
        throw .noScratch(places)
    }
}

/// The directories `makeMountDirectory` made for one mount point, innermost first: removed
/// exactly, whatever their names look like.
struct MountDirectory: Sendable {
    let made: [String]
    /// The mount point.
    var path: String { made[0] }

    /// Removes the directories made (each only if empty, as rmdir(2) does), and the venv of a
    /// `--venv` pex that `AppLayout.writeVenv` wrote beside a named mount directory.
    func remove() {
        if made.count > 1 { _ = ExtractionCache.removeTree(made[1] + "/" + AppVenv.directoryName) }
        for d in made { rmdir(d) }
    }
}

/// Where a namespace mount's mount point is: a directory made in the caller's namespace (which
/// the server removes), or one to be made in the private namespace, on a tmpfs over `over`.
enum MountPlace: CustomStringConvertible {
    case made(MountDirectory)
    case inNamespace(over: String, named: String?)

    /// The directory made in the caller's namespace, if any.
    var made: MountDirectory? { if case let .made(d) = self { return d } else { return nil } }

    var description: String {
        switch self {
        case let .made(d): return d.path
        case let .inNamespace(cover, _): return "a private tmpfs on \(cover)"
        }
    }
}

/// Where `pyzfs run` may make its mount directory: `$TMPDIR`, `$XDG_RUNTIME_DIR`, then /tmp
/// (absolute paths only, as the XDG specification asks).
func scratchPlaces() -> [String] {
    var places: [String] = []
    for p in [absoluteEnvironment("TMPDIR"), absoluteEnvironment("XDG_RUNTIME_DIR"), "/tmp"] {
        if let p, !places.contains(p) { places.append(p) }
    }
    return places
}

/// A directory this process may create entries in, on a file system mounted read-write.
func isWritableDirectory(_ path: String) -> Bool {
    var fs = statvfs()
    return access(path, W_OK | X_OK) == 0 && statvfs(path, &fs) == 0 && fs.f_flag & UInt(ST_RDONLY) == 0
}
