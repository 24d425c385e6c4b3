/// The command line that runs `script` with `sh -c` in a private mount namespace (util-linux
/// unshare, private propagation), `arguments` as its `$1`, `$2`...: what the script mounts
/// there (a read-only /tmp, an empty /dev) is no one else's and goes with it. Needs root.
/// - Parameter pidNamespace: also a new PID namespace whose PID 1 is the script's shell; it
///   ends with unshare (`--kill-child`), so whatever the script started dies with the test.
public func inPrivateNamespace(_ script: String, _ arguments: [String] = [], pidNamespace: Bool = false) -> [String] {
    ["unshare", "--mount", "--propagation", "private"] + (pidNamespace ? ["--pid", "--fork", "--kill-child"] : [])
        + ["sh", "-c", script, "sh"] + arguments
}

/// Shell commands that leave this mount namespace without FUSE, as a container without
/// `--device /dev/fuse` is: an empty tmpfs on /dev with only /dev/null.
public let hideFUSE = "mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3"

/// Shell commands that give this mount namespace an empty, read-only /tmp, as `docker run
/// --read-only` does; the test's own files under /tmp are hidden from then on.
public let emptyReadOnlyTmp = "mount -t tmpfs -o mode=1777 none /tmp && mount -o remount,ro /tmp"

/// Shell commands that define `pyzfs_mounts`: how many pyzfs mounts (and pyzfs run's tmpfs
/// mounts) this namespace has that it was not made with. unshare copies every mount of the
/// moment, other tests' running mounts included; those copies are not the script's, and one
/// can vanish meanwhile (an rmdir of its mount point in the host takes it from every
/// namespace), so mounts are told apart by ID and mount point, not counted.
public let countPyzfsMounts = """
pyzfs_list() { grep -e fuse.pyzfs -e pyzfs-run- /proc/self/mountinfo | cut -d' ' -f1,5 | tr ' ' '@'; }
pyzfs_base=" $(pyzfs_list | tr '\\n' ' ') "
pyzfs_mounts() { n=0; for m in $(pyzfs_list); do case "$pyzfs_base" in *" $m "*) ;; *) n=$((n+1));; esac; done; echo $n; }
"""
