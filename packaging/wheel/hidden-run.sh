#!/bin/sh
# Run by wheel-test.sh inside `unshare --mount --propagation private` (these mounts vanish with
# the namespace): hides /opt/swift and /usr/include under empty tmpfs mounts and binds /dev/null
# over every lib<NAME>.so* and lib<NAME>.a of the libraries the wheel claims not to need, then
# mounts APP with BIN, runs it with python3, compares its output with EXPECTED, runs it again
# through `BIN run`, and unmounts (in a trap, so that no server is left holding the namespace).
#
# usage: hidden-run.sh BIN APP MOUNTPOINT "LIB NAMES" EXPECTED
set -eu
BIN=$1; APP=$2; MNT=$3; LIBS=$4; EXPECTED=$5
mkdir -p "$MNT"
cleanup() {
    if grep -q " $MNT fuse.pyzfs " /proc/mounts; then "$BIN" unmount "$MNT" || umount -l "$MNT"; fi
}
trap cleanup EXIT INT TERM

for dir in /opt/swift /usr/include; do
    if [ -d "$dir" ]; then mount -t tmpfs -o ro,size=4k none "$dir"; echo "hidden: $dir"; fi
done
hidden=0
for name in $LIBS; do
    for f in /lib/x86_64-linux-gnu/lib"$name".so* /usr/lib/x86_64-linux-gnu/lib"$name".so* \
        /lib/x86_64-linux-gnu/lib"$name".a /usr/lib/x86_64-linux-gnu/lib"$name".a; do
        [ -e "$f" ] || continue
        real=$(realpath "$f")
        if ! grep -q " $real " /proc/self/mountinfo; then mount --bind /dev/null "$real"; hidden=$((hidden + 1)); fi
    done
done
echo "hidden: $hidden library files of: $LIBS"
# The hiding works: what the normal build links can no longer be loaded.
for name in $LIBS; do
    for f in /usr/lib/x86_64-linux-gnu/lib"$name".so*; do
        [ -e "$f" ] || continue
        if [ -s "$f" ]; then echo "not hidden: $f" >&2; exit 1; fi
    done
done
if [ -n "$(ls -A /opt/swift 2>/dev/null)" ]; then echo "not hidden: /opt/swift" >&2; exit 1; fi

ldd "$BIN" | sed 's/^/ldd: /'
"$BIN" mount "$APP" "$MNT"
python3 "$MNT" | sed "s|$MNT|MOUNT|" > "$MNT.out"
cat "$MNT.out"
cmp -s "$MNT.out" "$EXPECTED" || { echo "the output from the mount differs from the extracted app's:" >&2; diff "$EXPECTED" "$MNT.out" >&2; exit 1; }
"$BIN" unmount "$MNT"
echo "pyzfs run:"
# PYZFS_KEEP=0: a warm server would outlive this script (and its hidden libraries).
PYZFS_KEEP=0 "$BIN" run "$APP" > "$MNT.run"
cat "$MNT.run"
grep -q '^greet: 2 + 3 = 5' "$MNT.run" || { echo "pyzfs run: unexpected output" >&2; exit 1; }
