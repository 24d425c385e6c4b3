#!/usr/bin/env python3
"""Writes the pyzfs wheel: the `pyzfs` ELF as a script (`NAME-VERSION.data/scripts/pyzfs`, which pip
installs into bin/ with its mode and leaves as it is, since it has no `#!python` line), the man
page as data, and the dist-info. Nothing is importable: the wheel carries a program, not a module.

usage: make_wheel.py --binary PYZFS --version V --tag PLATFORM_TAG --out DIR [--manual PAGE]

Reproducible: every entry has the same date (SOURCE_DATE_EPOCH, else 1980-01-01) and a fixed
order. Only the standard library is used (the wheel format is a zip with a RECORD of hashes).
"""
import argparse
import base64
import hashlib
import os
import sys
import time
import zipfile

DISTRIBUTION = "pyzfs-fuse"  # "pyzfs" on PyPI is an unrelated libzfs_core wrapper
SUMMARY = "Mount Python zipapps with FUSE so the stock interpreter imports their C extensions"


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--tag", required=True, help="platform tag, e.g. linux_x86_64")
    parser.add_argument("--out", required=True)
    parser.add_argument("--manual")
    args = parser.parse_args()

    stem = DISTRIBUTION.replace("-", "_") + "-" + args.version
    dist_info, data = stem + ".dist-info", stem + ".data"
    name = f"{stem}-py3-none-{args.tag}.whl"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    date = max((1980, 1, 1, 0, 0, 0), tuple(time.gmtime(epoch))[:6])

    with open(args.binary, "rb") as f:
        binary = f.read()
    if binary[:4] != b"\x7fELF":
        sys.exit(f"make_wheel.py: {args.binary} is not an ELF file")
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {DISTRIBUTION}\n"
        f"Version: {args.version}\n"
        f"Summary: {SUMMARY}\n"
        "Classifier: Operating System :: POSIX :: Linux\n"
        "Classifier: Topic :: System :: Filesystems\n"
        "\n"
        "Installs the `pyzfs` command (a native program, not a Python module). "
        "Linux x86_64 with glibc only; FUSE 3 (`/dev/fuse`, `fusermount3`) is needed at run time.\n"
    )
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: pyzfs make_wheel.py\n"
        "Root-Is-Purelib: false\n"
        f"Tag: py3-none-{args.tag}\n"
    )
    # (path in the wheel, bytes, Unix mode)
    files = [(f"{data}/scripts/pyzfs", binary, 0o755)]
    if args.manual:
        with open(args.manual, "rb") as f:
            files.append((f"{data}/data/share/man/man1/pyzfs.1", f.read(), 0o644))
    files += [
        (f"{dist_info}/METADATA", metadata.encode(), 0o644),
        (f"{dist_info}/WHEEL", wheel.encode(), 0o644),
    ]
    record = "".join(f"{path},{record_hash(body)},{len(body)}\n" for path, body, _ in files)
    record += f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode(), 0o644))

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, name)
    with zipfile.ZipFile(path + ".part", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for member, body, mode in files:
            info = zipfile.ZipInfo(member, date)
            info.external_attr = (0o100000 | mode) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, body)
    os.replace(path + ".part", path)
    print(path)


if __name__ == "__main__":
    main()
