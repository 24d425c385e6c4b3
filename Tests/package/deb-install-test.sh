#!/bin/sh
# The Debian package installed as a user installs it, without touching this machine:
#   in a private mount (and PID) namespace, an overlay whose lower layers are / and a layer of
#   whiteouts that hides /opt/swift and every file of the -dev packages pyzfs builds against;
#   chroot into it; apt-get install ./pyzfs_*.deb (no network: its dependencies are installed);
#   mount -t fuse.pyzfs a zipapp with a C extension (through the package's /sbin helper), run it
#   with the stock python3, unmount; apt-get purge pyzfs; then every path in the overlay's upper
#   directory must be dpkg's or apt's state (ALLOWED below).
# usage: deb-install-test.sh PYZFS.deb   (root; prints "SKIP: reason" and exits 0 where it cannot run)
# make package-test runs it (docs/packaging.md).
set -eu

# What may be left in the upper directory after install and purge (path prefixes): dpkg's
# database and log, apt's caches, state (lists/auxfiles: where apt keeps a local .deb's index) and
# logs, debconf's cache (dpkg runs debconf for every package) and man-db's index (dpkg's man-db
# trigger rebuilds it when a man page comes or goes). Besides these, only copied-up directories:
# a directory of / whose entries came and went (its mtime changed), with the same owner and mode
# as in /, not opaque, holding nothing else.
ALLOWED="/var/lib/dpkg/ /var/lib/apt/extended_states /var/lib/apt/lists/auxfiles /var/cache/apt/ /var/cache/debconf/ /var/log/apt/ /var/log/dpkg.log /var/cache/man/"
# The -dev packages of the build (the Makefile's PKG_MODULES) whose files the run must not see.
DEV_PACKAGES=${DEV_PACKAGES:-libfuse3-dev libzip-dev libdeflate-dev zlib1g-dev}
PYTHON=/usr/bin/python3

if [ "${1:-}" = --in-namespace ]; then
  # PID 1 of a new PID namespace with private mounts: every process and mount made here ends
  # with it; the trap still unmounts in order.
  shift; dir=$1 deb=$2
  ns=$dir/ns root=$dir/ns/root
  cleanup() {
    mountpoint -q "$root/tmp/app" && umount -l "$root/tmp/app"
    mountpoint -q "$root" && umount -R -l "$root"
    mountpoint -q "$ns" && umount -l "$ns"
    return 0
  }
  trap cleanup EXIT
  mkdir "$ns"
  mount -t tmpfs -o mode=0755 pyzfs-deb-test "$ns"
  mkdir "$ns/upper" "$ns/work" "$root" "$ns/hide"

  # Whiteouts (0/0 character devices) in a layer above / hide what a build needs. Each is made
  # under its directory's real path, so /lib -> usr/lib stays a symlink.
  hide() {
    d=$(realpath -e "$(dirname "$1")") || return 0
    mkdir -p "$ns/hide$d"
    [ -e "$ns/hide$d/$(basename "$1")" ] || mknod "$ns/hide$d/$(basename "$1")" c 0 0
    echo "$d/$(basename "$1")" >> "$ns/hidden"
  }
  hide /opt/swift
  for p in $DEV_PACKAGES; do
    dpkg-query -L "$p" | while read -r f; do
      if [ -L "$f" ] || [ -f "$f" ]; then hide "$f"; fi
    done
  done
  # A pyzfs installed on this machine by make install must not stand in for the package's.
  for f in /usr/local/bin/pyzfs /usr/bin/pyzfs /sbin/mount.fuse.pyzfs /sbin/mount.pyzfs; do
    if [ -e "$f" ] || [ -L "$f" ]; then hide "$f"; fi
  done

  mount -t overlay pyzfs-deb-test -o "lowerdir=$ns/hide:/,upperdir=$ns/upper,workdir=$ns/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  # /tmp and /run as on a booted system (tmpfs): mount(8)'s utab and scratch files stay out of upper.
  mount -t tmpfs tmpfs "$root/tmp"
  mount -t tmpfs tmpfs "$root/run"
  mkdir "$root/tmp/pkg" "$root/tmp/app"
  mount --bind "$dir/pkg" "$root/tmp/pkg"
  cp "$ns/hidden" "$root/tmp/hidden"

  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHON="$PYTHON" DEB="$deb" sh -eu -c '
    fail() { echo "FAIL: $*" >&2; exit 1; }
    # The build-time parts are out of sight.
    while read -r f; do [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is visible"; done < /tmp/hidden
    ! command -v swift >/dev/null || fail "swift is on PATH"
    ! pkg-config --exists libzip fuse3 libdeflate 2>/dev/null || fail "pkg-config finds the -dev packages"
    ! command -v pyzfs >/dev/null || fail "a pyzfs is installed before the package: $(command -v pyzfs)"

    apt-get install -y -q -o Dpkg::Use-Pty=0 "/tmp/pkg/$DEB" > /tmp/apt.log 2>&1 ||
      { cat /tmp/apt.log; fail "apt-get install /tmp/pkg/$DEB"; }
    [ "$(command -v pyzfs)" = /usr/bin/pyzfs ] || fail "pyzfs is not /usr/bin/pyzfs: $(command -v pyzfs)"
    for h in /sbin/mount.fuse.pyzfs /sbin/mount.pyzfs; do
      [ "$(readlink -f "$h")" = /usr/bin/pyzfs ] || fail "$h does not lead to /usr/bin/pyzfs"
    done
    pyzfs --version
    # The binary needs nothing the package does not declare or hide from it.
    if ldd /usr/bin/pyzfs | grep -E "not found|/opt/swift"; then fail "pyzfs links what is not installed"; fi

    # Through mount(8) and the package helper: without it, mount.fuse3 would run pyzfs with
    # dev,suid added, and pyzfs warns about them; with it, nothing is said.
    mount -t fuse.pyzfs /tmp/pkg/app.pyz /tmp/app > /tmp/mount.out 2>&1 ||
      { cat /tmp/mount.out; fail "mount -t fuse.pyzfs"; }
    [ ! -s /tmp/mount.out ] || { cat /tmp/mount.out; fail "mount -t fuse.pyzfs said something (not through /sbin/mount.fuse.pyzfs?)"; }
    [ "$(findmnt -n -o FSTYPE /tmp/app)" = fuse.pyzfs ] || fail "/tmp/app is not a fuse.pyzfs mount"
    out=$("$PYTHON" /tmp/app) || fail "python3 /tmp/app failed: $out"
    echo "$out"
    case "$out" in *"greet: 2 + 3 = 5 (computed by libvend, found through \$ORIGIN)"*) ;;
      *) fail "the C extension did not run from the mount";; esac
    case "$out" in *"extension: /tmp/app/greet/_native."*) ;; *) fail "the extension was not loaded from the mount";; esac
    umount /tmp/app
    ! mountpoint -q /tmp/app || fail "/tmp/app still mounted after umount"

    apt-get purge -y -q -o Dpkg::Use-Pty=0 pyzfs > /tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "apt-get purge pyzfs"; }
    ! dpkg-query -W -f="\${Status}" pyzfs 2>/dev/null | grep -q installed || fail "pyzfs still installed after purge"
    for f in /usr/bin/pyzfs /sbin/mount.fuse.pyzfs /sbin/mount.pyzfs /usr/share/doc/pyzfs; do
      [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f left after purge"
    done
  '
  getfattr_opaque() { "$PYTHON" -c 'import os, sys
try: print(os.getxattr(sys.argv[1], "trusted.overlay.opaque").decode())
except OSError: pass' "$1"; }
  # What the install, the run and the purge left on the root file system.
  left=$(cd "$ns/upper" && find . -mindepth 1 | sed 's|^\.||' | LC_ALL=C sort)
  bad=""
  for p in $left; do
    ok=""
    for a in $ALLOWED; do
      case "$p" in "$a"*|"${a%/}") ok=1;; esac  # an allowed path or something under it
    done
    u=$ns/upper$p
    if [ -z "$ok" ] && [ -d "$u" ] && [ ! -L "$u" ] && [ -d "$p" ] && [ ! -L "$p" ] &&
       [ "$(stat -c %u:%g:%a "$u")" = "$(stat -c %u:%g:%a "$p")" ] &&
       [ -z "$(getfattr_opaque "$u")" ]; then
      ok=1                                      # a copied-up directory (what it holds is checked too)
    fi
    [ -n "$ok" ] || bad="$bad $p"
  done
  if [ -n "$bad" ]; then
    echo "FAIL: the overlay's upper directory holds more than dpkg/apt state:" >&2
    for p in $bad; do echo "  $p" >&2; done
    exit 1
  fi
  echo "upper directory after purge: $(echo "$left" | grep -c .) paths, all copied-up directories or under: $ALLOWED"
  for p in $left; do [ -d "$ns/upper$p" ] || echo "  $p"; done
  exit 0
fi

[ $# -eq 1 ] || { echo "usage: $0 PYZFS.deb" >&2; exit 2; }
skip() { echo "SKIP: Debian package install test: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (mount namespaces, overlayfs, chroot)"
command -v unshare >/dev/null || skip "no unshare (util-linux)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || skip "the kernel has no overlayfs"
grep -qw overlay /proc/filesystems || skip "the kernel has no overlayfs"
[ -c /dev/fuse ] || skip "no /dev/fuse"
unshare --mount --propagation private --net true 2>/dev/null || skip "unshare --mount is refused here"
[ -x "$PYTHON" ] || skip "no $PYTHON (the stock interpreter runs the app)"
command -v mount.fuse3 >/dev/null || skip "no fuse3 package (mount.fuse3)"

deb=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/pyzfs-deb-test-XXXXXX)
trap 'rm -rf --one-file-system "$dir"' EXIT
mkdir "$dir/pkg"
cp "$deb" "$dir/pkg/"
# The zipapp with a C extension and a vendored $ORIGIN library, built before the -dev packages hide.
"$PYTHON" "$here/../fixtures/make_extension_app.py" "$dir/pkg/app.pyz" --python "$PYTHON" > /dev/null
unshare --mount --propagation private --pid --fork --kill-child --net sh "$0" --in-namespace "$dir" "$(basename "$deb")"
echo "PASS: $(basename "$deb") installs, mounts and runs a C extension without the build tools, and purges clean"
