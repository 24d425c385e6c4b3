import ArgumentParser
import PyzfsApps
import PyzfsCore
import PyzfsRun
#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a zipapp from its own mount, for container entrypoints.",
        discussion: """
        Mounts ARCHIVE, runs the interpreter its #! line names (or --python) on the mount with \
        ARGS, in the current directory, with this terminal, and returns the app's exit status \
        exactly (a death by signal as that signal). The mount lives as long as the app and every \
        process it started (subprocesses and daemons included), then goes, with its directory.

        As with python3 ARCHIVE ARGS, pyzfs's own options come before ARCHIVE and everything \
        after it goes to the app unchanged, words that look like pyzfs options (-o, --help) \
        included: 'pyzfs run app.pyz --port 1'. One -- right after ARCHIVE is dropped, so \
        'pyzfs run app.pyz -- --port 1' means the same, and 'pyzfs run app.pyz -- -- x' gives \
        the app '-- x'.

        By default the mount is made in a private mount namespace (as root, or in a user \
        namespace), invisible to other processes and gone when the last process of the app \
        exits; its mounts are private, so nothing propagates to the host even where / is \
        shared. --no-namespace mounts in the caller's namespace (for apps that run setuid tools \
        such as sudo); pyzfs then stays as the app's parent and returns once the app and all its \
        processes have exited.

        Warm servers: once the app and its processes have exited the mount is kept for \
        --keep (default 5m, or $PYZFS_KEEP), and a later run of the same archive by the same \
        user with the same options uses that same mount, so the kernel's caches and the \
        bytecode Python compiled carry over: a later start costs what a start from an \
        installed tree does. The mount is in the caller's namespace under /run/pyzfs (root) or \
        $XDG_RUNTIME_DIR/pyzfs, a directory only that user may enter (each app still runs in \
        a private namespace of its own); a changed or replaced archive gets a new server. \
        Nothing is kept with --keep=0, as PID 1, with -o allow_other, for a --venv pex, or for \
        a user without XDG_RUNTIME_DIR. 'pyzfs list' shows warm servers (mode ...,warm); \
        'pyzfs unmount --warm' ends them.

        As PID 1 (a container) pyzfs acts as a minimal init, as tini does: it forwards SIGTERM, \
        SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the app, reaps orphans, and exits with \
        the app's status. The server ignores SIGTERM, SIGINT and SIGHUP: it ends with the app.

        The app finds its archive and mount in PYZFS_ARCHIVE and PYZFS_MOUNT.

        Where no FUSE mount can be made (no /dev/fuse, no CAP_SYS_ADMIN, seccomp or AppArmor \
        refusing mount(2)), pyzfs says which and what would fix it; with --fallback=extract (or \
        PYZFS_FALLBACK=extract) it extracts the archive once into a content-addressed cache \
        ($XDG_CACHE_HOME/pyzfs, else $XDG_RUNTIME_DIR/pyzfs, else /tmp/pyzfs-UID; see \
        'pyzfs cache') and runs it from there.

        Exit codes: the app's own; 125 pyzfs failed (one line on stderr says why); 126 the \
        interpreter cannot be executed; 127 no interpreter found.

        Example: ENTRYPOINT ["pyzfs", "run", "/app/app.pyz", "--"] (the -- keeps a first \
        -- of docker run's arguments for the app).
        """)

    @Option(help: ArgumentHelp("The interpreter to run the app with (default: the archive's #! line).", valueName: "path"))
    var python: String?

    @Flag(name: .customLong("no-namespace"), help: "Mount in the caller's mount namespace.")
    var noNamespace = false

    @Option(help: ArgumentHelp("What to do where FUSE is unavailable: extract (into a cache) or none (fail; the default, or $PYZFS_FALLBACK).", valueName: "mode"))
    var fallback: String?

    @Option(help: ArgumentHelp("How long to keep the mount for later runs once the app has exited: seconds, or with s, m or h (default 5m, or $PYZFS_KEEP; 0: keep nothing).", valueName: "duration"))
    var keep: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options, as for pyzfs mount.", valueName: "options"))
    var options: [String] = []

    @Argument(help: "The zipapp to run (pyzfs's options go before it).")
    var archive: String

    // Everything after ARCHIVE, options included, as python3 ARCHIVE ARGS passes them.
    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("Arguments for the app: everything after ARCHIVE, unchanged (one -- right after ARCHIVE is dropped).", valueName: "args"))
    var arguments: [String] = []

    /// The options that take the next word as their value.
    static let valueOptions: Set<String> = ["--python", "--fallback", "--keep", "-o"]

    func run() throws {
        let fallbackMode = fallback ?? readEnvironment("PYZFS_FALLBACK") ?? "none"
        guard fallbackMode == "extract" || fallbackMode == "none" else {
            throw Failure(Exit.runFailed, "unknown --fallback '\(fallbackMode)': use extract or none")
        }
        let keepText = keep ?? readEnvironment("PYZFS_KEEP")
        guard let keepSeconds = keepText.map(WarmServers.parseKeep) ?? WarmServers.defaultKeep else {
            throw Failure(Exit.runFailed, "bad keep time '\(keepText ?? "")'\(keep == nil ? " in PYZFS_KEEP" : ""): use seconds or a number with s, m or h (90, 90s, 10m, 1h; 0 keeps nothing)")
        }
        let launcher = Launcher(archive: archive, python: python, useNamespace: !noNamespace,
                                fallbackToExtract: fallbackMode == "extract", optionGroups: options,
                                arguments: arguments.first == "--" ? Array(arguments.dropFirst()) : arguments, keep: keepSeconds)
        launcher.launch()
    }
}
