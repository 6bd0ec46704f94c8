#!/usr/bin/env python3
"""CPU time (user + system, of the runtime and its waited-for children) of one `create`, per runtime,
alternating the runtimes every round: less sensitive to a loaded machine than wall time. Used to show that
tracing off costs nothing (README "Tracing a lifecycle call"): give the same build twice for the noise
floor (A/A), the build before the change, this one, and this one with $OCIRUNTIME_TRACE set.

    sudo .venv/bin/python bench/cpu_create.py [--reps 60] [--trace-dir DIR] NAME=PATH [NAME=PATH ...]

A NAME ending in "+trace" runs PATH with OCIRUNTIME_TRACE=DIR/<round>.json. Standard library only.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runtimes", nargs="+", metavar="NAME=PATH")
    ap.add_argument("--reps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("cpu_create: run as root (it creates containers)")
    rts = [tuple(r.split("=", 1)) for r in a.runtimes]
    work = tempfile.mkdtemp(prefix="ocicpu-")
    try:
        from _bundle import write_bundle
        bundle = write_bundle(os.path.join(work, "bundle"), ["true"])
        cpu = {n: [] for n, _ in rts}
        for i in range(a.warmup + a.reps):
            order = rts if i % 2 else rts[::-1]
            for name, path in order:
                root = os.path.join(work, "root-" + name.replace("+", "_"))
                os.makedirs(root, exist_ok=True)
                env = dict(os.environ)
                if name.endswith("+trace"):
                    env["OCIRUNTIME_TRACE"] = os.path.join(work, f"trace-{i}.json")
                cid = f"cpu{i}"
                pid = os.posix_spawn(path, [path, "--root", root, "create", "--bundle", bundle, cid], env)
                _, status, ru = os.wait4(pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise SystemExit(f"{name}: create failed")
                subprocess.run([path, "--root", root, "delete", "--force", cid], check=True, env=os.environ)
                if i >= a.warmup:
                    cpu[name].append((ru.ru_utime + ru.ru_stime) * 1000)
        for name, _ in rts:
            v = cpu[name]
            print(f"{name:16} create CPU ms: median {statistics.median(v):6.2f}  mean {statistics.mean(v):6.2f}  "
                  f"n {len(v)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
