#!/usr/bin/env python3
"""checkpoint / restore wall time: ociruntime vs runc, both with the same CRIU (`make criu`'s build).

    sudo .venv/bin/python bench/criu.py [--reps N] [--criu PATH] [--out DIR]

One run: a busybox counter container per runtime (stdio on pipes, as containerd and podman give them), then
N rounds of `checkpoint` (the container goes away) + `restore -d` (it comes back), the runtimes taking turns,
the order rotated every round, after one unrecorded warm-up round. Wall time of each command as the caller
sees it (the CLI process from exec to exit). Prints median / min / max per runtime and the ratio of each
median to runc's; writes results/criu.json. Measures, asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
COUNTER = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"


def bundle(base: Path, rootfs: str) -> str:
    from _bundle import write_bundle
    return write_bundle(str(base), ["sh", "-c", COUNTER], rootfs=rootfs, readonly=True)


class Pipes:
    def __init__(self):
        self.r = [os.pipe() for _ in range(3)]   # (read, write) each: stdin, stdout, stderr

    def child(self):
        return self.r[0][0], self.r[1][1], self.r[2][1]

    def close_child(self):
        for fd in self.child():
            os.close(fd)
        # never closed twice (the numbers get reused by the next pipes)
        self.r = [(-1, self.r[0][1]), (self.r[1][0], -1), (self.r[2][0], -1)]

    def last_value(self) -> int:
        fd = self.r[1][0]
        os.set_blocking(fd, False)
        data = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        vals = [int(x) for x in data.split()[:-1] if x.isdigit()]
        return vals[-1] if vals else -1

    def close(self):
        for a, b in self.r:
            for fd in (a, b):
                if fd >= 0:
                    os.close(fd)
        self.r = [(-1, -1)] * 3


def timed(argv, pipes=None):
    fds = pipes.child() if pipes else (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.PIPE)
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=fds[0], stdout=fds[1], stderr=fds[2])
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}: {p.stderr!r}")
    return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--criu", default=os.environ.get("OCIRUNTIME_TEST_CRIU", "/var/tmp/ociruntime-criu/current/criu"))
    ap.add_argument("--runtime", action="append", metavar="NAME=PATH")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench/criu.py needs root")
    if not os.access(a.criu, os.X_OK):
        raise SystemExit(f"no CRIU at {a.criu}: run `make criu`")
    runtimes = dict(r.split("=", 1) for r in a.runtime) if a.runtime else {
        "ociruntime": str(REPO / ".venv" / "bin" / "ociruntime"), "runc": "/usr/sbin/runc"}
    from ociruntime.demo import busybox_rootfs
    base = Path(tempfile.mkdtemp(prefix="ocibench-criu-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    samples = {n: {"checkpoint": [], "restore": []} for n in runtimes}
    live = {}
    try:
        rootfs = str(base / "rootfs")
        busybox_rootfs(rootfs)
        for n, path in runtimes.items():
            b = bundle(base / f"bundle-{n}", rootfs)
            root = str(base / f"root-{n}")
            cid = f"bench-{n}-{os.getpid()}"
            pipes = Pipes()
            timed([path, "--root", root, "--criu", a.criu, "run", "-d", "--bundle", b, cid], pipes)
            pipes.close_child()
            live[n] = (path, root, b, cid, pipes)
        time.sleep(0.5)
        names = list(runtimes)
        for rnd in range(a.reps + 1):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for n in order:
                path, root, b, cid, pipes = live[n]
                img = str(base / f"img-{n}-{rnd}")
                g = [path, "--root", root, "--criu", a.criu]
                t_ck = timed(g + ["checkpoint", "--image-path", img, cid])
                before = pipes.last_value()
                pipes.close()
                pipes = Pipes()
                t_rs = timed(g + ["restore", "-d", "--image-path", img, "--bundle", b, cid], pipes)
                pipes.close_child()
                live[n] = (path, root, b, cid, pipes)
                shutil.rmtree(img, ignore_errors=True)
                if rnd:
                    samples[n]["checkpoint"].append(t_ck)
                    samples[n]["restore"].append(t_rs)
                time.sleep(0.3)
                after = pipes.last_value()
                if after < before:
                    raise SystemExit(f"{n}: the counter did not go on ({before} -> {after})")
    finally:
        for n, (path, root, b, cid, pipes) in live.items():
            subprocess.run([path, "--root", root, "delete", "--force", cid], capture_output=True)
            pipes.close()
        shutil.rmtree(base, ignore_errors=True)
    ver = subprocess.run([a.criu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"checkpoint/restore wall time, {a.reps} rounds, {ver} (ms: median [min-max])")
    base_n = "runc" if "runc" in samples else names[0]
    result = {"criu": ver, "reps": a.reps, "samples": samples, "ratio": {}}
    for op in ("checkpoint", "restore"):
        ref = statistics.median(samples[base_n][op])
        for n in names:
            s = samples[n][op]
            med = statistics.median(s)
            ratio = med / ref
            result["ratio"].setdefault(n, {})[op] = round(ratio, 3)
            print(f"  {op:<10} {n:<11} {med * 1000:7.1f} [{min(s) * 1000:.1f}-{max(s) * 1000:.1f}]  "
                  f"x{ratio:.2f} of {base_n}")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "criu.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
