#!/bin/sh
# Turns the tree `make install DESTDIR=ROOT PREFIX=/usr` wrote into a Debian binary package, so
# make install stays the one list of files (make deb, docs/packaging.md). It adds only what
# Debian asks of a package on top of it: a stripped binary, compressed man page and changelog,
# the copyright file, md5sums and the control file, whose Depends are computed by
# dpkg-shlibdeps from the libraries the binary really links, plus fuse3 (fusermount3, mount.fuse3).
# usage: build-deb.sh ROOT VERSION OUT.deb
set -eu
[ $# -eq 3 ] || { echo "usage: $0 ROOT VERSION OUT.deb" >&2; exit 2; }
root=$1 version=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
doc=$root/usr/share/doc/pyzfs
binary=$root/usr/bin/pyzfs
man=$root/usr/share/man/man1/pyzfs.1

[ -x "$binary" ] || { echo "build-deb.sh: no $binary (make install-files DESTDIR=$root PREFIX=/usr first)" >&2; exit 1; }
[ -f "$man" ] || { echo "build-deb.sh: no $man (make manual first)" >&2; exit 1; }

# The changelog is written by hand: its newest entry must be this version, or the package
# would describe another release.
logged=$(dpkg-parsechangelog -l "$here/changelog" -S Version)
[ "$logged" = "$version" ] || {
  echo "build-deb.sh: packaging/deb/changelog's newest entry is $logged, not $version: add an entry for $version" >&2
  exit 1
}
maintainer=$(dpkg-parsechangelog -l "$here/changelog" -S Maintainer)

# Depends comes from the libraries the binary links, so each must be a Debian package's: a
# Swift runtime library from the toolchain (a build without --static-swift-stdlib) would be
# missing from Depends and from the machines it is installed on.
runpath=$(readelf -d "$binary" | sed -n 's/.*(R.*PATH).*\[\(.*\)\]/\1/p')
case "$runpath" in ''|'$ORIGIN') ;; *)
  echo "build-deb.sh: $binary searches $runpath for libraries: build it with swift build --static-swift-stdlib" >&2; exit 1;; esac
ldd "$binary" | awk '$2 == "=>" {print $1, $3}' | while read -r name path; do
  dpkg-query -S "$path" >/dev/null 2>&1 || dpkg-query -S "$(realpath "$path" 2>/dev/null)" >/dev/null 2>&1 || {
    echo "build-deb.sh: $binary links $name ($path), which no Debian package installs: build it with swift build --static-swift-stdlib" >&2
    exit 1
  }
done

# As dh_strip does: the symbol table and the .comment and .note sections go (lintian's
# unstripped-binary-or-object); the Swift metadata sections stay.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$binary"
gzip -9nf "$man"
install -d "$doc"
install -m 0644 "$here/copyright" "$doc/copyright"
install -m 0644 "$here/changelog" "$doc/changelog"
gzip -9nf "$doc/changelog"
# make install writes completions through the shell's umask: give every file and directory
# the modes Debian expects (0755 for directories and executables, 0644 for the rest).
chmod -R u=rwX,go=rX "$root"

rm -rf "$root/DEBIAN"
installed_size=$(du -sk --apparent-size "$root" | cut -f1)
# DEBIAN exists before dpkg-shlibdeps runs: it marks the package's root, where $ORIGIN points.
install -d -m 0755 "$root/DEBIAN"

# dpkg-shlibdeps wants a debian/control to read; one with this package's stanza is enough.
work=$(mktemp -d "${TMPDIR:-/tmp}/pyzfs-deb-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/debian"
printf 'Source: pyzfs\n\nPackage: pyzfs\nArchitecture: any\n' > "$work/debian/control"
binary_abs=$(cd "$(dirname "$binary")" && pwd)/pyzfs
shlibs=$(cd "$work" && dpkg-shlibdeps -O -e"$binary_abs" | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb.sh: dpkg-shlibdeps found no libraries in $binary" >&2; exit 1; }

(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort | xargs md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$(dpkg --print-architecture)|" \
    -e "s|@MAINTAINER@|$maintainer|" -e "s|@INSTALLED_SIZE@|$installed_size|" \
    -e "s|@DEPENDS@|$shlibs, fuse3|" "$here/control.in" > "$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control"

# Owned by root whoever builds it, without fakeroot.
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out: Depends: $shlibs, fuse3"
