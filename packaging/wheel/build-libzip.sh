#!/bin/sh
# A static libzip for the wheel's pyzfs (docs/decisions/0006-wheel.md): Debian ships none, so this
# fetches the Debian source package of the libzip-dev installed here (the same source and patches
# as the shared library the normal build links), with apt-get and a private sources list made
# from the system's (deb-src lines need not be configured; nothing under /etc changes), and builds
# libzip.a with CMake. Built with bzip2 and without crypto backends or xz, as pyzfs needs:
# it reads store, deflate and bzip2 and never decrypts (encrypted members are EACCES).
#
# usage: build-libzip.sh WORKDIR CMAKE      (result: WORKDIR/libzip/lib/libzip.a)
# Does nothing when WORKDIR/libzip holds a build of the same source version.
set -eu
WORK=$1
CMAKE=$2
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SRC_PACKAGE=$(dpkg-query -W -f='${source:Package}' libzip-dev)
SRC_VERSION=$(dpkg-query -W -f='${source:Version}' libzip-dev)
STAMP="$WORK/libzip/built-from"
CONFIG="no-crypto no-lzma no-arc4random"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SRC_PACKAGE $SRC_VERSION $CONFIG" ] && [ -f "$WORK/libzip/lib/libzip.a" ]; then
    echo "libzip.a: already built from $SRC_PACKAGE $SRC_VERSION"
    exit 0
fi

APT="$WORK/apt"
rm -rf "$APT" "$WORK/libzip-src" "$WORK/libzip-build" "$WORK/libzip"
mkdir -p "$APT/lists/partial" "$APT/parts" "$APT/cache/archives/partial" "$WORK/libzip-src"
# The system's own mirrors and keys, as deb-src.
if [ -f /etc/apt/sources.list ]; then sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list > "$APT/sources.list"; fi
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" > "$APT/parts/$(basename "$f")"
done
for f in /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" > "$APT/parts/$(basename "$f")"
done
apt() {
    apt-get -q -o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts="$APT/parts" \
        -o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" -o APT::Sandbox::User=root "$@"
}
echo "libzip.a: fetching the Debian source package $SRC_PACKAGE $SRC_VERSION"
apt update > "$APT/update.log" 2>&1 || { cat "$APT/update.log" >&2; exit 1; }
(cd "$WORK/libzip-src" && apt source --only-source "$SRC_PACKAGE=$SRC_VERSION") > "$APT/source.log" 2>&1 ||
    { cat "$APT/source.log" >&2; exit 1; }
TREE=$(find "$WORK/libzip-src" -mindepth 1 -maxdepth 1 -type d | head -n 1)

echo "libzip.a: building $TREE"
# CMAKE_POLICY_VERSION_MINIMUM: libzip 1.7's CMakeLists asks for CMake 3.0, which CMake 4 refuses.
# HAVE_ARC4RANDOM=0: glibc has arc4random only since 2.36, which would raise the wheel's manylinux
# tag past the 2.35 the Swift runtime needs; libzip then reads /dev/urandom (only for writing
# archives, which pyzfs never does).
"$CMAKE" -S "$TREE" -B "$WORK/libzip-build" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DHAVE_ARC4RANDOM=0 \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DENABLE_BZIP2=ON -DENABLE_LZMA=OFF -DENABLE_COMMONCRYPTO=OFF -DENABLE_GNUTLS=OFF \
    -DENABLE_MBEDTLS=OFF -DENABLE_OPENSSL=OFF -DENABLE_WINDOWS_CRYPTO=OFF \
    -DBUILD_TOOLS=OFF -DBUILD_REGRESS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_DOC=OFF \
    -DCMAKE_INSTALL_PREFIX="$WORK/libzip" > "$WORK/libzip-cmake.log" 2>&1 ||
    { cat "$WORK/libzip-cmake.log" >&2; exit 1; }
"$CMAKE" --build "$WORK/libzip-build" -j "$(nproc)" > "$WORK/libzip-build.log" 2>&1 ||
    { cat "$WORK/libzip-build.log" >&2; exit 1; }
"$CMAKE" --install "$WORK/libzip-build" > /dev/null
echo "$SRC_PACKAGE $SRC_VERSION $CONFIG" > "$STAMP"
echo "libzip.a: $WORK/libzip/lib/libzip.a"
