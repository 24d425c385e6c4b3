#ifndef PYZFS_CLINUX_H
#define PYZFS_CLINUX_H
// Linux calls that Swift's Glibc module does not export (GNU extensions, variadic prctl), for
// the pyzfs command's launcher and servers. Each can go when Swift's Glibc module exports it.
#include <signal.h>
#include <stdint.h>

/// unshare(2) of a new mount namespace, with a user namespace first when `user` is set.
int pyzfs_unshare_mount_namespace(int user);
/// Makes every mount of this namespace private, so nothing mounted here propagates out.
int pyzfs_make_mounts_private(void);
/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to this process.
int pyzfs_set_child_subreaper(void);
/// Sends descriptor `fd` over the Unix socket `socket` (SCM_RIGHTS); 0 on success.
int pyzfs_send_descriptor(int socket, int fd);
/// Receives a descriptor sent with pyzfs_send_descriptor; -1 on end of file or error.
int pyzfs_receive_descriptor(int socket);
/// Whether a signal was sent by a process (kill: si_code <= 0) rather than the kernel
/// (a terminal's Ctrl-C, a child's exit).
int pyzfs_siginfo_from_process(const siginfo_t *info);
/// What a root FUSE server drops once its mount is made (docs/decisions/0005-privileges.md):
/// sets no_new_privs, empties the ambient and bounding capability sets and the inheritable set,
/// and keeps in the permitted and effective sets only the capabilities whose bits are set in
/// `keep` (bit N is CAP_N). Capabilities and no_new_privs belong to the calling thread: call it
/// before any other thread exists, and threads started later inherit the result.
/// Returns 0, or -1 with errno (nothing is undone: what was dropped stays dropped).
int pyzfs_drop_privileges(uint64_t keep);
/// syncfs(2): writes out the file system holding `fd` (the extraction cache syncs a whole tree
/// with one call instead of an fsync per file).
int pyzfs_syncfs(int fd);
/// Whether the file system holding `path` is mounted noexec (statvfs's ST_NOEXEC): 1, 0, or -1
/// with errno.
int pyzfs_is_noexec(const char *path);
/// pidfd_open(2) of process `pid`: a descriptor that polls readable once the process has exited
/// (a warm server's record of a run attached to it; it stays valid across the run's exec).
int pyzfs_pidfd_open(int pid);
/// The uid of the process at the other end of Unix socket `socket` (SO_PEERCRED); -1 on error.
long pyzfs_peer_uid(int socket);
/// Whether `path` is on a FUSE file system whose server answers (statfs(2) works and says
/// FUSE_SUPER_MAGIC): 1, else 0 (a dead server's mount says ENOTCONN).
int pyzfs_is_live_fuse(const char *path);
/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (threads started later inherit the
/// mask) and returns a signalfd(2) that reads them; -1 on error.
int pyzfs_termination_signalfd(void);
/// flock(2) LOCK_EX of `fd`, waiting at most `milliseconds` (0: tried once, EWOULDBLOCK when
/// held): 0, or -1 with errno (ETIMEDOUT when the wait ran out). Uses SIGALRM in the calling
/// thread for the wait's length.
int pyzfs_flock_within(int fd, int milliseconds);
#endif
