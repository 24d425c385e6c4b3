// Linux and glibc calls that Swift's Glibc module does not export: GNU extensions (they need
// _GNU_SOURCE, which this file alone defines) and variadic functions.
#define _GNU_SOURCE 1
#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clinux.h"

/// unshare(2) of a new mount namespace, with a user namespace first when `user` is set.
int pyzfs_unshare_mount_namespace(int user) {
    return unshare(CLONE_NEWNS | (user ? CLONE_NEWUSER : 0));
}

/// Makes every mount of this namespace private, so nothing mounted here propagates out.
int pyzfs_make_mounts_private(void) {
    return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to this process.
int pyzfs_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

/// Sends descriptor `fd` over the Unix socket `socket` (SCM_RIGHTS).
int pyzfs_send_descriptor(int socket, int fd) {
    char byte = 'F';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { struct cmsghdr align; char buffer[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                          .msg_controllen = sizeof control.buffer };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(socket, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

/// Receives a descriptor sent with pyzfs_send_descriptor; -1 on end of file or error.
int pyzfs_receive_descriptor(int socket) {
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { struct cmsghdr align; char buffer[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                          .msg_controllen = sizeof control.buffer };
    ssize_t n;
    do { n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

/// The signal and sender kind of a siginfo_t: si_code <= 0 means sent by a process (kill),
/// > 0 by the kernel (a terminal's Ctrl-C, a child's exit).
int pyzfs_siginfo_from_process(const siginfo_t *info) { return info->si_code <= 0; }

/// Drops what a root FUSE server does not need once its mount is made; keeps the capabilities
/// in `keep` (bit N is CAP_N) in the permitted and effective sets.
int pyzfs_drop_privileges(uint64_t keep) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    // Ambient capabilities (kernel 4.3+) would survive an execve: none.
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    // The bounding set, all of it (needs CAP_SETPCAP, so before capset drops that); EINVAL
    // marks the first number past the kernel's last capability.
    for (int cap = 0; cap < 64; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL) break;
            return -1;
        }
    }
    // capget/capset through syscall(2): glibc declares neither (libcap's header does).
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        uint32_t k = (uint32_t)(keep >> (32 * i));
        data[i].permitted &= k;
        data[i].effective &= k;
        data[i].inheritable = 0;
    }
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -1;
}

int pyzfs_syncfs(int fd) { return syncfs(fd); }

int pyzfs_is_noexec(const char *path) {
    struct statvfs fs;
    if (statvfs(path, &fs) != 0) return -1;
    return (fs.f_flag & ST_NOEXEC) != 0;
}

int pyzfs_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

long pyzfs_peer_uid(int socket) {
    struct ucred cred;
    socklen_t length = sizeof cred;
    if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) return -1;
    return (long)cred.uid;
}

int pyzfs_is_live_fuse(const char *path) {
    struct statfs fs;
    return statfs(path, &fs) == 0 && fs.f_type == 0x65735546;  // FUSE_SUPER_MAGIC
}

int pyzfs_termination_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC);
}

static void pyzfs_ignore_signal(int signal) { (void)signal; }

int pyzfs_flock_within(int fd, int milliseconds) {
    if (milliseconds <= 0) {
        int r;
        while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {}
        return r;
    }
    // A timer aimed at this thread alone (SIGEV_THREAD_ID) interrupts the blocking flock with
    // EINTR: no polling, and other threads' signals are untouched.
    struct sigaction quiet, old;
    memset(&quiet, 0, sizeof quiet);
    quiet.sa_handler = pyzfs_ignore_signal;  // no SA_RESTART: flock returns EINTR
    sigemptyset(&quiet.sa_mask);
    if (sigaction(SIGALRM, &quiet, &old) != 0) return -1;
    sigset_t alarm, mask;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &alarm, &mask);
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGALRM;
    event._sigev_un._tid = gettid();
    timer_t timer;
    int result = -1, saved = 0;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) == 0) {
        struct itimerspec when;
        memset(&when, 0, sizeof when);
        when.it_value.tv_sec = milliseconds / 1000;
        when.it_value.tv_nsec = (long)(milliseconds % 1000) * 1000000L;
        // Re-armed every 10 ms after the first expiry: an alarm that fired just before flock
        // blocked would otherwise be lost and the wait unbounded.
        when.it_interval.tv_nsec = 10000000L;
        if (timer_settime(timer, 0, &when, NULL) == 0) {
            struct timespec start, now;
            clock_gettime(CLOCK_MONOTONIC, &start);
            while ((result = flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                long elapsed = (now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
                if (elapsed >= milliseconds) { errno = ETIMEDOUT; break; }
            }
        }
        saved = errno;
        timer_delete(timer);
    } else {
        saved = errno;
    }
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    sigaction(SIGALRM, &old, NULL);
    errno = saved;
    return result;
}
