import ArgumentParser
import PyzfsCore
import PyzfsRun

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
