#!/usr/bin/env python3
"""Fills a seed corpus for the pyzfs fuzzer (Tests/Fuzz). Nothing here is committed as a blob.

usage: make_seeds.py OUTDIR [MAX_LEN]        (MAX_LEN: largest seed kept, default 65536)

- the archives of Tests/fixtures/make_archives.py, made by the same functions with payloads
  shrunk so that each fits in MAX_LEN (stored, deflate, bzip2, cat-prefixed, zipapp, no type
  bits, 1980 dates, implicit directories, symlinks, bad CRC, methods, pycs, hostile names, ...);
  "many", "big", "large" and "largebadcrc" are left out (megabytes: too large for a seed), and
  so is any other archive larger than MAX_LEN;
- Zip64 archives as Python's zipfile writes them, made small by lowering its Zip64 limits;
- issue 10's impossible numbers (numbers-*.zip), each of which trapped pyzfs;
- a few hand-made shapes (UTF-8 flag, CP437 names, extended timestamps, bad names, a member
  that is an ELF file, comment, empty archive, encrypted flag);
- small ELF files: the smallest shared objects under /usr/lib and one built with gcc that has a
  $ORIGIN runpath, when gcc is there;
- mountinfo text (this machine's, and lines with escapes and a fuse.pyzfs mount), `-o` option
  strings, a pyc header.
"""
import glob
import io
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
import zlib

sys.dont_write_bytecode = True
warnings.simplefilter("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import make_archives  # noqa: E402  (Tests/fixtures/make_archives.py)

# Megabytes each: too large for a seed. Every other maker of make_archives.py is used.
SKIP = {"many", "big", "large", "largebadcrc"}


def small_payloads():
    """make_archives.payloads(), with the large members cut to a few KiB."""
    rnd = random.Random(1234)
    return {
        "empty.txt": b"",
        "one.txt": b"x",
        "page.bin": rnd.randbytes(512),
        "page-1.bin": rnd.randbytes(511),
        "random.bin": rnd.randbytes(1500),
        "text/lorem.txt": b"lorem ipsum dolor sit amet " * 60,
        "deep/a/b/c/d/e/f.txt": b"deep\n",
        "pkg/__init__.py": b"",
        "pkg/mod.py": b"VALUE = 42\n",
    }


def fixture_seeds(out):
    make_archives.payloads = small_payloads
    with tempfile.TemporaryDirectory() as tmp:
        for name, maker in make_archives.MAKERS.items():
            if name in SKIP:
                continue
            try:
                maker(tmp)
            except Exception as e:  # a fixture that needs something this machine lacks
                print(f"make_seeds: fixture {name} not made: {e}", file=sys.stderr)
        for f in sorted(os.listdir(tmp)):
            path = os.path.join(tmp, f)
            if os.path.isfile(path):
                shutil.copy(path, os.path.join(out, "fixture-" + f))


def zip64_seeds(out):
    """Zip64 extra fields, end record and locator, on a few bytes: zipfile's limits lowered."""
    saved = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    try:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 8, 2
        for compress, tag in [(zipfile.ZIP_STORED, "stored"), (zipfile.ZIP_DEFLATED, "deflate")]:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=compress, allowZip64=True) as z:
                z.writestr(make_archives.info("a.txt", 0o100644, compress=compress), b"zip64 member a\n" * 3)
                z.writestr(make_archives.info("dir/", 0o40755, compress=zipfile.ZIP_STORED), b"")
                z.writestr(make_archives.info("dir/b.py", 0o100644, compress=compress), b"print('b')\n")
            open(os.path.join(out, f"zip64-{tag}.zip"), "wb").write(buf.getvalue())
            # The same with a #! line cat-ed in front (offsets do not count it).
            open(os.path.join(out, f"zip64-{tag}-catprefix.pyz"), "wb").write(make_archives.SHEBANG + buf.getvalue())
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved


def write_zip(path, members, comment=b""):
    with zipfile.ZipFile(path, "w") as z:
        for zi, data in members:
            z.writestr(zi, data)
        z.comment = comment


def shape_seeds(out, elf):
    info = make_archives.info
    # Small archives given as (name, mode, bytes) rows: UTF-8 flagged names; names that are skipped
    # (absolute, dot components, empty components, a backslash), duplicates, a file under a file, a
    # fifo; symlink chains and loops.
    shapes = {
        "names-utf8.zip": [
            ("päckage/ünïcode.py", 0o100644, b"x = 1\n"), ("日本/語.txt", 0o100644, b"ja\n"),
        ],
        "names-bad.zip": [
            ("/etc/passwd", 0o100644, b"abs\n"), ("a/../b.txt", 0o100644, b"dotdot\n"),
            ("./c.txt", 0o100644, b"dot\n"), ("d//e.txt", 0o100644, b"empty\n"),
            ("back\\slash.txt", 0o100644, b"backslash\n"),
            ("dup.txt", 0o100644, b"first\n"), ("dup.txt", 0o100644, b"second\n"),
            ("file", 0o100644, b"file\n"), ("file/inner", 0o100644, b"under a file\n"),
            ("fifo", 0o010644, b"fifo\n"),
        ],
        "symlink-chains.zip": [
            ("d/real.txt", 0o100644, b"real\n"), ("d/l1", 0o120777, b"l2"),
            ("d/l2", 0o120777, b"real.txt"), ("loop", 0o120777, b"loop"),
            ("twice", 0o120777, b"twice/twice"), ("up", 0o120777, b"d/../d/../.."),
            ("d/sub", 0o120777, b"../d"),
        ],
    }
    for archive, rows in shapes.items():
        write_zip(os.path.join(out, archive), [(info(name, mode), data) for name, mode, data in rows])
    # A start profile (.pyzfs-profile, StartProfile) naming members, itself, a directory, nothing,
    # a member twice; stored, so that its lines are in the input the checks also parse as a profile.
    profile = b"pyzfs-profile 1\npkg/b.txt\n.pyzfs-profile\npkg\nnope\npkg/a.py\npkg/b.txt\n"
    write_zip(os.path.join(out, "profile.zip"), [
        (info("pkg/a.py", 0o100644), b"a = 1\n"), (info("pkg/b.txt", 0o100644), b"b\n"),
        (info(".pyzfs-profile", 0o100644, compress=zipfile.ZIP_STORED), profile)])
    # Names zipfile writes unflagged (CP437 on reading).
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(info("cp437-name.txt", 0o100644), b"cp437\n")
    data = bytearray(buf.getvalue())
    for pos in (data.find(b"cp437-name"), data.rfind(b"cp437-name")):
        data[pos + 5] = 0x81  # an unflagged high byte: decoded from CP437
    open(os.path.join(out, "names-cp437.zip"), "wb").write(bytes(data))
    # The extended-timestamp field (0x5455) and a comment.
    zi = info("stamped.txt", 0o100644)
    zi.extra = struct.pack("<HHBl", 0x5455, 5, 1, 1_700_000_000)
    write_zip(os.path.join(out, "extended-time.zip"), [(zi, b"stamped\n")], comment=b"an archive comment")
    # An Info-ZIP Unicode Path field (0x7075), which libzip honours and zipimport ignores.
    zi = info("plain-name.txt", 0o100644)
    zi.extra = struct.pack("<HHBI", 0x7075, 5 + len("ünicode.txt".encode()), 1, zlib.crc32(b"plain-name.txt")) + "ünicode.txt".encode()
    write_zip(os.path.join(out, "unicode-path-field.zip"), [(zi, b"u\n")])
    # An empty archive, and one whose only member claims to be encrypted.
    write_zip(os.path.join(out, "empty.zip"), [])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(info("locked.bin", 0o100644, compress=zipfile.ZIP_STORED), b"not really encrypted\n")
    data = bytearray(buf.getvalue())
    data[6] |= 1
    cd = data.find(b"PK\x01\x02")
    data[cd + 8] |= 1
    open(os.path.join(out, "encrypted-flag.zip"), "wb").write(bytes(data))
    # A wheel-like layout with a native extension whose ELF dependencies name a .libs directory.
    if elf:
        members = [(info("pkg/__init__.py", 0o100644), b"from . import _ext\n"),
                   (info("pkg/_ext.cpython-311-x86_64-linux-gnu.so", 0o100755, compress=zipfile.ZIP_STORED), elf),
                   (info("pkg.libs/libdep.so", 0o100755), b"\x7fELF")]
        write_zip(os.path.join(out, "elf-member.zip"), members)


def elf_seeds(out, max_len):
    """The smallest shared objects under /usr/lib, and one with a $ORIGIN runpath from gcc."""
    found = []
    for pattern in ["/usr/lib/x86_64-linux-gnu/*.so*", "/usr/lib/python3*/lib-dynload/*.so"]:
        for path in glob.glob(pattern):
            if os.path.isfile(path) and not os.path.islink(path):
                size = os.path.getsize(path)
                if 1024 < size <= max_len:
                    with open(path, "rb") as f:
                        if f.read(4) == b"\x7fELF":
                            found.append((size, path))
    found.sort()
    chosen = None
    for size, path in found[:3]:
        shutil.copy(path, os.path.join(out, "elf-" + os.path.basename(path)))
        chosen = chosen or open(path, "rb").read()
    if shutil.which("gcc"):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "ext.c")
            open(src, "w").write("#include <math.h>\ndouble ext(double x) { return sqrt(x); }\n")
            so = os.path.join(tmp, "ext.so")
            r = subprocess.run(["gcc", "-shared", "-fPIC", "-Os", "-s", "-o", so, src, "-lm",
                                "-Wl,-rpath,$ORIGIN/../pkg.libs:$ORIGIN", "-Wl,--enable-new-dtags"],
                               capture_output=True)
            if r.returncode == 0 and os.path.getsize(so) <= max_len:
                shutil.copy(so, os.path.join(out, "elf-runpath.so"))
                chosen = open(so, "rb").read()
    return chosen


def text_seeds(out):
    try:
        mountinfo = open("/proc/self/mountinfo", "rb").read()[:16384]
    except OSError:
        mountinfo = b""
    mountinfo += (b"612 29 0:61 / /mnt/app\\040with\\040space rw,nosuid,nodev,relatime shared:301 - "
                  b"fuse.pyzfs /opt/app.pyz ro,user_id=0,group_id=0,default_permissions,allow_other\n"
                  b"613 29 0:62 / /mnt/odd\\134name ro - fuse.pyzfs /opt/x\\011y.pyz rw\n"
                  b"bad line without the separator\n")
    open(os.path.join(out, "mountinfo.txt"), "wb").write(mountinfo)
    open(os.path.join(out, "options.txt"), "wb").write(
        b"cache_size=256M,uid=1000,gid=1000,umask=022,log=/tmp/pyzfs.log,symlinks=all\n"
        b"allow_other,fsname=app\\,pyz,prefetch=2,threads=4,pycache=memory,pycache_size=1.5G\n"
        b"rw,dev,suid,noexec,defaults,nofail,x-systemd.automount,comment=fstab\n")
    # A timestamp pyc header (PEP 552): magic, flags 0, mtime, size.
    import importlib.util
    open(os.path.join(out, "pyc-header.bin"), "wb").write(
        importlib.util.MAGIC_NUMBER + struct.pack("<III", 0, 1_700_000_001, 123) + b"\xe3" + bytes(15))


def numbers_seeds(out):
    """Issue 10's archive numbers, each of which trapped pyzfs before 32e06b4: a small Zip64
    archive (a stored file, a symlink, a deflated .so) with one number set by make_mutants.py's
    field finder to a Zip64 size of 2^64-1, an offset of 2^63 (of the file; of the symlink), a
    compressed size at deflate's 1032:1 bound, a directory offset of 2^64-1."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
    import make_mutants
    buf = io.BytesIO()
    z = zipfile.ZipFile(buf, "w")
    for name, data, mode, method in [("a.py", b"x=1\n", 0o100644, zipfile.ZIP_STORED), ("l", b"a.py", 0o120777, zipfile.ZIP_STORED),
                                     ("x.so", b"\x7fELF" + bytes(200), 0o100755, zipfile.ZIP_DEFLATED)]:
        with z.open(make_mutants.info(name, mode, method), "w", force_zip64=True) as f:
            f.write(data)
    make_mutants.close_zip64(z)
    data = buf.getvalue()
    fields = {f[0]: f for f in make_mutants.all_fields(data)}
    for tag, field, value in [("size-2to64-1", "central[0].extra[0].uncompressed_size", 2**64 - 1),
                              ("offset-2to63-file", "central[0].extra[0].local_header_offset", 2**63),
                              ("offset-2to63-symlink", "central[1].extra[0].local_header_offset", 2**63),
                              ("deflate-bound", "central[2].extra[0].compressed_size", 2**64 // 1032),
                              ("directory-past-2to64", "zip64-end.directory_offset", 2**64 - 1)]:
        f = fields[field]
        open(os.path.join(out, f"numbers-{tag}.zip"), "wb").write(make_mutants.apply(data, [(f[2], f[3], value)]))


def main():
    out = sys.argv[1]
    max_len = int(sys.argv[2]) if len(sys.argv) > 2 else 65536
    os.makedirs(out, exist_ok=True)
    fixture_seeds(out)
    zip64_seeds(out)
    numbers_seeds(out)
    elf = elf_seeds(out, max_len)
    shape_seeds(out, elf)
    text_seeds(out)
    dropped = []
    for f in sorted(os.listdir(out)):
        path = os.path.join(out, f)
        if os.path.isfile(path) and os.path.getsize(path) > max_len:
            dropped.append(f"{f} ({os.path.getsize(path)} bytes)")
            os.remove(path)
    kept = len(os.listdir(out))
    print(f"make_seeds: {kept} seeds in {out}" + (f"; dropped as larger than {max_len} bytes: {', '.join(dropped)}" if dropped else ""))


if __name__ == "__main__":
    main()
