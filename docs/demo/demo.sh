#!/bin/sh
# make demo: build a zipapp whose C extension needs a vendored library (found through
# $ORIGIN, as in a manylinux wheel), show that python3 cannot run it as a zip, mount it with
# pyzfs, run it with the stock python3 from the mount, and unmount.
set -eu
PYZFS=${1:-pyzfs}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/pyzfs-demo-XXXXXX)
MNT="$WORK/mnt"
cleanup() {
    if grep -q " $MNT " /proc/mounts 2>/dev/null; then "$PYZFS" unmount "$MNT" || umount -l "$MNT"; fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT INT TERM

echo "== building greet.pyz: a C extension + a vendored libvend in greet.libs/"
python3 "$ROOT/Tests/fixtures/make_extension_app.py" "$WORK/greet.pyz"
echo "== python3 greet.pyz (zipimport cannot load .so files):"
python3 "$WORK/greet.pyz" 2>&1 | tail -1 || true
mkdir "$MNT"
echo "== pyzfs mount greet.pyz $MNT"
"$PYZFS" mount "$WORK/greet.pyz" "$MNT"
"$PYZFS" list
echo "== python3 $MNT"
python3 "$MNT"
echo "== $MNT/bin/hello (a script run through its execute bit)"
"$MNT/bin/hello"
echo "== pyzfs unmount $MNT"
"$PYZFS" unmount "$MNT"
if grep -q fuse.pyzfs /proc/mounts; then echo "a pyzfs mount is left" >&2; exit 1; fi
echo "== done: nothing left mounted"
