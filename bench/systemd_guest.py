"""`--systemd-cgroup run` of ociruntime vs runc 1.1.5 in the same systemd guest (not part of make test).

Boots one qemu (TCG) guest whose PID 1 is the host's systemd (tests/vm/qemu.py, ``init="systemd"``,
pure cgroup v2 unless ``--cgroup v1``) and, inside it, times ``RUNTIME --systemd-cgroup run`` of
``/bin/true`` (and, as the baseline, the same run on the cgroupfs driver) (each run a fresh ``system.slice:bench:<n>`` scope with a memory and a pids limit:
StartTransientUnit, wait for the job, the container, StopUnit on delete), alternating the runtimes
every repetition. Prints median / min / max per runtime and the ratio of ociruntime's median to
runc's; writes bench/results/systemd-guest.json. TCG emulation makes every absolute number several
times slower than on hardware: only the ratio means something.

    sudo .venv/bin/python bench/systemd_guest.py [--reps 15] [--cgroup v2|v1]
"""
import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "vm"))
import qemu  # noqa: E402

GUEST = r'''
import json, os, subprocess, sys, tempfile, time
sys.path.insert(0, REPO)
from ociruntime.demo import busybox_rootfs
from ociruntime.misc import default_spec
runtimes = {"ociruntime": OCI, "runc": "/usr/sbin/runc"}
modes = ("systemd", "cgroupfs")
base = tempfile.mkdtemp(prefix="sdbench.", dir="/tmp")
busybox_rootfs(base + "/rootfs")
samples = {f"{k} {m}": [] for k in runtimes for m in modes}
failures = {k: [] for k in samples}
n = 0
for rep in range(WARMUP + REPS):
    order = [(k, m) for k in runtimes for m in modes]
    if rep % 2:
        order.reverse()
    for name, mode in order:
        n += 1
        b = f"{base}/b{n}"
        os.mkdir(b)
        spec = default_spec()
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["true"]
        spec["root"]["path"] = base + "/rootfs"
        spec["hostname"] = f"h{n}"
        spec["linux"]["cgroupsPath"] = f"system.slice:bench:{name}{n}" if mode == "systemd" else f"/bench/{name}{n}"
        spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 100}}
        json.dump(spec, open(b + "/config.json", "w"))
        root = f"{base}/root-{name}"
        t0 = time.monotonic()
        flag = ["--systemd-cgroup"] if mode == "systemd" else []
        p = subprocess.run([runtimes[name], "--root", root, *flag, "run", "--bundle", b, f"c{n}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.monotonic() - t0
        if p.returncode != 0:  # counted and reported, not timed
            failures[f"{name} {mode}"].append(p.stderr.decode()[-500:])
            subprocess.run([runtimes[name], "--root", root, *flag, "delete", "--force", f"c{n}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            continue
        if rep >= WARMUP:
            samples[f"{name} {mode}"].append(dt)
print(json.dumps({"samples": samples, "failures": failures}))
'''


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cgroup", default="v2", choices=("v2", "v1"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "systemd-guest.json"))
    a = ap.parse_args(argv)
    oci = os.path.join(REPO, ".venv", "bin", "ociruntime")
    python = os.path.join(REPO, ".venv", "bin", "python")
    g = qemu.Guest.start(init="systemd", cgroup=a.cgroup, keep=[REPO])
    try:
        script = GUEST.replace("REPO", repr(REPO)).replace("OCI", repr(oci)).replace(
            "WARMUP", str(a.warmup)).replace("REPS", str(a.reps))
        path = g.host_path("bench.py")
        with open(path, "w") as f:
            f.write(script)
        r = g.sh(f"{python} {g.guest_path('bench.py')}", timeout=3600)
        if r.rc != 0:
            sys.exit(f"guest bench failed (rc={r.rc}):\n{r.out[-2000:]}\n{r.err[-3000:]}")
        res = json.loads(r.out.strip().splitlines()[-1])
        samples, failures = res["samples"], res["failures"]
    finally:
        g.stop()
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"run /bin/true in a systemd guest ({a.cgroup}, qemu TCG), {a.reps} reps each:")
    for k, v in samples.items():
        print(f"  {k:20s} median {med[k] * 1000:7.0f} ms   min {min(v) * 1000:7.0f}   max {max(v) * 1000:7.0f}")
    for k, v in failures.items():
        if v:
            print(f"  {k}: {len(v)} failed run(s), last: {v[-1].strip().splitlines()[-1]}")
    ratio = med["ociruntime systemd"] / med["runc systemd"]
    base = med["ociruntime cgroupfs"] / med["runc cgroupfs"]
    print(f"  ratio ociruntime/runc (median), --systemd-cgroup: {ratio:.2f}   (cgroupfs driver, same guest: {base:.2f})")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"cgroup": a.cgroup, "reps": a.reps, "samples": samples, "median": med, "ratio": ratio, "ratio_cgroupfs": base,
                   "failures": failures}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
