#!/usr/bin/env python3
"""Cold starts of an optimized archive with and without its start profile, in alternating pairs.

usage: python3 Tests/bench/profile_pairs.py [--pairs N] [--pyzfs PATH]

The workload is bench.py's app (numpy + pydantic + orjson from this python3's site-packages,
timestamp pycs), zipped deflated, then `pyzfs optimize` (plain) and `pyzfs optimize --profile`.
Each run: the archive in the page cache, a fresh `pyzfs mount`, one `python3 MOUNT`, timed from
the mount command's start; then the server's CPU seconds (utime + stime of its /proc stat,
read before the unmount), its `pyzfs stats` counters, and the FUSE requests the kernel sent to
that connection during the app's run (tracefs `fuse/fuse_request_send`, filtered on the
connection, in a tracing instance of its own; left out when tracefs cannot be mounted).
Prints the median and IQR of each, and the per-pair ratio. Never leaves a mount behind.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the workload's definition: one app for every benchmark)

WORK = bench.WORK / "profile"
TICKS = os.sysconf("SC_CLK_TCK")


def build(pyzfs: str) -> tuple[Path, Path]:
    plain, profiled = WORK / "app-optimized.pyz", WORK / "app-profiled.pyz"
    if plain.exists() and profiled.exists():
        return plain, profiled
    WORK.mkdir(parents=True, exist_ok=True)
    tree = WORK / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    import importlib.metadata
    for name in bench.DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        for f in dist.files or []:
            if f.parts[0] == ".." or "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            src = Path(dist.locate_file(f))
            if src.is_file():
                (tree / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, tree / f)
    (tree / "benchapp.py").write_text(bench.BENCHAPP)
    (tree / "__main__.py").write_text(bench.MAIN)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "timestamp", str(tree)])
    deflated = WORK / "app-deflated.pyz"
    bench.write_pyz(tree, deflated, zipfile.ZIP_DEFLATED)
    subprocess.run([pyzfs, "optimize", str(deflated), str(plain)], check=True)
    subprocess.run([pyzfs, "optimize", "--profile", str(deflated), str(profiled)], check=True, stdout=subprocess.DEVNULL)
    return plain, profiled


class Tracer:
    """FUSE requests per connection, from a tracefs instance of this process's own."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="pyzfs-tracefs-"))
        self.instance = None
        if subprocess.run(["mount", "-t", "tracefs", "nodev", str(self.root)], capture_output=True).returncode == 0:
            self.instance = self.root / "instances" / f"pyzfs-profile-{os.getpid()}"
            self.instance.mkdir()

    def start(self, mnt: Path):
        if not self.instance:
            return
        st = os.stat(mnt)
        kdev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)   # the kernel's dev_t encoding
        event = self.instance / "events" / "fuse" / "fuse_request_send"
        (event / "filter").write_text(f"connection == {kdev}\n")
        (self.instance / "trace").write_text("")
        (event / "enable").write_text("1\n")

    def stop(self) -> int | None:
        if not self.instance:
            return None
        event = self.instance / "events" / "fuse" / "fuse_request_send"
        (event / "enable").write_text("0\n")
        return sum(1 for line in (self.instance / "trace").read_text().splitlines() if "opcode" in line)

    def close(self):
        if self.instance:
            self.instance.rmdir()
            subprocess.run(["umount", str(self.root)])
        os.rmdir(self.root)


def once(pyzfs: str, archive: Path, mnt: Path, tracer: Tracer) -> dict:
    bench.page_in(archive)
    start = time.perf_counter()
    subprocess.run([pyzfs, "mount", str(archive), str(mnt)], check=True)
    try:
        tracer.start(mnt)
        r = subprocess.run([bench.PYTHON, str(mnt)], capture_output=True, text=True, env=bench.child_env())
        seconds = time.perf_counter() - start
        requests = tracer.stop()
        if bench.APP_MARK not in r.stdout:
            sys.exit(f"the app failed: {r.stdout} {r.stderr}")
        stats = json.loads(subprocess.run([pyzfs, "stats", "--json", str(mnt)], capture_output=True, text=True).stdout)
        fields = open(f"/proc/{stats['pid']}/stat").read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
    finally:
        subprocess.run([pyzfs, "unmount", str(mnt)], check=True)
    return {"seconds": seconds, "cpu": cpu, "requests": requests, "misses": stats["misses"],
            "waits": stats["waits"], "preloaded": stats.get("preloaded", 0)}


def summary(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return "-"
    q = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.4g} (IQR {q[0]:.4g}-{q[2]:.4g})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=15)
    p.add_argument("--pyzfs", default=str(bench.REPO / ".build" / "debug" / "pyzfs"))
    args = p.parse_args()
    plain, profiled = build(args.pyzfs)
    mnt = Path(tempfile.mkdtemp(prefix="pyzfs-profile-mnt-"))
    tracer = Tracer()
    runs = {"without": [], "with": []}
    try:
        for i in range(args.pairs):
            order = [("without", plain), ("with", profiled)]
            if i % 2:
                order.reverse()
            for name, archive in order:
                runs[name].append(once(args.pyzfs, archive, mnt, tracer))
    finally:
        tracer.close()
        os.rmdir(mnt)
    for name, rs in runs.items():
        print(f"{name} profile: " + "; ".join(f"{k} {summary([r[k] for r in rs])}" for k in rs[0]))
    ratios = [w["seconds"] / o["seconds"] for w, o in zip(runs["with"], runs["without"])]
    print(f"per-pair ratio with/without: {summary(ratios)}")


if __name__ == "__main__":
    main()
