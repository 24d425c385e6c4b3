#!/usr/bin/env python3
"""Benchmark of pyzfs against an extracted directory and its peers (`make bench`).

It builds a workload once under .build/bench (git-ignored): an app of numpy + pydantic + orjson
copied from this interpreter's site-packages and byte-compiled as pip does, the same tree as a
stored and a deflated .pyz, a gzip squashfs image, a shiv and a pex; a zip of 100,000 entries; a
zip with one 512 MiB deflated member. Then it times the scenarios and prints one markdown table per
scenario: the median seconds and the ratio to a baseline measured in the same run (an extracted
directory; Python's zipfile for the archive scenarios). It measures and never asserts speed.

    python3 Tests/bench/bench.py [--runs N] [--only cold,warm,...] [--tools pyzfs,fuse-zip,...]
                                 [--quick] [--rebuild] [--record] [--pyzfs PATH]

Scenarios: cold warm concurrent many big run optimize run-warm bundled pinned bytecode-env.
Tools: pyzfs fuse-zip mount-zip archivemount squashfuse shiv pex (the baselines always run).
Python 3.11, standard library only. Needs root for FUSE mounts and for apt-get of missing peers.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".build" / "bench"
ARTIFACTS = WORK / "artifacts"      # the workload, built once and reused (--rebuild rebuilds it)
MOUNTS = WORK / "mnt"               # one mount point per tool
SCRATCH = WORK / "scratch"          # captured output, shiv/pex caches; emptied at every start
RECORD_FILE = REPO / "docs" / "benchmarks.md"

PYTHON = os.path.realpath(sys.executable)   # the interpreter itself, not pyenv's shim script
DISTRIBUTIONS = ["numpy", "pydantic", "pydantic_core", "orjson",
                 "typing_extensions", "annotated_types", "typing_inspection"]
SCENARIOS = ["cold", "warm", "concurrent", "many", "big", "run", "optimize",
             "run-warm", "bundled", "pinned", "bytecode-env"]
HEAVY = {"many", "big"}             # left out by --quick unless named in --only
TOOL_NAMES = ["pyzfs", "fuse-zip", "mount-zip", "archivemount", "squashfuse", "shiv", "pex"]

APP_TIMEOUT = 120        # one start of the app (a shiv/pex first run extracts everything)
MOUNT_TIMEOUT = 120      # a mount command plus the wait until it serves
UNMOUNT_TIMEOUT = 30
BUILD_TIMEOUT = 1800     # pip, compileall, mksquashfs, shiv, pex
DD_TIMEOUT = 300         # reading the 512 MiB member once
RANDOM_TIMEOUT = 180     # 1,000 random reads of the 512 MiB member
READY_GRACE = 10         # how long a mounted file system may answer ENOENT for the file awaited

CONCURRENCY = 16
PAIRS = 15               # alternating pairs of a row whose target is within 5 % of 1.0
MANY_ENTRIES = 100_000
BIG_SIZE = 512 << 20
BIG_LINE = "{i:010d} {h:08x} the quick brown fox jumps over the lazy dog, again and again\n"  # ~9x
RANDOM_READS = 1000
RANDOM_SEED = 20240611
APP_MARK = "bench-app ok"

BENCHAPP = '''\
"""The benchmark's app: numpy, pydantic (pydantic_core) and orjson, three C extensions."""
import sys
import sysconfig


def main():
    import numpy as np
    import orjson
    import pydantic

    class Point(pydantic.BaseModel):
        name: str
        x: float
        y: float
        tags: list[str] = []

    points = [Point.model_validate({"name": f"p{i}", "x": i, "y": i / 2, "tags": ["a", "b"]})
              for i in range(100)]
    xy = np.array([[p.x, p.y] for p in points])
    summary = {"n": len(points), "norm": round(float(np.linalg.norm(xy)), 6),
               "mean": [round(float(v), 6) for v in xy.mean(axis=0)], "first": points[0].model_dump()}
    site = sysconfig.get_paths()["purelib"]
    names = ("numpy", "pydantic", "pydantic_core", "orjson", "typing_extensions", "annotated_types",
             "typing_inspection")
    bundled = all(not sys.modules[n].__file__.startswith(site) for n in names if n in sys.modules)
    print(f"bench-app ok numpy={np.__version__} pydantic={pydantic.VERSION} orjson={orjson.__version__} "
          f"bundled={bundled} {orjson.dumps(summary).decode()}")


if __name__ == "__main__":
    main()
'''
MAIN = "import benchapp\n\nbenchapp.main()\n"

ZIPFILE_STREAM = r'''
import sys, time, zipfile
start = time.perf_counter()
n = 0
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:
    while chunk := f.read(1 << 20):
        n += len(chunk)
print(time.perf_counter() - start, n)
'''

RANDOM_READS_SCRIPT = r'''
import os, random, sys, time
path, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
offsets = [rng.randrange(os.stat(path).st_size // 4096) * 4096 for _ in range(count)]
start = time.perf_counter()
fd = os.open(path, os.O_RDONLY)     # timed: some servers decompress the member on open
for offset in offsets:
    if len(os.pread(fd, 4096, offset)) != 4096:
        sys.exit(f"short read at {offset}")
print(time.perf_counter() - start)
'''


def child_env() -> dict:
    """The environment of every command: PYTHONDONTWRITEBYTECODE removed (users don't set it, and
    it would stop python3 from writing pycs where it can), PYZFS_KEEP=0, this interpreter's
    directory first."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # A fresh mount per `pyzfs run` unless a row keeps a warm server (pyzfs_run sets its own).
    env["PYZFS_KEEP"] = "0"
    env["PATH"] = os.path.dirname(PYTHON) + os.pathsep + env.get("PATH", "")
    return env


ENV = child_env()


class BenchError(Exception):
    """A failure of one measurement: recorded in its row, the run goes on."""


class Unavailable(Exception):
    """Something a row needs is missing: the row is skipped with this reason."""


def log(*parts):
    print(*parts, flush=True)


# ---------------------------------------------------------------------------------------------
# Commands

@dataclasses.dataclass
class Result:
    argv: list
    rc: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool = False
    cpu: float | None = None    # user + system seconds of the command and its waited-for children

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def describe(self) -> str:
        name = os.path.basename(self.argv[0]) if self.argv else "command"
        if self.timed_out:
            return f"{name}: timeout after {self.seconds:.0f} s"
        lines = (self.err.strip() or self.out.strip()).splitlines()
        return f"{name}: exit {self.rc}" + (f" ({lines[-1].strip()[:200]})" if lines else "")


def _kill_group(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)     # its own session (start_new_session): only ours
    except ProcessLookupError:
        pass


def _spawn(argv, env, cwd, out, err) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                            cwd=cwd, start_new_session=True)


def _text(f) -> str:
    f.seek(0)
    return f.read().decode(errors="replace")


class _Deadline:
    """Kills the process groups of `procs` when `timeout` passes. Waiting is a blocking waitpid:
    Popen.wait(timeout) polls with sleeps of up to 50 ms, which would quantize every time."""

    def __init__(self, timeout: float):
        self.procs, self.expired = [], False
        self.timer = threading.Timer(timeout, self._expire)
        self.timer.daemon = True

    def _expire(self):
        self.expired = True
        for proc in self.procs:
            if proc.returncode is None:
                _kill_group(proc)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        for proc in self.procs:     # an exception (Ctrl-C) left some running
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()


def run(argv, timeout: float, env: dict | None = None, cwd=None) -> Result:
    """Runs a command with a timeout (then kills its process group). Output goes to files, not
    pipes, so a daemon that keeps an inherited descriptor cannot hold the harness up."""
    argv = [str(a) for a in argv]
    SCRATCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=SCRATCH) as out, tempfile.TemporaryFile(dir=SCRATCH) as err:
        with _Deadline(timeout) as deadline:
            start = time.perf_counter()
            try:
                proc = _spawn(argv, env or ENV, cwd, out, err)
            except OSError as e:
                return Result(argv, 127, "", str(e), 0.0)
            deadline.procs.append(proc)
            _, status, usage = os.wait4(proc.pid, 0)     # its rusage too (what proc.wait() drops)
            seconds = time.perf_counter() - start
            proc.returncode = rc = os.waitstatus_to_exitcode(status)
        return Result(argv, rc, _text(out), _text(err), seconds, deadline.expired,
                      usage.ru_utime + usage.ru_stime)


def run_at_once(argv, count: int, timeout: float, env: dict | None = None) -> tuple[float, list]:
    """Starts `count` copies of a command at once; returns the wall time until all exited."""
    argv = [str(a) for a in argv]
    SCRATCH.mkdir(parents=True, exist_ok=True)
    files = [(tempfile.TemporaryFile(dir=SCRATCH), tempfile.TemporaryFile(dir=SCRATCH))
             for _ in range(count)]
    try:
        with _Deadline(timeout) as deadline:
            start = time.perf_counter()
            for o, e in files:
                deadline.procs.append(_spawn(argv, env or ENV, None, o, e))
            codes = [proc.wait() for proc in deadline.procs]
            seconds = time.perf_counter() - start
        return seconds, [Result(argv, rc, _text(o), _text(e), seconds, deadline.expired)
                         for rc, (o, e) in zip(codes, files)]
    finally:
        for o, e in files:
            o.close()
            e.close()


def check_app(r: Result) -> str | None:
    """Raises when the app did not run; returns a note when it ran with modules from elsewhere."""
    if not r.ok:
        raise BenchError(f"python3: {r.describe()}")
    line = next((l for l in r.out.splitlines() if l.startswith(APP_MARK)), None)
    if line is None:
        raise BenchError("the app printed no result line")
    if "bundled=False" in line:
        return "modules were imported from the machine's site-packages, not the app"
    return None


def compiled_from_source(argv, env: dict | None = None) -> int | None:
    """How many modules one start of the app compiles from source (stale or missing pycs):
    counted from `python3 -v`, __main__.py left out (Python never caches it)."""
    r = run([PYTHON, "-v", *argv], APP_TIMEOUT, env=env)
    if not r.ok:
        return None
    n = 0
    for line in r.err.splitlines():
        m = re.match(r"# code object from '?(.*?)'?$", line)
        if m and m.group(1).endswith(".py") and not m.group(1).endswith("__main__.py"):
            n += 1
    return n


def page_in(path: Path):
    """'Cold' means a fresh mount of an archive that is in the page cache: read it once."""
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


# ---------------------------------------------------------------------------------------------
# Mounts

def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_table() -> list[tuple[str, str, str, str]]:
    """(major:minor, mount point, fs type, source) of every mount of this namespace."""
    rows = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            a, b = left.split(), right.split()
            rows.append((a[2], _unescape(a[4]), b[0], _unescape(b[1]) if len(b) > 1 else ""))
    return rows


def is_mounted(mnt: Path) -> bool:
    return any(point == str(mnt) for _, point, _, _ in mount_table())


def abort_fuse_connection(mnt: Path):
    """Ends the FUSE connection of a mount whose server hangs, so nothing waits on it forever."""
    for dev, point, fstype, _ in mount_table():
        if point == str(mnt) and fstype.startswith("fuse") and dev.startswith("0:"):
            with contextlib.suppress(OSError):
                Path(f"/sys/fs/fuse/connections/{dev[2:]}/abort").write_text("1")


def server_pid(command: str, mnt: Path) -> int | None:
    """The pid of the FUSE server serving mnt: its comm is the tool's and mnt is in its argv."""
    comm, want = os.path.basename(command)[:15], os.fsencode(str(mnt))
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != comm:
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if want in argv and ppid != os.getpid():
            return int(entry)
    return None


def alive(pid: int) -> bool:
    """Whether a process still runs: a zombie has exited (a daemon's parent is init, which may
    take a while to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def vm_hwm(pid: int | None) -> int | None:
    """Peak resident set of a process in bytes (VmHWM)."""
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _call_with_timeout(fn: Callable, timeout: float):
    """Calls fn in a daemon thread: a stat through a hung FUSE server cannot hang the harness."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise BenchError(f"timeout: the file system did not answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def wait_ready(mnt: Path, relative: str, deadline: float):
    """Polls until mnt is a mount point and mnt/relative can be stat'ed through it."""
    target, mounted_since = mnt / relative, None
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise BenchError(f"timeout: {relative} not visible after {MOUNT_TIMEOUT} s")
        try:
            if _call_with_timeout(lambda: os.path.ismount(mnt) and os.stat(target), remaining):
                return
        except FileNotFoundError:
            mounted_since = mounted_since or time.perf_counter()
            if time.perf_counter() - mounted_since > READY_GRACE:
                raise BenchError(f"{relative} is not in the mount")
        except OSError as e:
            raise BenchError(f"stat {relative}: {e.strerror}") from None
        time.sleep(0.002)


@dataclasses.dataclass
class Tool:
    """A FUSE file system under comparison: the image it mounts ("zip" or "squashfs"), how it
    mounts and unmounts, and why it can't be used here (missing)."""
    name: str
    kind: str
    command: str
    mount_argv: Callable[[str, str, list], list]
    unmount_argv: Callable[[str], list]
    package: str | None = None      # the Debian package that brings it
    missing: str | None = None
    version: str = ""


def make_tools(pyzfs: str) -> list[Tool]:
    fusermount = lambda m: ["fusermount3", "-u", m]  # noqa: E731
    return [
        Tool("pyzfs", "zip", pyzfs,
             lambda a, m, o: [pyzfs, "mount", a, m] + (["-o", ",".join(o)] if o else []),
             lambda m: [pyzfs, "unmount", m]),
        Tool("fuse-zip", "zip", "fuse-zip", lambda a, m, o: ["fuse-zip", "-r", a, m], fusermount,
             package="fuse-zip"),
        Tool("mount-zip", "zip", "mount-zip", lambda a, m, o: ["mount-zip", a, m], fusermount),
        Tool("archivemount", "zip", "archivemount",
             lambda a, m, o: ["archivemount", "-o", "readonly", a, m], fusermount,
             package="archivemount"),
        Tool("squashfuse", "squashfs", "squashfuse", lambda a, m, o: ["squashfuse", a, m], fusermount,
             package="squashfuse"),
    ]


@dataclasses.dataclass
class Mount:
    tool: Tool
    path: Path
    seconds: float          # from the mount command's start until the awaited file could be stat'ed
    unmounted: float | None = None  # perf_counter() when the unmount command returned
    exit_lag: float | None = None   # seconds from then until the server process had gone

    def pid(self) -> int | None:
        return server_pid(self.tool.command, self.path)


def usable(tool: Tool) -> bool:
    """Skips a row whose tool is missing before its workload is built."""
    if tool.missing:
        raise Unavailable(tool.missing)
    return True


ACTIVE: set[Path] = set()   # mount points mounted by this process and not yet unmounted
PROBLEMS: list[str] = []    # servers that died, unmounts that failed: listed under the tables


def problem(text: str):
    log(f"  PROBLEM: {text}")
    if text not in PROBLEMS:
        PROBLEMS.append(text)


def unmount(tool: Tool, mnt: Path) -> tuple[float | None, float | None]:
    """Unmounts (the tool's way, then lazily) and waits for the server to exit (10 s at most).
    Returns when the unmount command returned (perf_counter) and how long the server took
    to exit after that."""
    if not is_mounted(mnt):
        return None, None
    pid = server_pid(tool.command, mnt)
    if pid is None:
        problem(f"{tool.name}: its server for {mnt.name} had exited before the unmount")
    r = run(tool.unmount_argv(str(mnt)), UNMOUNT_TIMEOUT)
    unmounted = time.perf_counter()
    if is_mounted(mnt):
        problem(f"{tool.name}: unmount failed ({r.describe()}); unmounted lazily")
        abort_fuse_connection(mnt)
        run(["fusermount3", "-uz", mnt], UNMOUNT_TIMEOUT)
    if is_mounted(mnt):
        run(["umount", "-l", mnt], UNMOUNT_TIMEOUT)
    if is_mounted(mnt):
        raise BenchError(f"could not unmount {mnt}")
    while pid and alive(pid) and time.perf_counter() < unmounted + 10:
        time.sleep(0.002)   # the next measurement starts when this server has gone
    return unmounted, (time.perf_counter() - unmounted if pid else None)


@contextlib.contextmanager
def mounted(tool: Tool, source: Path, ready: str, options=()):
    """Mounts source with tool, waits until `ready` can be stat'ed, yields a Mount whose seconds
    are that whole wait; always unmounts."""
    if tool.missing:
        raise Unavailable(tool.missing)
    mnt = MOUNTS / tool.name
    mnt.mkdir(parents=True, exist_ok=True)
    unmount(tool, mnt)
    ACTIVE.add(mnt)
    m = None
    try:
        start = time.perf_counter()
        r = run(tool.mount_argv(str(source), str(mnt), list(options)), MOUNT_TIMEOUT)
        if not r.ok:
            raise BenchError(f"mount: {r.describe()}")
        wait_ready(mnt, ready, start + MOUNT_TIMEOUT)
        m = Mount(tool, mnt, time.perf_counter() - start)
        yield m
    finally:
        try:
            unmounted, lag = unmount(tool, mnt)
            if m:
                m.unmounted, m.exit_lag = unmounted, lag
        finally:
            ACTIVE.discard(mnt)


# ---------------------------------------------------------------------------------------------
# Results

@dataclasses.dataclass
class Row:
    name: str
    times: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    value: float | None = None      # a derived figure instead of the median of times
    ratio: bool = True              # False: no ratio to the baseline makes sense
    ratios: list = dataclasses.field(default_factory=list)  # each run's time / its baseline run's
    paired: list = dataclasses.field(default_factory=list)  # those baseline runs' times
    iqr: bool = False               # True: the ratio is shown with its interquartile range
    target: float | None = None     # issue 12: met when the ratios' upper quartile is at or below it
    app_cpu: list = dataclasses.field(default_factory=list)  # CPU seconds of each start (rusage)

    def median(self) -> float | None:
        if self.value is not None:
            return self.value
        return statistics.median(self.times) if self.times else None

    def note(self, text: str | None):
        if text and text not in self.notes:
            self.notes.append(text)

    def report(self) -> "Row":
        if self.skipped:
            log(f"  {self.name}: skipped ({self.skipped})")
        else:
            times = " ".join(f"{t:.3f}" for t in self.times)
            med = self.median()
            log(f"  {self.name}: {times or '-'}" + (f"  median {med:.3f} s" if med is not None else "")
                + (f"  ERROR {self.error}" if self.error else ""))
        return self


@dataclasses.dataclass
class Baseline:
    """A scenario's baseline row and how to take one more sample of it. measure() runs it just
    before every run of another row, and that row's ratio is the median of the pairs' ratios, so
    load from other processes that comes and goes during the benchmark largely cancels out."""
    row: Row
    sample: Callable[[], float] | None = None

    def __call__(self) -> float | None:
        if self.sample is None or self.row.error or self.row.skipped:
            return None
        try:
            seconds = self.sample()
        except (BenchError, Unavailable) as e:
            self.row.error = str(e)
            return None
        self.row.times.append(seconds)
        return seconds


@dataclasses.dataclass
class Table:
    title: str
    what: str
    baseline: Row | None
    rows: list
    ratio_to: str = "extracted directory"

    def markdown(self) -> str:
        base = self.baseline.median() if self.baseline else None
        out = [f"### {self.title}", "", self.what, "",
               f"| tool | median s | ratio to {self.ratio_to} | notes |", "|---|---:|---:|---|"]
        for row in ([self.baseline] if self.baseline else []) + self.rows:
            med = row.median()
            if row.skipped:
                cells = ["—", "—", f"skipped: {row.skipped}"]
            else:
                ratio = "—"
                if row is self.baseline and med is not None:
                    ratio = "1.00 (baseline)"
                elif row.ratio and row.ratios:
                    ratio = f"{statistics.median(row.ratios):.2f}"
                    quartiles = iqr(row.ratios) if row.iqr else None
                    if quartiles:
                        ratio += f" (q1–q3 {quartiles[0]:.2f}–{quartiles[1]:.2f})"
                        if row.target is not None:
                            ratio += (" met" if quartiles[1] <= row.target else " not met") + f" (<= {row.target:.2f})"
                elif row.ratio and med is not None and base:
                    ratio = f"{med / base:.2f}"
                notes = list(row.notes)
                if row.paired and row.ratio:
                    notes.insert(0, f"baseline in its pairs {statistics.median(row.paired):.3f}")
                if len(row.times) > 1 and row.value is None:
                    notes.insert(0, f"{len(row.times)} runs, {min(row.times):.3f}–{max(row.times):.3f}")
                if row.app_cpu:
                    notes.append(f"app CPU per start {statistics.median(row.app_cpu):.3f} s (median)")
                if row.error:
                    notes.append(f"error: {row.error}")
                cells = [f"{med:.3f}" if med is not None else "—", ratio, "; ".join(notes)]
            out.append("| " + " | ".join([row.name] + [c.replace("|", "\\|") for c in cells]) + " |")
        return "\n".join(out) + "\n"


def measure(row: Row, runs: int, once: Callable[[int], float | None], base: Baseline | None = None) -> Row:
    """Calls once(i) for each run, each after a sample of the baseline, and collects its seconds;
    the first error or timeout ends the row (recorded in it); a missing prerequisite skips it."""
    try:
        for i in range(runs):
            before = base() if base else None
            seconds = once(i)
            if seconds is not None:
                row.times.append(seconds)
                if before:
                    row.ratios.append(seconds / before)
                    row.paired.append(before)
    except Unavailable as e:
        row.skipped = str(e)
    except BenchError as e:
        row.error = str(e)
    return row.report()


# ---------------------------------------------------------------------------------------------
# Workload

def files_under(root: Path) -> list[tuple[Path, str]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            full = Path(dirpath) / f
            found.append((full, full.relative_to(root).as_posix()))
    return found


def write_pyz(tree: Path, out: Path, compression: int):
    """A zipapp as Python's zipfile writes one after a shebang line: members' dates from the
    files' mtimes (DOS time, 2 s), their modes kept (ZipFile.write does both)."""
    partial = out.with_name(out.name + ".partial")
    with open(partial, "wb") as f:
        f.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(f, "w", compression=compression) as z:
            for full, arc in files_under(tree):
                z.write(full, arc)
    os.chmod(partial, 0o755)
    os.replace(partial, out)


def big_chunks(size: int):
    """Compressible bytes (~9x with deflate): lines with a counter and a hash of it."""
    i = written = 0
    while written < size:
        block = "".join(BIG_LINE.format(i=j, h=(j * 2654435761) & 0xFFFFFFFF)
                        for j in range(i, i + 16384)).encode()[: size - written]
        i += 16384
        written += len(block)
        yield block


class Artifacts:
    """The workload files, each built on first use and reused by later runs (unless --rebuild).
    A part that cannot be built makes the rows that need it skip, with the reason."""

    def __init__(self, rebuild: bool):
        if rebuild:
            shutil.rmtree(ARTIFACTS, ignore_errors=True)
            shutil.rmtree(WORK / "venv", ignore_errors=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.failed: dict[str, str] = {}
        self.built: list[str] = []

    def _once(self, name: str, path: Path, build: Callable[[], None], ready: Path | None = None) -> Path:
        if name in self.failed:
            raise Unavailable(self.failed[name])
        if (ready or path).exists():
            return path
        log(f"building {name} ...")
        start = time.perf_counter()
        try:
            build()
        except (Unavailable, BenchError) as e:
            self.failed[name] = str(e)
            log(f"  {name}: {e}")
            raise Unavailable(str(e)) from None
        self.built.append(f"{name} ({time.perf_counter() - start:.0f} s)")
        log(f"  {name}: {time.perf_counter() - start:.1f} s")
        return path

    # The app tree (the baseline) and the files made from it.
    @property
    def tree(self) -> Path:
        path = ARTIFACTS / "tree"
        return self._once("app tree", path, lambda: self._build_tree(path), ARTIFACTS / "tree.complete")

    def _build_tree(self, dest: Path):
        missing = []
        dists = []
        for name in DISTRIBUTIONS:
            try:
                dists.append(importlib.metadata.distribution(name))
            except importlib.metadata.PackageNotFoundError:
                missing.append(name)
        if missing:
            sys.exit(f"bench: {', '.join(missing)} not installed for {PYTHON}; the workload is copied "
                     f"from its site-packages. Install them: {PYTHON} -m pip install {' '.join(missing)}")
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for dist in dists:
            for f in dist.files or []:
                if f.parts[0] == ".." or "__pycache__" in f.parts or f.suffix == ".pyc":
                    continue        # scripts in bin/ and pycs of the install (compiled again below)
                src = Path(dist.locate_file(f))
                if src.is_file():
                    (dest / f).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest / f)     # keeps the odd and even second mtimes
        (dest / "benchapp.py").write_text(BENCHAPP)
        (dest / "__main__.py").write_text(MAIN)
        # As pip does after an install (PYTHONDONTWRITEBYTECODE is not in ENV).
        r = run([PYTHON, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "timestamp", dest],
                BUILD_TIMEOUT)
        if r.timed_out:
            raise BenchError(f"compileall: {r.describe()}")
        if not r.ok:
            log(f"  compileall reported failures (as pip tolerates them): {r.describe()}")
        (ARTIFACTS / "tree.complete").touch()

    @property
    def stored(self) -> Path:
        path, tree = ARTIFACTS / "app-stored.pyz", self.tree
        return self._once("stored pyz", path, lambda: write_pyz(tree, path, zipfile.ZIP_STORED))

    @property
    def deflated(self) -> Path:
        path, tree = ARTIFACTS / "app-deflated.pyz", self.tree
        return self._once("deflated pyz", path, lambda: write_pyz(tree, path, zipfile.ZIP_DEFLATED))

    @property
    def nopyc(self) -> Path:
        """A deflated zipapp of the sources alone (no pycs), as `python -m zipapp` makes one."""
        path, site = ARTIFACTS / "app-nopyc.pyz", self.site

        def build():
            partial = path.with_name(path.name + ".partial")
            with open(partial, "wb") as f:
                f.write(b"#!/usr/bin/env python3\n")
                with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                    z.writestr("__main__.py", MAIN)
                    for full, arc in files_under(site):
                        z.write(full, arc)
            os.replace(partial, path)
        return self._once("deflated pyz without pycs", path, build)

    @property
    def squashfs(self) -> Path:
        path, tree = ARTIFACTS / "app.sqfs", self.tree
        return self._once("squashfs image", path, lambda: mksquashfs(tree, path))

    @property
    def site(self) -> Path:
        """The tree without __main__.py and pycs: what shiv and pex are given (they bring their own
        __main__ and, like a wheel install without compiling, start from sources)."""
        path, tree = ARTIFACTS / "site", self.tree

        def build():
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(tree, path, copy_function=os.link,
                            ignore=lambda d, names: [n for n in names if n == "__pycache__"
                                                     or (Path(d) == tree and n == "__main__.py")])
            (ARTIFACTS / "site.complete").touch()
        return self._once("shiv/pex sources", path, build, ARTIFACTS / "site.complete")

    @property
    def venv(self) -> Path:
        path = WORK / "venv"

        def build():
            shutil.rmtree(path, ignore_errors=True)
            r = run([PYTHON, "-m", "venv", path], BUILD_TIMEOUT)
            if not r.ok:
                raise Unavailable(f"python3 -m venv failed: {r.describe()}")
            r = run([path / "bin" / "python", "-m", "pip", "install", "-q", "shiv", "pex"], BUILD_TIMEOUT)
            if not r.ok:
                raise Unavailable(f"pip install shiv pex failed: {r.describe()}")
            (path / "bench.complete").touch()
        return self._once("venv with shiv and pex", path, build, path / "bench.complete")

    @property
    def shiv(self) -> Path:
        path, site, venv = ARTIFACTS / "app.shiv", self.site, self.venv
        return self._once("shiv", path, lambda: self._zipapp(
            path, [venv / "bin" / "shiv", "--site-packages", site, "-e", "benchapp:main",
                   "-p", "/usr/bin/env python3", "-o"]))

    @property
    def pex(self) -> Path:
        path, site, venv = ARTIFACTS / "app.pex", self.site, self.venv
        return self._once("pex", path, lambda: self._zipapp(
            path, [venv / "bin" / "pex", "-D", site, "-e", "benchapp:main",
                   "--python-shebang", "/usr/bin/env python3", "-o"]))

    @staticmethod
    def _zipapp(path: Path, argv: list):
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        r = run(argv + [partial], BUILD_TIMEOUT)
        if not r.ok:
            raise Unavailable(f"building {path.name} failed: {r.describe()}")
        os.replace(partial, path)

    # The archive scenarios.
    @property
    def many(self) -> Path:
        path = ARTIFACTS / f"many-{MANY_ENTRIES}.zip"

        def build():
            partial = path.with_name(path.name + ".partial")
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as z:
                for i in range(MANY_ENTRIES):
                    info = zipfile.ZipInfo(many_name(i), (2024, 1, 2, 3, 4, 6))
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    z.writestr(info, f"{i}\n")
            os.replace(partial, path)
        return self._once(f"zip of {MANY_ENTRIES:,} entries", path, build)

    @property
    def big(self) -> Path:
        path = ARTIFACTS / "big.zip"
        return self._once("zip with a 512 MiB member (and its squashfs image)", path,
                          lambda: self._build_big(path))

    def _build_big(self, path: Path):
        partial, raw_dir = path.with_name(path.name + ".partial"), ARTIFACTS / "big-raw"
        shutil.rmtree(raw_dir, ignore_errors=True)
        raw_dir.mkdir()
        info = zipfile.ZipInfo("big.bin", time.localtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        try:
            with zipfile.ZipFile(partial, "w") as z, z.open(info, "w", force_zip64=True) as w, \
                    open(raw_dir / "big.bin", "wb") as raw:
                for chunk in big_chunks(BIG_SIZE):
                    w.write(chunk)
                    raw.write(chunk)
            os.replace(partial, path)
            with contextlib.suppress(Unavailable, BenchError):
                mksquashfs(raw_dir, ARTIFACTS / "big.sqfs")
        finally:
            shutil.rmtree(raw_dir, ignore_errors=True)

    @property
    def big_squashfs(self) -> Path:
        path = ARTIFACTS / "big.sqfs"
        self.big    # noqa: B018 - builds both
        if not path.exists():
            raise Unavailable("no squashfs image of the big member (mksquashfs failed or is missing)")
        return path

    def sizes(self) -> str:
        parts = []
        for label, name in (("stored pyz", "app-stored.pyz"), ("deflated pyz", "app-deflated.pyz"),
                            ("squashfs", "app.sqfs"), ("shiv", "app.shiv"), ("pex", "app.pex"),
                            ("big.zip", "big.zip")):
            p = ARTIFACTS / name
            if p.exists():
                parts.append(f"{label} {p.stat().st_size / 2**20:.1f} MiB")
        return ", ".join(parts)


def many_name(i: int) -> str:
    return f"d{i // 1000}/f{i}.txt"


def mksquashfs(source: Path, image: Path):
    if not shutil.which("mksquashfs"):
        raise Unavailable("mksquashfs not found (apt-get install squashfs-tools)")
    partial = image.with_name(image.name + ".partial")
    partial.unlink(missing_ok=True)
    r = run(["mksquashfs", source, partial, "-comp", "gzip", "-noappend", "-quiet"], BUILD_TIMEOUT)
    if not r.ok:
        raise Unavailable(f"mksquashfs failed: {r.describe()}")
    os.replace(partial, image)


# ---------------------------------------------------------------------------------------------
# Warm servers and what a start costs (issue 12)

KEEP = "90s"        # PYZFS_KEEP of the rows that keep a warm server between starts
WARM_ROOT = "/run/pyzfs/"


def proc_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds a live process has used so far (/proc/PID/stat)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def pyzfs_stats(pyzfs, mnt) -> dict | None:
    """`pyzfs stats --json MOUNT`: the server's pid and its counters (`requests`: FUSE requests, from the warm-server commit on)."""
    r = run([pyzfs, "stats", "--json", mnt], 30)
    with contextlib.suppress(ValueError):
        s = json.loads(r.out) if r.ok else None
        return s if isinstance(s, dict) else None
    return None


def warm_mounts() -> list[str]:
    """Mount points of this benchmark's warm servers (fuse.pyzfs under /run/pyzfs/ of an
    archive under WORK) in this namespace: other warm servers of this user are not its to end."""
    work = os.path.realpath(WORK) + "/"
    return [point for _, point, fstype, source in mount_table()
            if fstype == "fuse.pyzfs" and point.startswith(WARM_ROOT) and os.path.realpath(source).startswith(work)]


class StartCost:
    """What each start cost apart from wall time, which does not depend on the machine's mood:
    the app's CPU (children's rusage), the server's CPU (/proc/PID/stat of the server found via
    the mount) and the server's counters from `pyzfs stats`, as differences over one start."""
    COUNTERS = ("requests", "hits", "misses", "decompressions", "pycs_written")

    def __init__(self):
        self.app: list[float] = []
        self.server: list[float] = []
        self.counters: dict[str, list[int]] = {k: [] for k in self.COUNTERS}
        self.no_server = 0

    def snapshot(self, pyzfs, mnt) -> tuple | None:
        s = pyzfs_stats(pyzfs, mnt) if mnt else None
        if not s or "pid" not in s:
            return None
        return int(s["pid"]), proc_cpu(int(s["pid"])), s

    def add(self, r: "Result", before: tuple | None, after: tuple | None):
        """One start: `before` None means the server is new (all its CPU and counters count)."""
        if r.cpu is not None:
            self.app.append(r.cpu)
        if after is None:
            self.no_server += 1
            return
        pid, cpu, s = after
        same = before is not None and before[0] == pid
        if cpu is not None and (not same or before[1] is not None):
            self.server.append(cpu - (before[1] if same else 0.0))
        for k in self.COUNTERS:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.counters[k].append(int(s[k]) - (int(before[2][k]) if same else 0))

    def note(self) -> str | None:
        parts = []
        if self.app:
            parts.append(f"app CPU {statistics.median(self.app):.3f} s")
        if self.server:
            parts.append(f"server CPU {statistics.median(self.server):.3f} s")
        elif self.no_server:
            parts.append("server CPU not measured (no mount left after the start: no warm server)")
        got = {k: statistics.median(v) for k, v in self.counters.items() if v}
        if "requests" in got:
            parts.append(f"FUSE requests {got['requests']:.0f} (with 1-2 of pyzfs stats's own reads)")
        elif self.server or got:
            parts.append("FUSE requests: not counted by this pyzfs stats")
        if got:
            parts.append(f"cache hits {got.get('hits', 0):.0f}, misses {got.get('misses', 0):.0f}, "
                         f"decompressions {got.get('decompressions', 0):.0f}, "
                         f"pycs written {got.get('pycs_written', 0):.0f}")
        return ("per start (medians): " + ", ".join(parts)) if parts else None


def iqr(values: list) -> tuple[float, float] | None:
    """The first and third quartiles (inclusive method), from 4 values on."""
    if len(values) < 4:
        return None
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


# ---------------------------------------------------------------------------------------------
# The harness

class Bench:
    def __init__(self, args):
        self.args = args
        self.runs_warm = args.runs or (3 if args.quick else 9)
        self.runs_cold = args.runs or (3 if args.quick else 7)
        self.runs_big = args.runs or 3
        self.pairs = max(args.runs or 0, 5 if args.quick else PAIRS)
        self.pyzfs = snapshot_pyzfs(Path(args.pyzfs))
        selected = set(args.tools.split(",")) if args.tools else set(TOOL_NAMES)
        self.tools = [t for t in make_tools(str(self.pyzfs)) if t.name in selected]
        self.extractors = [n for n in ("shiv", "pex") if n in selected]
        self.art = Artifacts(args.rebuild)
        self.tables: list[Table] = []
        self._help: dict[str, tuple[bool, str]] = {}

    # Tools ----------------------------------------------------------------------------------
    def prepare_tools(self):
        """Finds each tool; installs missing Debian peers with apt-get (root only)."""
        want = {t.package for t in self.tools if t.package and not shutil.which(t.command)}
        if any(t.kind == "squashfs" for t in self.tools) and not shutil.which("mksquashfs"):
            want.add("squashfs-tools")
        if want and os.geteuid() == 0 and shutil.which("apt-get"):
            log(f"installing {' '.join(sorted(want))} with apt-get ...")
            env = dict(ENV, DEBIAN_FRONTEND="noninteractive")
            r = run(["apt-get", "update", "-qq"], BUILD_TIMEOUT, env=env)
            if r.ok:
                r = run(["apt-get", "install", "-y", "-qq", *sorted(want)], BUILD_TIMEOUT, env=env)
            if not r.ok:
                log(f"  apt-get failed: {r.describe()}")
        fuse = Path("/dev/fuse").exists()
        for t in self.tools:
            if not fuse:
                t.missing = "no /dev/fuse on this machine"
            elif not shutil.which(t.command):
                t.missing = (f"{t.command} not found on PATH"
                             + (f" (apt-get install {t.package} failed or was not possible)" if t.package
                                else " (google/mount-zip; build it outside this repository)"))
            elif not shutil.which("fusermount3"):
                t.missing = "fusermount3 not found (apt-get install fuse3)"
            t.version = tool_version(t)

    def mount_tools(self, kind: str) -> list[Tool]:
        return [t for t in self.tools if t.kind == kind]

    def subcommand(self, name: str) -> tuple[bool, str]:
        """Whether this pyzfs has `pyzfs NAME`. Unknown words are taken for `pyzfs mount`'s archive
        (the default subcommand), so `--help` exiting 0 is not enough: its usage must name it."""
        if name not in self._help:
            r = run([self.pyzfs, name, "--help"], 30)
            if r.ok and re.search(rf"USAGE:\s*pyzfs {name}\b", r.out + r.err):
                self._help[name] = (True, "")
            else:
                why = "it shows the mount command's help" if r.ok else r.describe()
                self._help[name] = (False, f"not available in this pyzfs (`pyzfs {name} --help`: {why})")
        return self._help[name]

    # Building blocks of the scenarios ---------------------------------------------------------
    def extracted(self, runs: int) -> Baseline:
        """The baseline of the app scenarios: python3 on the extracted tree (valid pycs, files in
        the page cache); `runs` runs of its own, then one before every run of the other rows."""
        row = Row("extracted directory")
        try:
            tree = self.art.tree
            row.note(check_app(run([PYTHON, tree], APP_TIMEOUT)))
            n = compiled_from_source([tree])
            row.note(f"{n} modules compiled from source per start" if n else None)
            measure(row, runs, lambda i: self.app_run(tree, cpu=row.app_cpu))
            return Baseline(row, lambda: self.app_run(tree, cpu=row.app_cpu))
        except Unavailable as e:
            row.skipped = str(e)
        except BenchError as e:
            row.error = str(e)
        return Baseline(row.report())

    @staticmethod
    def app_run(target, env=None, cpu: list | None = None) -> float:
        r = run([PYTHON, target], APP_TIMEOUT, env=env)
        check_app(r)
        if cpu is not None and r.cpu is not None:
            cpu.append(r.cpu)
        return r.seconds

    def cold_row(self, name: str, tool: Tool, source: Callable[[], Path], base: Baseline) -> Row:
        """Fresh mount + one python3 start, timed from the mount command's start; then unmount."""
        row, mount_times, lags = Row(name), [], []

        def once(i):
            archive = usable(tool) and source()
            page_in(archive)
            start = time.perf_counter()
            with mounted(tool, archive, "__main__.py") as m:
                r = run([PYTHON, m.path], APP_TIMEOUT)
                seconds = time.perf_counter() - start
                row.note(check_app(r))
            mount_times.append(m.seconds)
            if m.exit_lag is not None:
                lags.append(m.exit_lag)
            return seconds

        measure(row, self.runs_cold, once, base)
        if mount_times:
            row.notes.insert(0, f"mount {statistics.median(mount_times):.3f} s")
        if lags and statistics.median(lags) > 0.1:
            row.note(f"the server exits {statistics.median(lags):.2f} s after the unmount command returns")
        return row

    def warm_row(self, name: str, tool: Tool, source: Callable[[], Path], base: Baseline) -> Row:
        """One mount: one untimed start, one `python3 -v` start to count modules compiled from
        source, then the timed starts. pyzfs's rows (issue 12 target "warm mount" <= 1.01) take
        at least PAIRS pairs and show q1–q3."""
        row = Row(name)
        runs = self.runs_warm
        if tool.name == "pyzfs":
            row.iqr, row.target, runs = True, 1.01, max(self.runs_warm, self.pairs)
        try:
            archive = usable(tool) and source()
            with mounted(tool, archive, "__main__.py") as m:
                row.note(check_app(run([PYTHON, m.path], APP_TIMEOUT)))
                n = compiled_from_source([m.path])
                row.note(f"{n} modules compiled from source per start" if n else None)
                measure(row, runs, lambda i: self.app_run(m.path, cpu=row.app_cpu), base)
        except Unavailable as e:
            row.skipped = str(e)
        except BenchError as e:
            row.error = row.error or str(e)
        if row.skipped or (row.error and not row.times):
            row.report()
        return row

    def extractor_row(self, name: str, first_run: bool, base: Baseline) -> Row:
        """shiv or pex: first runs with an empty SHIV_ROOT/PEX_ROOT each time, or warm runs with
        one that a first run filled."""
        label = f"{name}, first run (empty cache)" if first_run else f"{name}, warm cache"
        row = Row(label)
        var = "SHIV_ROOT" if name == "shiv" else "PEX_ROOT"
        roots = SCRATCH / f"{name}-roots"

        def fresh_root() -> Path:
            shutil.rmtree(roots, ignore_errors=True)
            roots.mkdir(parents=True)
            return roots

        try:
            app = getattr(self.art, name)
            if first_run:
                def once(i):
                    env = dict(ENV, **{var: str(fresh_root())})
                    page_in(app)
                    r = run([PYTHON, app], APP_TIMEOUT, env=env)
                    row.note(check_app(r))
                    return r.seconds
                measure(row, self.runs_cold, once, base)
            else:
                env = dict(ENV, **{var: str(fresh_root())})
                row.note(check_app(run([PYTHON, app], APP_TIMEOUT, env=env)))
                n = compiled_from_source([app], env=env)
                row.note(f"{n} modules compiled from source per start" if n else None)
                measure(row, self.runs_warm, lambda i: self.app_run(app, env), base)
        except Unavailable as e:
            row.skipped = str(e)
            row.report()
        except BenchError as e:
            row.error = str(e)
            row.report()
        finally:
            shutil.rmtree(roots, ignore_errors=True)
        return row

    def zip_sources(self):
        return (("stored pyz", lambda: self.art.stored), ("deflated pyz", lambda: self.art.deflated))

    def start_rows(self, row, cold: bool, base) -> list:
        """The rows of scenarios 1 and 2: every mount tool on the stored and deflated pyz, squashfuse
        on its image, then shiv and pex (first runs when `cold`, else with their cache filled)."""
        rows = []
        for label, source in self.zip_sources():
            rows += [row(f"{t.name}, {label}", t, source, base) for t in self.mount_tools("zip")]
        rows += [row(f"{t.name}, gzip image", t, lambda: self.art.squashfs, base)
                 for t in self.mount_tools("squashfs")]
        return rows + [self.extractor_row(n, cold, base) for n in self.extractors]

    # Scenarios ---------------------------------------------------------------------------------
    def scenario_cold(self) -> Table:
        log(f"\n== 1. cold start ({self.runs_cold} runs)")
        base = self.extracted(self.runs_cold)
        rows = self.start_rows(self.cold_row, True, base)
        return Table("1. Cold start", (
            "A fresh mount and one `python3 MOUNT`, timed from the mount command's start until python "
            "exits (notes: the mount alone, until `__main__.py` can be stat'ed). The archive is in the "
            "page cache (caches are never dropped); so is the extracted directory, whose row is a warm "
            "start. shiv and pex: `python3 app` with an empty SHIV_ROOT / PEX_ROOT each time."),
            base.row, rows)

    def scenario_warm(self) -> Table:
        log(f"\n== 2. warm start ({self.runs_warm} runs)")
        base = self.extracted(self.runs_warm)
        rows = self.start_rows(self.warm_row, False, base)
        return Table("2. Warm start", (
            "Later `python3 MOUNT` runs on one mount, after an untimed first run. Notes count the "
            "modules compiled from source on every start (stale or missing pycs, from `python3 -v`). "
            "shiv and pex: their cache filled by a first run."), base.row, rows)

    def scenario_concurrent(self) -> Table:
        log(f"\n== 3. {CONCURRENCY} concurrent cold starts ({self.runs_cold} runs)")

        def at_once(target) -> float:
            seconds, results = run_at_once([PYTHON, target], CONCURRENCY, APP_TIMEOUT)
            for r in results:
                check_app(r)
            return seconds

        base = Baseline(Row(f"extracted directory, {CONCURRENCY} at once"))
        try:
            tree = self.art.tree
            check_app(run([PYTHON, tree], APP_TIMEOUT))
            measure(base.row, self.runs_cold, lambda i: at_once(tree))
            base.sample = lambda: at_once(tree)
        except Unavailable as e:
            base.row.skipped = str(e)
        except BenchError as e:
            base.row.error = str(e)

        def row(name, tool, source):
            r = Row(name)

            def once(i):
                archive = usable(tool) and source()
                page_in(archive)
                with mounted(tool, archive, "__main__.py") as m:
                    return at_once(m.path)
            return measure(r, self.runs_cold, once, base)

        rows = [row(f"{t.name}, deflated pyz", t, lambda: self.art.deflated)
                for t in self.mount_tools("zip")]
        rows += [row(f"{t.name}, gzip image", t, lambda: self.art.squashfs)
                 for t in self.mount_tools("squashfs")]
        return Table(f"3. {CONCURRENCY} concurrent cold starts", (
            f"{CONCURRENCY} `python3 MOUNT` started at once on a fresh mount (the mount itself is not "
            f"timed), wall time until all {CONCURRENCY} exited; the baseline starts {CONCURRENCY} at "
            f"once from the extracted directory. {os.cpu_count()} CPUs."), base.row, rows)

    def scenario_many(self) -> Table:
        log(f"\n== 4. {MANY_ENTRIES:,} entries: mount + stat of the last one ({self.runs_cold} runs)")
        last = many_name(MANY_ENTRIES - 1)
        base = Baseline(Row("Python zipfile: open + getinfo(last)"))

        def zipfile_once(i):
            archive = self.art.many
            page_in(archive)
            start = time.perf_counter()
            with zipfile.ZipFile(archive) as z:
                z.getinfo(last)
            return time.perf_counter() - start
        measure(base.row, self.runs_cold, zipfile_once)
        base.sample = lambda: zipfile_once(0)

        rows = []
        for tool in self.mount_tools("zip"):
            row = Row(tool.name)

            def once(i, tool=tool, row=row):
                archive = usable(tool) and self.art.many
                page_in(archive)
                with mounted(tool, archive, last) as m:
                    try:
                        content = _call_with_timeout(lambda: (m.path / last).read_text(), 60)
                        if content != f"{MANY_ENTRIES - 1}\n":
                            row.note("reading the last entry returned wrong bytes")
                    except OSError as e:
                        row.note(f"stat works but reading the last entry fails: {e.strerror}")
                    except BenchError as e:
                        row.note(f"reading the last entry: {e}")
                return m.seconds
            rows.append(measure(row, self.runs_cold, once, base))
        return Table(f"4. Archive of {MANY_ENTRIES:,} entries", (
            f"A stored zip of {MANY_ENTRIES:,} small files (`d{{i//1000}}/f{{i}}.txt`): time from the "
            "mount command's start until the last entry can be stat'ed (polled for tools that return "
            "before they serve). The baseline opens the archive with Python's zipfile, in process. "
            "Notes say when the entry's bytes then cannot be read. Entries carry a Unix file type and "
            "mode, as ZipFile.write records them (fuse-zip answers EIO for entries without)."),
            base.row, rows, "zipfile")

    def scenario_big(self) -> Table:
        log(f"\n== 5. one {BIG_SIZE >> 20} MiB deflated member ({self.runs_big} runs)")
        base = Baseline(Row("Python zipfile: stream in 1 MiB reads"))

        def zipfile_once(i):
            archive = self.art.big
            page_in(archive)
            r = run([PYTHON, "-c", ZIPFILE_STREAM, archive, "big.bin"], DD_TIMEOUT)
            if not r.ok:
                raise BenchError(r.describe())
            seconds, n = r.out.split()
            if int(n) != BIG_SIZE:
                raise BenchError(f"zipfile read {n} bytes")
            return float(seconds)
        measure(base.row, self.runs_big, zipfile_once)
        base.sample = lambda: zipfile_once(0)

        rows = []
        candidates = [(t, lambda: self.art.big) for t in self.mount_tools("zip") if t.name != "archivemount"]
        candidates += [(t, lambda: self.art.big_squashfs) for t in self.mount_tools("squashfs")]
        for tool, source in candidates:
            options = ["cache_size=256M"] if tool.name == "pyzfs" else []
            suffix = " (-o cache_size=256M)" if options else ""
            seq = Row(f"{tool.name}{suffix}: dd bs=1M")
            rnd = Row(f"{tool.name}{suffix}: {RANDOM_READS:,} random 4 KiB preads")
            rnd.ratio = False
            seq_hwm, rnd_hwm, disk, temps = [], [], [], []

            def dd_once(i, tool=tool, source=source, options=options, seq_hwm=seq_hwm):
                archive = usable(tool) and source()
                page_in(archive)
                with mounted(tool, archive, "big.bin", options) as m:
                    r = run(["dd", f"if={m.path / 'big.bin'}", "of=/dev/null", "bs=1M"], DD_TIMEOUT)
                    hwm = vm_hwm(self.pid_of(m))
                    if hwm:
                        seq_hwm.append(hwm)
                    if not r.ok:
                        raise BenchError(r.describe())
                    copied = re.search(r"^(\d+) bytes", r.err, re.M)
                    if not copied or int(copied.group(1)) != BIG_SIZE:
                        raise BenchError(f"dd copied {copied.group(1) if copied else '?'} bytes")
                    return r.seconds

            def random_once(i, tool=tool, source=source, options=options):
                archive = usable(tool) and source()
                page_in(archive)
                with mounted(tool, archive, "big.bin", options) as m:
                    pid = self.pid_of(m)
                    before = disk_used()
                    r = run([PYTHON, "-c", RANDOM_READS_SCRIPT, m.path / "big.bin", RANDOM_READS,
                             RANDOM_SEED], RANDOM_TIMEOUT)
                    disk.append(disk_used() - before)
                    temps.append(server_files(pid, archive))
                    hwm = vm_hwm(pid)
                    if hwm:
                        rnd_hwm.append(hwm)
                    if not r.ok:
                        raise BenchError(r.describe())
                    return float(r.out.split()[0])

            measure(seq, self.runs_big, dd_once, base)
            measure(rnd, self.runs_big, random_once)
            if seq_hwm:
                seq.note(f"server peak RSS {max(seq_hwm) / 2**20:.0f} MiB")
            if rnd_hwm:
                rnd.note(f"server peak RSS {max(rnd_hwm) / 2**20:.0f} MiB")
            if disk or temps:
                held = max((sum(s for _, s in t) for t in temps), default=0)
                grew = max(disk, default=0)
                if held:
                    names = sorted({n for t in temps for n, _ in t})
                    rnd.note(f"server wrote {held / 2**20:.0f} MiB to disk ({', '.join(names)[:120]})")
                elif grew > 16 << 20:
                    rnd.note(f"disk use grew {grew / 2**20:.0f} MiB during the reads "
                             "(perhaps another process)")
                else:
                    rnd.note("nothing written to disk")
            rows += [seq, rnd]
        if any(t.name == "archivemount" for t in self.tools):
            rows.append(Row("archivemount", skipped=(
                "not run: its reads of a deflated member slow down as they go (tried: 197 of the "
                "512 MiB in 120 s), so one dd would take over 10 minutes")))
        return Table(f"5. One {BIG_SIZE >> 20} MiB deflated member (zip64)", (
            f"A zip with one {BIG_SIZE >> 20} MiB deflated member (~9x compressible, written by "
            "zipfile with force_zip64=True, Unix file type and mode set). `dd` of the whole member on "
            "a fresh mount against Python's zipfile streaming it (its time measured inside the "
            f"process); then {RANDOM_READS:,} random 4 KiB `os.pread`s (seed {RANDOM_SEED}) on another "
            "fresh mount, timed inside the process from the open (no ratio). Notes: the server's peak "
            "RSS (VmHWM) before unmount, and whether it wrote to disk during the random reads (its "
            "open regular files other than the archive, and `df` of /tmp and the work directory). "
            "squashfuse reads a squashfs image of the same bytes."),
            base.row, rows, "zipfile")

    def pid_of(self, m: Mount) -> int | None:
        if m.tool.name == "pyzfs":
            r = run([self.pyzfs, "stats", "--json", m.path], 30)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                return int(json.loads(r.out)["pid"])
        return m.pid()

    def scenario_run_optimize(self) -> Table:
        log(f"\n== 6. pyzfs run and pyzfs optimize ({self.runs_cold} cold, {self.runs_warm} warm runs)")
        pyzfs = next((t for t in self.tools if t.name == "pyzfs"), None)
        base = self.extracted(self.runs_warm)
        rows = []
        if "run" in self.only:
            rows.append(self.run_overhead(pyzfs))
        if "optimize" in self.only:
            rows += self.optimized_rows(pyzfs, base)
        return Table("6. pyzfs run and pyzfs optimize", (
            "`pyzfs run app.pyz` (deflated pyz): its median minus the median of `pyzfs mount` + "
            "`python3 MOUNT` + `pyzfs unmount` (until it returns), runs alternating (no ratio). "
            "`pyzfs optimize` of the "
            "deflated pyz, then the optimized archive mounted by pyzfs, cold and warm as in 1 and 2."),
            base.row, rows)

    def run_overhead(self, pyzfs: Tool | None) -> Row:
        row = Row("pyzfs run overhead")
        row.ratio = False
        available, why = self.subcommand("run")
        if pyzfs is None or not available:
            row.skipped = "pyzfs not selected" if pyzfs is None else why
            return row.report()
        runs, manual = [], []

        def once(i):
            archive = self.art.deflated
            page_in(archive)
            r = run([self.pyzfs, "run", archive], APP_TIMEOUT)
            row.note(check_app(r))
            runs.append(r.seconds)
            page_in(archive)
            start = time.perf_counter()
            with mounted(pyzfs, archive, "__main__.py") as m:
                row.note(check_app(run([PYTHON, m.path], APP_TIMEOUT)))
            manual.append(m.unmounted - start)     # not the server's exit after that
            return None
        measure(row, self.runs_cold, once)
        if runs and manual:
            a, b = statistics.median(runs), statistics.median(manual)
            row.value = a - b
            row.notes.insert(0, f"`pyzfs run` {a:.3f} s, mount + python3 + unmount {b:.3f} s "
                                f"({len(runs)} runs each)")
        return row

    def optimized_rows(self, pyzfs: Tool | None, base: Baseline) -> list[Row]:
        available, why = self.subcommand("optimize")
        if pyzfs is None or not available:
            why = "pyzfs not selected" if pyzfs is None else why
            return [Row("pyzfs, optimized pyz, cold", skipped=why).report(),
                    Row("pyzfs, optimized pyz, warm", skipped=why).report()]
        out = ARTIFACTS / "optimized.pyz"     # made again by every run: it is pyzfs's own output
        try:
            deflated = self.art.deflated
            out.unlink(missing_ok=True)
            r = run([self.pyzfs, "optimize", deflated, out], BUILD_TIMEOUT)
            if not r.ok:
                raise BenchError(f"pyzfs optimize: {r.describe()}")
        except (Unavailable, BenchError) as e:
            return [Row("pyzfs, optimized pyz", error=str(e)).report()]
        made = (f"`pyzfs optimize` took {r.seconds:.2f} s; {deflated.stat().st_size / 2**20:.1f} -> "
                f"{out.stat().st_size / 2**20:.1f} MiB")
        cold = self.cold_row("pyzfs, optimized pyz, cold", pyzfs, lambda: out, base)
        warm = self.warm_row("pyzfs, optimized pyz, warm", pyzfs, lambda: out, base)
        cold.note(made)
        return [cold, warm]

    # Issue 12: warm servers, bundled apps, pinned mounts, PYTHONDONTWRITEBYTECODE -----------
    def has_warm(self) -> bool:
        """Whether this pyzfs has `pyzfs unmount --warm` (the warm servers of `pyzfs run`)."""
        if not hasattr(self, "_warm"):
            r = run([self.pyzfs, "unmount", "--help"], 30)
            self._warm = r.ok and "--warm" in r.out + r.err
        return self._warm

    def end_warm_servers(self):
        """Ends this benchmark's warm servers: each of its warm mounts detached (its server
        exits then). Not `pyzfs unmount --warm`, which would end every warm server of this user."""
        for point in warm_mounts():
            for argv in ([self.pyzfs, "unmount", "-l", point], ["fusermount3", "-uz", point], ["umount", "-l", point]):
                if not is_mounted(Path(point)):
                    break
                run(argv, UNMOUNT_TIMEOUT)
            if is_mounted(Path(point)):
                problem(f"could not unmount the warm mount {point}")

    def warm_mount_of(self, archive: Path) -> str | None:
        """The warm server's mount point of `archive`, if one is alive."""
        want = os.path.realpath(archive)
        for point in warm_mounts():
            s = pyzfs_stats(self.pyzfs, point)
            if s and os.path.realpath(str(s.get("archive", ""))) == want:
                return point
        return None

    def pyzfs_run(self, archive: Path, cost: StartCost, keep: str, env: dict | None = None) -> "Result":
        """One `pyzfs run ARCHIVE` with PYZFS_KEEP=keep; its cost recorded."""
        env = dict(env or ENV, PYZFS_KEEP=keep)
        mnt = self.warm_mount_of(archive) if keep != "0" else None
        before = cost.snapshot(self.pyzfs, mnt)
        r = run([self.pyzfs, "run", archive], APP_TIMEOUT, env=env)
        check_app(r)
        after = cost.snapshot(self.pyzfs, self.warm_mount_of(archive)) if keep != "0" else None
        cost.add(r, before, after)
        return r

    def run_rows(self, label: str, archive: Callable[[], Path], first: Baseline, later: Baseline,
                 env: dict | None = None, first_name: str | None = None, target: float | None = None) -> list[Row]:
        """`pyzfs run` of one archive: first starts (each after the warm servers were ended), then
        later starts on the kept warm server, each run after a sample of its baseline."""
        a, b = Row(first_name or f"pyzfs run {label}, first start"), Row(f"pyzfs run {label}, later start")
        b.iqr, b.target = True, target
        available, why = self.subcommand("run")
        if not available:
            a.skipped = b.skipped = why
            return [a.report(), b.report()]
        costs = StartCost(), StartCost()

        def first_once(i):
            path = archive()
            self.end_warm_servers()
            page_in(path)
            return self.pyzfs_run(path, costs[0], KEEP, env).seconds

        def later_once(i):
            return self.pyzfs_run(archive(), costs[1], KEEP, env).seconds

        try:
            measure(a, self.runs_cold, first_once, first)
            try:
                self.end_warm_servers()
                self.pyzfs_run(archive(), StartCost(), KEEP, env)     # the first start, untimed
                measure(b, self.pairs, later_once, later)
            except (Unavailable, BenchError) as e:
                b.error = str(e)
                b.report()
        finally:
            self.end_warm_servers()
        for row, cost in zip((a, b), costs):
            row.note(cost.note())
        if not self.has_warm():
            b.note("this pyzfs has no warm servers yet (no `pyzfs unmount --warm`): every run mounted afresh")
        return [a, b]

    def scenario_run_warm(self) -> Table:
        log(f"\n== 7. pyzfs run, first and later starts ({self.runs_cold} first, {self.pairs} later)")
        base = self.extracted(self.runs_warm)
        try:
            rows = self.run_rows("deflated pyz", lambda: self.art.deflated, base, base, target=1.03)
            fresh = Row("pyzfs run deflated pyz, PYZFS_KEEP=0 (a fresh mount per run)")
            cost = StartCost()
            measure(fresh, self.runs_cold, lambda i: self.pyzfs_run(self.art.deflated, cost, "0").seconds, base)
            fresh.note(cost.note())
            rows.append(fresh)
        finally:
            self.end_warm_servers()
        return Table("7. pyzfs run: first and later starts", (
            f"`pyzfs run` of the deflated pyz with `PYZFS_KEEP={KEEP}`: first starts each after "
            "its warm mounts detached, later starts consecutive runs on the kept warm server (the "
            f"ratio is the median of {self.pairs} alternating pairs with the extracted directory, "
            "q1–q3 beside it, and 'met' when q3 is at or below the issue 12 target). CPU: the app's from its rusage, the server's from /proc/PID/stat of "
            "the process `pyzfs stats` names; counters are differences over one start."),
            base.row, rows)

    def tool_start(self, name: str, app: Path, cost: StartCost, first: bool) -> float:
        """shiv's or pex's own start: with its cache (SHIV_ROOT / PEX_ROOT) emptied, or filled."""
        root = SCRATCH / f"{name}-own-root"
        if first:
            shutil.rmtree(root, ignore_errors=True)
            page_in(app)
        root.mkdir(parents=True, exist_ok=True)
        env = dict(ENV, **{"SHIV_ROOT" if name == "shiv" else "PEX_ROOT": str(root)})
        r = run([PYTHON, app], APP_TIMEOUT, env=env)
        check_app(r)
        cost.add(r, None, None)
        cost.no_server = 0
        return r.seconds

    def scenario_bundled(self) -> Table:
        log(f"\n== 8. shiv and pex under pyzfs run ({self.runs_cold} first, {self.pairs} later)")
        rows = []
        try:
            for name in self.extractors:
                own = [Row(f"{name}: own first start (empty cache)"), Row(f"{name}: own warm start")]
                costs = StartCost(), StartCost()
                try:
                    app = getattr(self.art, name)
                except Unavailable as e:
                    rows += [Row(r.name, skipped=str(e)).report() for r in own]
                    continue
                first = Baseline(own[0], lambda: self.tool_start(name, app, costs[0], True))
                self.tool_start(name, app, StartCost(), True)      # fills its cache
                later = Baseline(own[1], lambda: self.tool_start(name, app, costs[1], False))
                # The tool's and pyzfs's runs alternate; the tool rows are the samples taken.
                env = dict(ENV, SHIV_ROOT=str(SCRATCH / "pyzfs-run-root"), PEX_ROOT=str(SCRATCH / "pyzfs-run-root"))
                made = self.run_rows(name, lambda: app, first, later, env, target=1.00)
                opt = ARTIFACTS / f"{name}-optimized.pyz"
                optimized: list[Row] = []
                available, why = self.subcommand("optimize")
                if available:
                    opt.unlink(missing_ok=True)
                    r = run([self.pyzfs, "optimize", app, opt], BUILD_TIMEOUT)
                    if r.ok:
                        optimized = self.run_rows(f"{name} optimized", lambda: opt, first, later, env, target=1.00)
                        optimized[0].note(f"`pyzfs optimize` {app.stat().st_size / 2**20:.1f} -> "
                                          f"{opt.stat().st_size / 2**20:.1f} MiB")
                    else:
                        why = f"pyzfs optimize: {r.describe()}"
                if not optimized:
                    optimized = [Row(f"pyzfs run {name} optimized", skipped=why).report()]
                for row, cost in zip(own, costs):
                    row.ratio = False
                    row.note(cost.note())
                for pair in (made, optimized if len(optimized) == 2 else []):
                    if pair:
                        pair[0].note(f"ratio to {name}'s own first start")
                        pair[1].note(f"ratio to {name}'s own warm start")
                rows += [own[0], made[0]] + optimized[:1] + [own[1], made[1]] + optimized[1:]
        finally:
            self.end_warm_servers()
        return Table("8. shiv and pex under pyzfs run", (
            "The shiv and the pex of the workload (no pycs, as the tools build them) and their "
            "`pyzfs optimize` outputs started by `pyzfs run` (first start: after its warm mounts "
            "are detached; later starts: consecutive runs on the warm server) against the tool's own first "
            "start (its cache emptied) and warm start, alternating; later starts in "
            f"{self.pairs} pairs (q1–q3 beside the median ratio, 'met' when q3 is at or below the "
            "issue 12 target)."), None, rows,
            "the tool's own start (first / warm; see notes)")

    def scenario_pinned(self) -> Table:
        log(f"\n== 9. a sha256-pinned mount ({self.runs_cold} cold, {self.pairs} warm pairs)")
        rows = []
        pyzfs = next((t for t in self.tools if t.name == "pyzfs"), None)
        if pyzfs is None:
            return Table("9. sha256-pinned mount", "", None, [Row("pinned", skipped="pyzfs not selected").report()])
        pinned_tool = dataclasses.replace(pyzfs, name="pyzfs-pinned")
        try:
            archive = self.art.deflated
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        except Unavailable as e:
            return Table("9. sha256-pinned mount", "", None, [Row("pinned", skipped=str(e)).report()])
        pin = [f"sha256={digest}"]
        costs = {k: StartCost() for k in ("cold", "cold-base", "warm", "warm-base")}

        def cold(tool, options, cost):
            page_in(archive)
            start = time.perf_counter()
            with mounted(tool, archive, "__main__.py", options) as m:
                r = run([PYTHON, m.path], APP_TIMEOUT)
                seconds = time.perf_counter() - start
                check_app(r)
                cost.add(r, None, cost.snapshot(self.pyzfs, m.path))
            return seconds

        cold_base = Baseline(Row("unpinned, cold"), lambda: cold(pyzfs, [], costs["cold-base"]))
        cold_row = measure(Row("pinned (-o sha256=HEX), cold"), self.runs_cold,
                           lambda i: cold(pinned_tool, pin, costs["cold"]), cold_base)
        warm_base = Baseline(Row("unpinned, warm"))
        warm_row = Row("pinned (-o sha256=HEX), warm")
        warm_row.iqr, warm_row.target = True, 1.01
        try:
            with mounted(pyzfs, archive, "__main__.py") as plain, \
                    mounted(pinned_tool, archive, "__main__.py", pin) as pinned:
                def warm(m, cost):
                    before = cost.snapshot(self.pyzfs, m.path)
                    r = run([PYTHON, m.path], APP_TIMEOUT)
                    check_app(r)
                    cost.add(r, before, cost.snapshot(self.pyzfs, m.path))
                    return r.seconds
                warm(plain, StartCost())
                warm(pinned, StartCost())
                warm_base.sample = lambda: warm(plain, costs["warm-base"])
                measure(warm_row, self.pairs, lambda i: warm(pinned, costs["warm"]), warm_base)
        except (Unavailable, BenchError) as e:
            warm_row.error = warm_row.error or str(e)
            warm_row.report()
        for row, key in ((cold_base.row, "cold-base"), (cold_row, "cold"), (warm_base.row, "warm-base"), (warm_row, "warm")):
            row.note(costs[key].note())
        cold_base.row.ratio = warm_base.row.ratio = False
        return Table("9. sha256-pinned mount", (
            "The deflated pyz mounted with `-o sha256=HEX` (its digest) against the same archive "
            "unmounted, alternating: cold as in 1 (fresh mounts), warm as in 2 (both mounted at once, "
            f"{self.pairs} pairs, q1–q3 beside the median ratio; 'met' when q3 is at or below the issue 12 target)."),
            None, [cold_base.row, cold_row, warm_base.row, warm_row], "the unpinned mount")

    def scenario_bytecode_env(self) -> Table:
        log(f"\n== 10. PYTHONDONTWRITEBYTECODE on a kept mount ({self.runs_warm} runs each)")
        base = self.extracted(self.runs_warm)
        pyzfs = next((t for t in self.tools if t.name == "pyzfs"), None)
        names = ("PYTHONDONTWRITEBYTECODE=1, every start", "unset, first start on the mount",
                 "unset, later starts")
        rows = [Row(n) for n in names]
        try:
            archive = usable(pyzfs) and self.art.nopyc if pyzfs else None
            if archive is None:
                raise Unavailable("pyzfs not selected")
            set_env = dict(ENV, PYTHONDONTWRITEBYTECODE="1")
            costs = [StartCost() for _ in rows]
            with mounted(pyzfs, archive, "__main__.py") as m:
                def start(env, cost):
                    before = cost.snapshot(self.pyzfs, m.path)
                    r = run([PYTHON, m.path], APP_TIMEOUT, env=env)
                    check_app(r)
                    cost.add(r, before, cost.snapshot(self.pyzfs, m.path))
                    return r.seconds
                measure(rows[0], self.runs_warm, lambda i: start(set_env, costs[0]), base)
                measure(rows[1], 1, lambda i: start(ENV, costs[1]), base)
                measure(rows[2], self.runs_warm, lambda i: start(ENV, costs[2]), base)
            for row, cost in zip(rows, costs):
                row.note(cost.note())
        except Unavailable as e:
            for row in rows:
                row.skipped = str(e)
        except BenchError as e:
            rows[0].error = rows[0].error or str(e)
        return Table("10. PYTHONDONTWRITEBYTECODE on a kept mount", (
            "One `pyzfs mount` of the workload as a deflated zipapp without pycs (the in-memory "
            "__pycache__ takes the bytecode Python writes): starts with PYTHONDONTWRITEBYTECODE=1 "
            "in the app's environment (nothing is written, every start compiles every module), then "
            "with it unset (the first start compiles and writes, later ones load the bytecode)."),
            base.row, rows)

    # The run --------------------------------------------------------------------------------
    def run_all(self, only: set[str]) -> list[Table]:
        self.only = only
        plan = [("cold", self.scenario_cold), ("warm", self.scenario_warm),
                ("concurrent", self.scenario_concurrent), ("many", self.scenario_many),
                ("big", self.scenario_big)]
        for name, fn in plan:
            if name in only:
                self.tables.append(fn())
        if only & {"run", "optimize"}:
            self.tables.append(self.scenario_run_optimize())
        for name, fn in (("run-warm", self.scenario_run_warm), ("bundled", self.scenario_bundled),
                         ("pinned", self.scenario_pinned), ("bytecode-env", self.scenario_bytecode_env)):
            if name in only:
                try:
                    self.tables.append(fn())
                finally:
                    self.end_warm_servers()
        return self.tables


def disk_used() -> int:
    """Used bytes of the file systems of /tmp, $TMPDIR and the work directory (each counted once)."""
    seen, used = set(), 0
    for p in ("/tmp", os.environ.get("TMPDIR") or "/tmp", str(WORK)):
        with contextlib.suppress(OSError):
            st = os.stat(p)
            if st.st_dev in seen:
                continue
            seen.add(st.st_dev)
            v = os.statvfs(p)
            used += (v.f_blocks - v.f_bfree) * v.f_frsize
    return used


def server_files(pid: int | None, archive: Path) -> list[tuple[str, int]]:
    """Regular files a server holds open other than its archive (a decompression cache on disk,
    usually unlinked): (name, bytes allocated)."""
    if pid is None:
        return []
    archive_st, found = archive.stat(), []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                st = os.stat(f"/proc/{pid}/fd/{fd}")
                if not stat.S_ISREG(st.st_mode) or os.path.samestat(st, archive_st):
                    continue
                if st.st_blocks * 512 > 0:
                    found.append((os.readlink(f"/proc/{pid}/fd/{fd}"), st.st_blocks * 512))
    return found


def snapshot_pyzfs(binary: Path) -> Path:
    """A copy of the binary under test, so a rebuild during the run changes nothing measured."""
    if not binary.is_file():
        sys.exit(f"bench: {binary} not found; run `make build` (or pass --pyzfs PATH)")
    dest = WORK / "bin" / "pyzfs"
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name("pyzfs.partial")
    shutil.copy2(binary, partial)
    os.replace(partial, dest)
    return dest


def tool_version(t: Tool) -> str:
    if t.missing:
        return ""
    if t.name == "pyzfs":
        r = run([t.command, "--version"], 30)
        return r.out.strip()
    if t.package and shutil.which("dpkg-query"):
        r = run(["dpkg-query", "-W", "-f", "${Version}", t.package], 30)
        if r.ok:
            return r.out.strip()
    r = run([t.command, "--version"], 30)
    first = (r.out or r.err).strip().splitlines()
    return first[0].split(":")[-1].strip() if first else ""


def machine_report(bench: Bench, started: datetime.datetime) -> str:
    def first(path, key):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return "?"

    mem = first("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / 2**20:.1f} GiB" if mem != "?" else "?"
    commit = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], 30).out.strip() or "?"
    dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], 30).out.strip()
    pyzfs_version = run([bench.pyzfs, "--version"], 30).out.strip()
    peers = ", ".join(f"{t.name} {t.version}".strip() for t in bench.tools
                      if t.name != "pyzfs" and not t.missing)
    extractors = []
    for name in bench.extractors:
        exe = WORK / "venv" / "bin" / name
        words = run([exe, "--version"], 60).out.split() if exe.exists() else []
        if words:
            extractors.append(f"{name} {words[-1]}")
    original = os.environ.get("PYTHONDONTWRITEBYTECODE")
    was = "was not set" if original is None else f"was set to {original}"
    tree_files = sum(1 for _ in files_under(ARTIFACTS / "tree")) if (ARTIFACTS / "tree").exists() else 0
    lines = [
        f"- date: {started.isoformat(timespec='minutes')}",
        f"- machine: {len(os.sched_getaffinity(0))} CPUs ({first('/proc/cpuinfo', 'model name')}), "
        f"{ram} RAM, kernel {platform.release()}",
        f"- python3: {PYTHON} ({platform.python_version()}); PYTHONDONTWRITEBYTECODE removed from every "
        f"python3's environment (it {was} in the calling one)",
        # --version names the commit the binary was built from; HEAD only when that differs.
        f"- pyzfs: {pyzfs_version}" + ("" if f"(commit {commit})" in pyzfs_version else f" at commit {commit}")
        + (" + uncommitted changes" if dirty else ""),
        f"- peers: {', '.join(filter(None, [peers] + extractors)) or 'none'}",
        f"- workload: {', '.join(DISTRIBUTIONS)} from this python3's site-packages, timestamp pycs "
        f"({tree_files} files); {bench.art.sizes()}",
        f"- runs: {bench.runs_cold} cold, {bench.runs_warm} warm, {bench.runs_big} for the "
        f"{BIG_SIZE >> 20} MiB member",
        "- ratios: every run of a row follows a run of its scenario's baseline, and the ratio is the "
        "median of those pairs' ratios (load from other processes then largely cancels out); notes "
        "give the baseline's median in a row's pairs, the baseline row's median covers all its runs",
    ]
    return "\n".join(lines) + "\n"


RECORD_HEADER = """\
# Benchmarks

`make bench` builds pyzfs and runs `Tests/bench/bench.py`, which builds its workload once under
`.build/bench` (git-ignored) and prints one table per scenario. `make bench BENCH_ARGS="--quick"`
runs 3 times each and leaves out scenarios 4 and 5; `BENCH_ARGS="--record"` appends the report as
a new dated section below. Other options: `--runs N`, `--only cold,warm,concurrent,many,big,run,optimize,run-warm,bundled,pinned,bytecode-env`,
`--tools pyzfs,fuse-zip,mount-zip,archivemount,squashfuse,shiv,pex`, `--rebuild`. It needs root
(FUSE mounts; `apt-get install` of missing peers); mount-zip is used only if a `mount-zip` is on PATH.
The issue 12 scenarios are `--only run-warm,bundled,pinned,bytecode-env` (their rows whose
target is within 5 % of 1.0 run 15 alternating pairs, 5 with `--quick`, and show q1–q3).

The app imports numpy, pydantic (pydantic_core) and orjson, copied from the machine's
site-packages with their mtimes and byte-compiled as pip does (timestamp pycs), run with the stock
`python3` and `PYTHONDONTWRITEBYTECODE` unset. The extracted directory is the baseline.

1. **cold**: a fresh mount and one `python3 MOUNT` (mount time in the notes); shiv/pex first runs.
2. **warm**: later runs on the same mount; shiv/pex with a filled cache.
3. **concurrent**: 16 starts at once on a fresh mount of the deflated archive.
4. **many**: mount of a 100,000-entry zip until its last entry can be stat'ed.
5. **big**: one 512 MiB deflated zip64 member: `dd`, 1,000 random 4 KiB reads, peak RSS, disk use.
6. **run / optimize**: `pyzfs run` overhead and `pyzfs optimize` output (when pyzfs has them).
7. **run-warm**: `pyzfs run` of the deflated pyz, first start (after its warm mounts are detached) and
   later starts on the kept warm server (`PYZFS_KEEP`), and with `PYZFS_KEEP=0`.
8. **bundled**: the shiv and the pex (no pycs) and their `pyzfs optimize` outputs under `pyzfs run`
   against the tool's own first start (empty cache) and warm start.
9. **pinned**: a `-o sha256=HEX` mount, cold and warm, against the unpinned mount.
10. **bytecode-env**: one kept mount of a zipapp without pycs, PYTHONDONTWRITEBYTECODE set, then unset.

Start rows of 7-10 also give the app's CPU seconds (rusage), the server's (/proc/PID/stat of the
pid `pyzfs stats` names) and `pyzfs stats` counters per start: figures that do not move with the load.

"Cold" means a fresh mount of an archive that is in the page cache: caches are never dropped.
Every figure is a median, and comparisons are ratios to a baseline measured in the same run,
because the machines are noisy (shared VMs): compare ratios across reports rather than seconds.
"""


def record(report: str, started: datetime.datetime):
    if not RECORD_FILE.exists():
        RECORD_FILE.write_text(RECORD_HEADER)
    text = RECORD_FILE.read_text()
    with open(RECORD_FILE, "a") as f:
        f.write(("" if text.endswith("\n\n") else "\n") + f"## {started.strftime('%Y-%m-%d %H:%M %Z')}\n\n"
                + report)
    log(f"\nrecorded in {RECORD_FILE.relative_to(REPO)}")


def leftover_mounts() -> list[tuple[str, str]]:
    """Mounts this harness made (mount point or source under the work directory) still present."""
    work = str(WORK) + "/"
    return [(point, source) for _, point, _, source in mount_table()
            if point.startswith(work) or source.startswith(work)]


def cleanup_leftovers() -> list[str]:
    left = []
    for point, source in leftover_mounts():
        left.append(point)
        for argv in (["fusermount3", "-u", point], ["fusermount3", "-uz", point], ["umount", "-l", point]):
            if not is_mounted(Path(point)):
                break
            run(argv, UNMOUNT_TIMEOUT)
    return left


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int,
                    help="runs per row (default 9 warm, 7 cold, 3 for the 512 MiB member)")
    ap.add_argument("--only", help=f"comma-separated scenarios: {','.join(SCENARIOS)}")
    ap.add_argument("--tools", help=f"comma-separated tools: {','.join(TOOL_NAMES)}")
    ap.add_argument("--quick", action="store_true",
                    help="3 runs; leave out 'many' and 'big' unless named in --only")
    ap.add_argument("--rebuild", action="store_true", help="build the workload again")
    ap.add_argument("--record", action="store_true",
                    help=f"append the report to {RECORD_FILE.relative_to(REPO)}")
    ap.add_argument("--pyzfs", default=str(REPO / ".build" / "release" / "pyzfs"), help="the pyzfs binary")
    args = ap.parse_args(argv)
    for option, allowed in (("only", SCENARIOS), ("tools", TOOL_NAMES)):
        value = getattr(args, option)
        bad = [v for v in (value.split(",") if value else []) if v not in allowed]
        if bad:
            ap.error(f"--{option}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    if args.runs is not None and args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


def interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv=None) -> int:
    args = parse_args(argv)
    if sys.version_info < (3, 11):
        sys.exit("bench: needs Python 3.11 or later")
    signal.signal(signal.SIGTERM, interrupt)    # unmount in the finally blocks, as for Ctrl-C
    signal.signal(signal.SIGHUP, interrupt)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS) - (HEAVY if args.quick else set())
    started, clock = datetime.datetime.now().astimezone(), time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    stale = cleanup_leftovers()
    if stale:
        log(f"unmounted mounts left by an earlier run: {', '.join(stale)}")

    bench = Bench(args)
    log(f"bench: work directory {WORK}; python3 = {PYTHON}; PYTHONDONTWRITEBYTECODE removed "
        "from every python3's environment")
    bench.prepare_tools()
    for t in bench.tools:
        log(f"  {t.name}: " + (f"skipped: {t.missing}" if t.missing else f"{t.command} {t.version}"))
    interrupted = False
    try:
        bench.run_all(only)
    except KeyboardInterrupt:
        interrupted = True
        log("\ninterrupted: unmounting and reporting what was measured")
    finally:
        for mnt in list(ACTIVE):     # normally empty: every mount is unmounted in its own finally
            tool = next((t for t in bench.tools if mnt.name.startswith(t.name)), None)
            with contextlib.suppress(BenchError):
                if tool:
                    unmount(tool, mnt)
        with contextlib.suppress(BenchError):
            bench.end_warm_servers()
        left = cleanup_leftovers()

    report = machine_report(bench, started) + "\n" + "\n".join(t.markdown() for t in bench.tables)
    if PROBLEMS:
        report += "\nProblems seen during the run:\n\n" + "".join(f"- {p}\n" for p in PROBLEMS)
    elapsed = time.monotonic() - clock
    log(f"\n## pyzfs benchmark, {started.strftime('%Y-%m-%d %H:%M %Z')}\n\n{report}")
    built = f"; built: {', '.join(bench.art.built)}" if bench.art.built else ""
    log(f"bench took {elapsed / 60:.1f} min{built}")
    (WORK / "last-report.md").write_text(report)
    if args.record and not interrupted:
        record(report, started)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    if left:
        log(f"ERROR: mounts were left behind and have been unmounted: {', '.join(left)}")
        return 1
    still = [p for p, _ in leftover_mounts()]
    if still:
        log(f"ERROR: still mounted: {', '.join(still)}")
        return 1
    log("nothing left mounted under " + str(WORK))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
