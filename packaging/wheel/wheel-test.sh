#!/bin/sh
# make wheel-test: installs the wheel three ways (a fresh venv, `pip install --user` with a
# temporary HOME, pipx), all with `pip --no-index`, and checks each installed `pyzfs`: an ELF (not a
# Python shim), `ldd` resolving nothing but glibc, libstdc++, libgcc and zlib; then, in a private
# mount namespace where /opt/swift, /usr/include and each library file the wheel claims not to
# need are hidden (/dev/null or an empty tmpfs bound over them), it mounts a zipapp with a C
# extension with that pyzfs, runs it with python3 and unmounts (also `pyzfs run`).
#
# usage: wheel-test.sh WHEEL TOOLS_VENV "LIB NAMES"    (LIB NAMES: zip fuse3 ... for lib*.so*)
# Skips the hidden runs, saying why, where unshare or FUSE cannot be had; pipx where the tools
# venv has none. pipx upgrades pip in its shared venv first: TOOLS_VENV/wheels holds that pip.
set -eu
WHEEL=$(realpath "$1")
TOOLS=$(realpath "$2")
HIDDEN_LIBS=$3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/pyzfs-wheel-test-XXXXXX)
trap 'rm -rf --one-file-system "$WORK"' EXIT INT TERM
PY=python3
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# Allowed outside the wheel: glibc's libraries and loader, libstdc++, libgcc, zlib.
ALLOWED='linux-vdso.so.1 ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1
libutil.so.1 libstdc++.so.6 libgcc_s.so.1 libz.so.1'

check_binary() { # NAME PATH
    name=$1; bin=$2
    if [ ! -x "$bin" ]; then fail "$name: no executable $bin"; return 1; fi
    if [ "$(head -c 4 "$bin" | od -An -c | tr -d ' ')" != '177ELF' ]; then
        fail "$name: $bin is not an ELF file (first line: $(head -n 1 "$bin" | cut -c 1-60))"; return 1
    fi
    ok "$name: $bin is ELF"
    ldd "$bin" > "$WORK/ldd" 2>&1 || { fail "$name: ldd $bin: $(cat "$WORK/ldd")"; return 1; }
    bad=$(awk '{print $1}' "$WORK/ldd" | while read -r lib; do
        case " $(echo $ALLOWED) " in *" $(basename "$lib") "*) ;; *) echo "$lib" ;; esac
    done)
    if [ -n "$bad" ] || grep -q 'not found' "$WORK/ldd"; then
        fail "$name: ldd finds libraries outside the wheel other than glibc, libstdc++, libgcc, zlib:"; cat "$WORK/ldd"; return 1
    fi
    ok "$name: ldd resolves only $(awk '{print $1}' "$WORK/ldd" | tr '\n' ' ')"
    version=$("$bin" --version)
    ok "$name: $version"
}

# Runs the app from a mount made by BIN, and through `BIN run`, with the hidden files hidden.
hidden_run() { # NAME BIN
    name=$1; bin=$2
    if [ -n "$skip_hidden" ]; then echo "SKIP: $name hidden-library run: $skip_hidden"; return 0; fi
    if unshare --mount --propagation private sh "$ROOT/packaging/wheel/hidden-run.sh" \
        "$bin" "$WORK/greet.pyz" "$WORK/mnt-$name" "$HIDDEN_LIBS" "$WORK/expected" > "$WORK/run.log" 2>&1; then
        sed "s/^/    /" "$WORK/run.log"; ok "$name: the app ran from a mount with the hidden files hidden"
    else
        sed "s/^/    /" "$WORK/run.log"; fail "$name: the hidden-library run failed"
    fi
}

skip_hidden=""
if ! command -v unshare > /dev/null; then skip_hidden="no unshare(1) here"
elif ! unshare --mount --propagation private true 2> "$WORK/unshare.err"; then
    skip_hidden="unshare --mount fails here: $(cat "$WORK/unshare.err")"
elif [ ! -c /dev/fuse ]; then skip_hidden="no /dev/fuse here"
fi

echo "== the app: a zipapp with a C extension and a vendored \$ORIGIN library"
$PY "$ROOT/Tests/fixtures/make_extension_app.py" "$WORK/greet.pyz"
mkdir "$WORK/extracted" && (cd "$WORK/extracted" && $PY -m zipfile -e "$WORK/greet.pyz" .)
$PY "$WORK/extracted" | sed "s|$WORK/extracted|MOUNT|" > "$WORK/expected"

echo "== a fresh venv"
$PY -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --no-index --disable-pip-version-check "$WHEEL"
if check_binary venv "$WORK/venv/bin/pyzfs"; then hidden_run venv "$WORK/venv/bin/pyzfs"; fi

echo "== pip install --user (HOME=$WORK/home)"
mkdir "$WORK/home"
HOME="$WORK/home" PYTHONUSERBASE="$WORK/home/.local" $PY -m pip install -q --user --no-index --root-user-action=ignore \
    --disable-pip-version-check --no-warn-script-location "$WHEEL"
if check_binary user "$WORK/home/.local/bin/pyzfs"; then hidden_run user "$WORK/home/.local/bin/pyzfs"; fi

echo "== pipx"
if [ -x "$TOOLS/bin/pipx" ]; then
    PIPX_HOME="$WORK/pipx" PIPX_BIN_DIR="$WORK/pipx-bin" PIPX_MAN_DIR="$WORK/pipx-man" HOME="$WORK/home" \
        "$TOOLS/bin/pipx" install --quiet --pip-args="--no-index --find-links $TOOLS/wheels" "$WHEEL" > "$WORK/pipx.log" 2>&1 ||
        { cat "$WORK/pipx.log"; fail "pipx install"; }
    if [ -e "$WORK/pipx-bin/pyzfs" ]; then
        ok "pipx: $WORK/pipx-bin/pyzfs -> $(readlink "$WORK/pipx-bin/pyzfs" || echo '(a copy)')"
        if check_binary pipx "$WORK/pipx-bin/pyzfs"; then hidden_run pipx "$WORK/pipx-bin/pyzfs"; fi
    else
        fail "pipx: no $WORK/pipx-bin/pyzfs"
    fi
else
    echo "SKIP: pipx: not in $TOOLS"
fi

if grep -q " $WORK/" /proc/mounts; then fail "a mount under $WORK was left"; fi
if [ "$failures" -ne 0 ]; then echo "wheel-test: $failures failure(s)"; exit 1; fi
echo "wheel-test: passed"
