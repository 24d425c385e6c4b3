import CFuse3
import Logging
import PyzfsCore
#if canImport(Glibc)
import Glibc
#endif

/// How the session reads requests.
public struct ServerConfiguration: Sendable {
    /// libfuse `-o` options (mount options and session options it knows).
    public var libfuseOptions: [String] = []
    /// Log every request (libfuse `-d`).
    public var debug = false
    /// libfuse's multi-threaded loop when true; by default one thread reads every request and
    /// answers those that need not wait, and `workerThreads` answer the others (measured faster:
    /// no thread hand-off for the many small requests of an import).
    public var multithreaded = false
    /// Threads answering requests that wait for a decompression or the disk.
    public var workerThreads = max(2, WorkerPool.processors)
    /// Threads decompressing shared libraries ahead of their reads: one core is left to the
    /// app, which is mostly single-threaded while it starts.
    public var prefetchThreads = max(1, WorkerPool.processors - 1)
    /// Ask the kernel for open-less files and directories when it offers them.
    public var zeroMessageOpens = false
    /// SIGINT, SIGTERM and SIGHUP end the loop and unmount (pyzfs mount). When false (the server
    /// of pyzfs run) they are ignored: the server ends when the app's mount namespace does, so
    /// a signal cannot pull files from under a running app.
    public var exitOnSignals = true
    public init() {}
}

/// Things libfuse itself logged, kept so that a failed mount can say why.
final class LibfuseLog: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    static let shared = LibfuseLog()
    private let lock = ConditionLock()
    private var lines: [String] = []
    private var logger: Logger? = nil

    func attach(_ logger: Logger) { lock.withLock { self.logger = logger } }

    func record(level: UInt32, _ text: String) {
        let logger = lock.withLock { () -> Logger? in
            lines.append(text)
            if lines.count > 20 { lines.removeFirst() }
            return self.logger
        }
        // FUSE_LOG_ERR = 3, FUSE_LOG_WARNING = 4.
        if level <= 4 { logger?.warning("libfuse: \(text)") } else { logger?.debug("libfuse: \(text)") }
    }

    /// The last message, without libfuse's "fuse: " prefix.
    func last() -> String? {
        lock.withLock { lines.last.map { $0.hasPrefix("fuse: ") ? String($0.dropFirst(6)) : $0 } }
    }
}

/// What a request's userdata points to.
final class SessionContext: @unchecked Sendable {
    // @unchecked: `onReady` is called once from libfuse's init, before any other request.
    let operations: Operations
    let configuration: ServerConfiguration
    var onReady: (@Sendable () -> Void)?

    init(operations: Operations, configuration: ServerConfiguration) {
        self.operations = operations
        self.configuration = configuration
    }

    func initialize(_ conn: UnsafeMutablePointer<fuse_conn_info>) {
        let capable = conn.pointee.capable
        var want = conn.pointee.want
        // The tree never changes: nothing to re-validate against mtime.
        want &= ~UInt32(FUSE_CAP_AUTO_INVAL_DATA)
        // Every chunk of a listing as readdirplus, not only the first (libfuse's default "auto"):
        // a plain chunk leaves its names without dentries, and each costs a LOOKUP round trip
        // when Python then stats it (about 45 us across CPUs on this machine kind).
        want &= ~UInt32(FUSE_CAP_READDIRPLUS_AUTO)
        for cap in [FUSE_CAP_CACHE_SYMLINKS, FUSE_CAP_READDIRPLUS, FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_ASYNC_READ]
            where capable & UInt32(cap) != 0 {
            want |= UInt32(cap)
        }
        // Zero-message opens need a read-only kernel mount: the kernel then refuses write intent
        // itself, since no open reaches the server to be refused.
        if configuration.zeroMessageOpens
            && capable & UInt32(FUSE_CAP_NO_OPEN_SUPPORT) != 0 && capable & UInt32(FUSE_CAP_NO_OPENDIR_SUPPORT) != 0 {
            operations.zeroMessageOpens.store(true, ordering: .relaxed)
        }
        conn.pointee.want = want
        // libfuse fails INIT (EPROTO, a dead mount) unless init() repeats -o max_read=.
        for o in configuration.libfuseOptions where o.hasPrefix("max_read=") {
            if let n = UInt32(o.dropFirst(9)) { conn.pointee.max_read = n }
        }
        onReady?()
        onReady = nil
    }
}

/// A libfuse low-level session serving `Operations` on a mount point.
public final class Server {
    let context: SessionContext
    let session: OpaquePointer
    public let mountpoint: String
    private var mounted = false
    /// The /dev/fuse descriptor came from elsewhere (another process mounted): nothing to unmount.
    private var adopted = false

    /// Creates the session (nothing is mounted yet).
    /// - Throws: `.badOptions` when libfuse rejects an option.
    public init(operations: Operations, mountpoint: String, configuration: ServerConfiguration) throws(MountFailure) {
        LibfuseLog.shared.attach(operations.logger)
        fuse_set_log_func(libfuseLogFunction)
        context = SessionContext(operations: operations, configuration: configuration)
        self.mountpoint = mountpoint
        var argv = ["pyzfs"]
        if !configuration.libfuseOptions.isEmpty {
            argv += ["-o", configuration.libfuseOptions.joined(separator: ",")]
        }
        if configuration.debug { argv.append("-d") }
        var cStrings = argv.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var args = fuse_args(argc: Int32(cStrings.count), argv: nil, allocated: 0)
        var ops = makeOperations()
        let userdata = Unmanaged.passUnretained(context).toOpaque()
        let created = cStrings.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
            args.argv = buffer.baseAddress
            let se = pyzfs_fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
            fuse_opt_free_args(&args)
            return se
        }
        guard let created else {
            throw .badOptions(LibfuseLog.shared.last() ?? configuration.libfuseOptions.joined(separator: ","))
        }
        session = created
    }

    deinit {
        if mounted && !adopted { fuse_session_unmount(session) }
        fuse_session_destroy(session)
    }

    /// Mounts. The kernel queues requests until `run` answers its INIT.
    /// - Throws: what libfuse's reason says.
    public func mount() throws(MountFailure) {
        guard fuse_session_mount(session, mountpoint) == 0 else {
            throw MountFailure.libfuse(LibfuseLog.shared.last() ?? "mount failed")
        }
        mounted = true
    }

    /// Serves a mount another process made, through its /dev/fuse descriptor `fd` (libfuse
    /// takes `/dev/fd/N` as an open connection). The mount ends when its namespace does.
    public func adopt(descriptor fd: Int32) throws(MountFailure) {
        guard fuse_session_mount(session, "/dev/fd/\(fd)") == 0 else {
            throw .failed(LibfuseLog.shared.last() ?? "cannot use the FUSE descriptor")
        }
        mounted = true
        adopted = true
    }

    /// Serves requests until the mount goes away or SIGINT/SIGTERM/SIGHUP arrives, then unmounts.
    /// - Parameter onReady: called once the kernel's INIT is answered: the mount is usable.
    /// - Returns: 0, or libfuse's error from the loop.
    public func run(onReady: (@Sendable () -> Void)? = nil) -> Int32 {
        context.onReady = onReady
        MemoryLimits.returnLargeAllocationsToTheSystem()
        let configuration = context.configuration
        if !configuration.multithreaded { context.operations.startWorkers(threads: configuration.workerThreads) }
        // A member found corrupt after some of its pages were served: drop them from the page
        // cache, so that later reads reach the server and fail. Sent from another thread: a
        // notification must not be sent from the path of a request it concerns.
        let notifier = WorkerPool(name: "notify", count: 1)
        let sessionAddress = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(session)))
        context.operations.fs.onCorruption = { node in
            notifier.submit {
                let se = OpaquePointer(bitPattern: sessionAddress)
                _ = fuse_lowlevel_notify_inval_inode(se, fuse_ino_t(ArchiveFileSystem.inode(of: node)), 0, 0)
            }
        }
        context.operations.fs.startPrefetching(threads: configuration.prefetchThreads)
        if configuration.exitOnSignals {
            if fuse_set_signal_handlers(session) != 0 { return -1 }
        } else {
            for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { signal(sig, SIG_IGN) }
        }
        let result: Int32
        if context.configuration.multithreaded {
            let config = fuse_loop_cfg_create()
            fuse_loop_cfg_set_clone_fd(config, 1)
            fuse_loop_cfg_set_idle_threads(config, 10)
            result = pyzfs_fuse_session_loop_mt(session, config)
            fuse_loop_cfg_destroy(config)
        } else {
            result = fuse_session_loop(session)
        }
        if configuration.exitOnSignals { fuse_remove_signal_handlers(session) }
        context.operations.fs.onCorruption = nil
        notifier.shutdown()
        if mounted && !adopted {
            fuse_session_unmount(session)
        }
        mounted = false
        return result
    }

    /// Ends the loop once `fd` reads end-of-file (its writers are gone): unmounts lazily from a
    /// watcher thread, which makes the kernel end the connection.
    public func unmountWhenClosed(_ fd: Int32) {
        let target = mountpoint
        let watcher = WorkerPool(name: "lifetime", count: 1)
        watcher.submit {
            var byte: UInt8 = 0
            while Glibc.read(fd, &byte, 1) != 0 && (errno == EINTR || errno == 0) {}
            Fusermount.detach(target)
        }
    }

    /// The /dev/fuse descriptor of the session (to keep it out of exec'd children).
    public var fd: Int32 { fuse_session_fd(session) }
}
