#!/usr/bin/env python3
"""Start-up cost of the two entry points: `make build`'s launcher (.venv/bin/ociruntime, `#!python -IS`)
and the command `pip install .` installs (a small static program that execs the venv's python -I -S;
csrc/entry/main.c, ociruntime/launcher.py), timed on `ociruntime state <missing id>` (the cheapest
command: start-up is all of it). Measures and prints; asserts nothing.

    python3 bench/entry.py                       # makes a fresh venv with `pip install .` (~30 s), removes it
    python3 bench/entry.py --pip-venv /some/venv # an existing pip install
    python3 bench/entry.py --reps 400 --entry 'old=/some/venv/bin/ociruntime-sh'   # more entries, same turns
    python3 bench/entry.py --json bench/results/entry.json   # also write the medians (with machine and load)

Alternation: the entry points take turns every repetition (order rotating), after warm-up rounds. Each
sample is the wall time of fork+exec+exit, waited for with a pidfd (no polling sleep)."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argv):
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                                           (os.POSIX_SPAWN_DUP2, devnull, 2)])
        _, status, ru = os.wait4(pid, 0)
        dt = time.perf_counter_ns() - t0
    finally:
        os.close(devnull)
    return dt / 1e6, (ru.ru_utime + ru.ru_stime) * 1e3, os.waitstatus_to_exitcode(status)


def pip_venv(where, python):
    venv = os.path.join(where, "venv")
    subprocess.run([python, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", REPO], check=True,
                   stderr=subprocess.DEVNULL)
    return venv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make-build", default=os.path.join(REPO, ".venv", "bin", "ociruntime"))
    ap.add_argument("--pip-venv", help="a venv where `pip install .` was run (default: make one)")
    ap.add_argument("--python", default=os.path.realpath(os.path.join(REPO, ".venv", "bin", "python")),
                    help="the interpreter of the new venv (default: make build's, so both run the same one)")
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--entry", action="append", default=[], metavar="NAME=PATH",
                    help="one more entry point in the alternation (e.g. an older build of the command)")
    ap.add_argument("--json", help="write the results (medians, machine, load) to this file")
    ap.add_argument("--note", default="", help="recorded in --json (what else ran on the machine, ...)")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="also count instructions (valgrind --tool=callgrind, N runs each, median): stable on a "
                         "busy machine, but user space only (an exec's kernel work is not counted)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ocibench-entry-")
    try:
        venv = a.pip_venv or pip_venv(tmp, a.python)
        root = os.path.join(tmp, "root")
        os.mkdir(root, 0o700)
        entries = {"make build": a.make_build, "pip install": os.path.join(venv, "bin", "ociruntime")}
        entries.update(e.split("=", 1) for e in a.entry)
        for name, path in entries.items():
            with open(path, "rb") as f:
                head = f.read(256)
            what = f"ELF, {os.path.getsize(path)} bytes" if head[:4] == b"\x7fELF" else \
                head.split(b"\n", 1)[0].decode(errors="replace")
            print(f"{name:12} {path}: {what}")
        samples = {n: [] for n in entries}
        cpu = {n: [] for n in entries}
        names = list(entries)
        for i in range(a.warmup + a.reps):
            order = names[i % len(names):] + names[:i % len(names)]
            for n in order:
                ms, cpu_ms, rc = timed([entries[n], "--root", root, "state", "nosuch"])
                if rc != 1:
                    raise SystemExit(f"{n}: state of a missing id exited {rc}, not 1")
                if i >= a.warmup:
                    samples[n].append(ms)
                    cpu[n].append(cpu_ms)
        print(f"\n`ociruntime state nosuch`, {a.reps} alternating runs each (ms; cpu = user+sys of the "
              f"command, less sensitive to a busy machine than wall time):")
        print(f"{'entry':12} {'wall med':>9} {'p10':>7} {'p90':>7} {'ratio':>6}   {'cpu med':>8} {'p10':>7} {'ratio':>6}")
        wb, cb = statistics.median(samples["make build"]), statistics.median(cpu["make build"])
        for n in entries:
            s, c = sorted(samples[n]), sorted(cpu[n])
            wm, cm = statistics.median(s), statistics.median(c)
            print(f"{n:12} {wm:9.2f} {s[len(s) // 10]:7.2f} {s[len(s) * 9 // 10]:7.2f} {wm / wb:6.3f}   "
                  f"{cm:8.2f} {c[len(c) // 10]:7.2f} {cm / cb:6.3f}")
        load = open("/proc/loadavg").read().split()[:3]
        print(f"load average: {' '.join(load)}")
        instr = {}
        if a.callgrind:
            instr = {n: instructions(entries[n], root, a.callgrind) for n in entries}
            print(f"\ninstructions (user space, callgrind, median of {a.callgrind}; the last image of each "
                  f"process: a program that execs another is not counted):")
            for n in entries:
                print(f"{n:12} {instr[n]:12,d} {instr[n] / instr['make build']:6.3f}")
        if a.json:
            write_json(a.json, a, entries, samples, cpu, load, instr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def instructions(path, root, n):
    """Median over n runs of the instructions callgrind counts (every process of the command)."""
    import re
    counts = []
    for _ in range(n):
        r = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes", "--callgrind-out-file=/dev/null",
                            path, "--root", root, "state", "nosuch"], capture_output=True, text=True, timeout=300)
        counts.append(sum(int(c.replace(",", "")) for c in re.findall(r"Collected : ([0-9,]+)", r.stderr)))
    return int(statistics.median(counts))


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": os.uname().release, "python": sys.version.split()[0]}


def write_json(path, a, entries, samples, cpu, load, instr):
    import json
    out = {"what": "`ociruntime --root <empty> state nosuch`, alternating runs, wall and cpu (user+sys) ms",
           "note": a.note,
           "reps": a.reps, "warmup": a.warmup, "machine": machine(), "loadavg_at_end": load,
           "entries": {n: {"path": p, "wall_median_ms": round(statistics.median(samples[n]), 3),
                           "cpu_median_ms": round(statistics.median(cpu[n]), 3),
                           **({"instructions_median": instr[n]} if instr else {})} for n, p in entries.items()}}
    if instr:
        out["instructions"] = f"valgrind --tool=callgrind, median of {a.callgrind} runs, user space only"
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.rename(path + ".tmp", path)


if __name__ == "__main__":
    main()
