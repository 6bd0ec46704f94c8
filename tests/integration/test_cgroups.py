"""cgroup v1 on this machine (hybrid: v1 controllers + a unified hierarchy with hugetlb only).

* Differential against runc: the same config under runc and ociruntime (each with its own --root
  and its own absolute cgroupsPath "/<container id>"); the host's cgroup files are read after
  ``create`` and after ``update`` and compared. Where the reference (runc 1.1.5 here) predates a
  setting that runc 1.4 applies (cpu burst/idle, pids limit 0, kernelTCP), the difference is listed
  per case and both values are checked.
* Limits bite: a memory hog is OOM-killed, a fork bomb stops at pids.max.
* pause/resume, ps, events (--stats and the stream with an OOM event), update, kill --all,
  delete --force of a stopped container's leftovers, the eBPF device filter on the unified hierarchy.

Every cgroup directory is named after a container id of the test: the plugin's guard removes
whatever is left (and fails the test); the ``cg_cleanup`` fixture also removes them explicitly,
on every hierarchy, even when the test fails.
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ociruntime.testing.runtime import remove_cgroup_dir

pytestmark = [pytest.mark.oci_root]

CG = "/sys/fs/cgroup"


def hybrid_v1():
    return os.path.isdir(f"{CG}/memory") and os.path.isdir(f"{CG}/devices")


if not hybrid_v1():  # pragma: no cover
    pytestmark.append(pytest.mark.skip(reason="needs cgroup v1 controllers (tests/vm covers v2)"))


@pytest.fixture
def cg_cleanup():
    """Collects cgroup names (absolute cgroupsPath without the slash) and removes them on every
    hierarchy after the test, killing what is left inside (only ever our test cgroups)."""
    names = []
    yield names
    for name in names:
        for h in os.listdir(CG):
            d = os.path.join(CG, h, name)
            if os.path.isdir(d):
                remove_cgroup_dir(d)


def cg_dirs(name):
    return [os.path.join(CG, h, name) for h in sorted(os.listdir(CG)) if os.path.isdir(os.path.join(CG, h, name))]


# The files a differential case compares: per hierarchy, the writable knobs of linux.resources.
KNOBS = {
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
               "memory.kmem.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes", "memory.swappiness",
               "memory.oom_control", "memory.use_hierarchy"],
    "cpu": ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_burst_us", "cpu.rt_period_us",
            "cpu.rt_runtime_us", "cpu.idle"],
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "pids": ["pids.max"],
    "blkio": ["blkio.weight", "blkio.weight_device", "blkio.leaf_weight", "blkio.leaf_weight_device",
              "blkio.bfq.weight", "blkio.bfq.weight_device", "blkio.throttle.read_bps_device",
              "blkio.throttle.write_bps_device", "blkio.throttle.read_iops_device",
              "blkio.throttle.write_iops_device"],
    "devices": ["devices.list"],
    "freezer": ["freezer.state"],
}


def snapshot(name):
    out = {}
    for h, names in KNOBS.items():
        for n in names:
            p = os.path.join(CG, h, name, n)
            try:
                with open(p) as f:
                    v = f.read().strip()
            except OSError as e:
                v = f"<{e.strerror}>"
            if n == "memory.oom_control":
                v = v.splitlines()[0]  # oom_kill_disable (the counters below it are live)
            out[f"{h}/{n}"] = v
    out["dirs"] = sorted(os.path.basename(os.path.dirname(d)) for d in cg_dirs(name))
    return out


def _blkio_weight_files():
    """Host fact: the blkio weight files a container's cgroup gets here (CFQ-era blkio.weight*, BFQ's
    blkio.bfq.weight*, or none: only throttling, e.g. with mq-deadline/kyber). They are not on the
    root cgroup, so a probe cgroup of our own is made and removed."""
    probe = os.path.join(CG, "blkio", f"ocit-probe-{uuid.uuid4().hex[:10]}")
    try:
        os.mkdir(probe)
    except OSError:
        return set()
    try:
        return {n for n in os.listdir(probe) if n.startswith("blkio.") and "weight" in n}
    finally:
        os.rmdir(probe)


BLKIO_WEIGHT_FILES = _blkio_weight_files() if hybrid_v1() else set()
HAS_BLKIO_WEIGHT = bool(BLKIO_WEIGHT_FILES & {"blkio.weight", "blkio.bfq.weight"})
HAS_BLKIO_LEAF_WEIGHT = "blkio.leaf_weight" in BLKIO_WEIGHT_FILES
NO_WEIGHT = "this kernel has no blkio weight (BFQ not available)"


def _v1_controllers():
    """Host fact: the controllers mounted as cgroup v1 hierarchies (e.g. no hugetlb/net_cls/net_prio/rdma
    where the kernel lacks them or leaves them to the unified hierarchy)."""
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            post = line.partition(" - ")[2].split()
            if len(post) >= 3 and post[0] == "cgroup":
                out.update(post[2].split(","))
    return out


def _huge_page_sizes():
    """Host fact: the huge page sizes the kernel has, in hugetlb's names ("2MB", "1GB", "64KB")."""
    out = set()
    base = "/sys/kernel/mm/hugepages"
    for n in os.listdir(base) if os.path.isdir(base) else ():
        kb = int(n[len("hugepages-"):-2])
        out.add(f"{kb >> 20}GB" if kb % (1 << 20) == 0 else f"{kb >> 10}MB" if kb % 1024 == 0 else f"{kb}KB")
    return out


V1_CONTROLLERS = _v1_controllers() if hybrid_v1() else set()
HUGE_PAGE_SIZES = _huge_page_sizes()
# RT group scheduling (CONFIG_RT_GROUP_SCHED, not disabled at boot): the cpu hierarchy has cpu.rt_* files
HAS_RT_GROUP_SCHED = any(os.path.exists(os.path.join(CG, h, "cpu.rt_runtime_us")) for h in os.listdir(CG)
                         if "cpu" in h.split(","))
NO_RT = "this kernel has no real-time group scheduling (no cpu.rt_runtime_us"


def _no_v1(ctrl):
    return f"cannot set {ctrl} limit: this host has no {ctrl} cgroup v1 hierarchy ("


# the flag an update case's refused field is named with
UPDATE_FLAG = {"flags-blkio": "--blkio-weight", "flags-cpu-rt": "--cpu-rt-runtime", "resources-json": "--resources"}


def host_lacks(case):
    """The runtime's clear error a case must fail with on this host (runc fails it too, with a bare
    ENOENT of the file, or "cannot set <controller> limit"), or None where the host has what the case
    sets."""
    if case == "cpu-rt" and not HAS_RT_GROUP_SCHED:
        return "/linux/resources/cpu/realtimeRuntime: " + NO_RT
    if case == "flags-cpu-rt" and not HAS_RT_GROUP_SCHED:
        return "/cpu/realtimeRuntime: " + NO_RT
    if case.startswith("hugetlb"):
        if "hugetlb" not in V1_CONTROLLERS:
            return "/linux/resources/hugepageLimits: " + _no_v1("hugetlb")
        for i, hp in enumerate(CASES[case][0]["hugepageLimits"]):
            if hp["pageSize"] not in HUGE_PAGE_SIZES:
                return f"/linux/resources/hugepageLimits/{i}/pageSize: this kernel has no {hp['pageSize']} huge pages"
    if case == "network-classid" and "net_cls" not in V1_CONTROLLERS:
        return "/linux/resources/network/classID: " + _no_v1("net_cls")
    if case == "network-priorities" and "net_prio" not in V1_CONTROLLERS:
        return "/linux/resources/network/priorities: " + _no_v1("net_prio")
    if case == "rdma" and "rdma" not in V1_CONTROLLERS:
        return "/linux/resources/rdma: " + _no_v1("rdma")
    if case in ("blkio-weight", "flags-blkio", "resources-json") and not HAS_BLKIO_WEIGHT:
        return "/blockIO/weight: " + NO_WEIGHT
    if case == "blkio-weight-device" and not HAS_BLKIO_WEIGHT:
        return "/linux/resources/blockIO/weightDevice/0/weight: this kernel has no blkio weight_device (BFQ not available)"
    if case == "blkio-leaf-weight":
        if not HAS_BLKIO_WEIGHT:
            return "/linux/resources/blockIO/weight: " + NO_WEIGHT
        if not HAS_BLKIO_LEAF_WEIGHT:
            return "/linux/resources/blockIO/leafWeight: this kernel has no blkio leaf weight"
    return None


def _last_cpu():
    """Host fact: the highest online CPU (a cpuset case pins to it, so it runs on a 1-CPU host too)."""
    with open("/sys/devices/system/cpu/online") as f:
        return f.read().strip().split(",")[-1].split("-")[-1]


def _first_mem_node():
    """Host fact: the first online memory node (0 on nearly every host; not on some NUMA machines)."""
    try:
        with open("/sys/devices/system/node/online") as f:
            return f.read().strip().split(",")[0].split("-")[0]
    except OSError:
        return "0"  # no NUMA: node 0 only


CPU = _last_cpu()
MEM = _first_mem_node()


def root_dev():
    st = os.stat("/")
    return os.major(st.st_dev), os.minor(st.st_dev)


MAJ, MIN = root_dev()
BLOCK_MAJ, BLOCK_MIN = (lambda s: (os.major(s.st_rdev), os.minor(s.st_rdev)))(os.stat("/dev/vda")) \
    if os.path.exists("/dev/vda") else (MAJ, MIN)

# name: (resources, known differences {knob: (runc 1.1.5 value, ours)} or None)
CASES = {
    "memory": ({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10,
                           "disableOOMKiller": True}}, {}),
    "memory-unlimited": ({"memory": {"limit": -1}}, {}),
    "memory-swap-only-raise": ({"memory": {"limit": 268435456, "swap": 536870912}}, {}),
    "memory-kernel": ({"memory": {"limit": 67108864, "kernel": 50593792}}, {}),
    "memory-kernel-tcp": ({"memory": {"limit": 67108864, "kernelTCP": 50593792}},
                          {"memory/memory.kmem.tcp.limit_in_bytes": ("9223372036854771712", "50593792")}),
    "memory-use-hierarchy": ({"memory": {"useHierarchy": True}}, {}),
    "cpu": ({"cpu": {"shares": 512, "quota": 50000, "period": 200000}}, {}),
    "cpu-quota-only": ({"cpu": {"quota": 20000}}, {}),
    "cpu-rt": ({"cpu": {"realtimeRuntime": 20000, "realtimePeriod": 1000000}}, {}),
    "cpu-burst": ({"cpu": {"quota": 50000, "period": 100000, "burst": 20000}},
                  {"cpu/cpu.cfs_burst_us": ("0", "20000")}),
    # SCHED_IDLE groups read back the minimal weight in cpu.shares
    "cpu-idle": ({"cpu": {"idle": 1}}, {"cpu/cpu.idle": ("0", "1"), "cpu/cpu.shares": ("1024", "3")}),
    "cpuset": ({"cpu": {"cpus": CPU, "mems": MEM}}, {}),
    "pids": ({"pids": {"limit": 33}}, {}),
    "pids-unlimited": ({"pids": {"limit": -1}}, {}),
    # a limit below what setup needs is written once the init is alone (after SYNC_PID)
    "pids-zero": ({"pids": {"limit": 0}}, {"pids/pids.max": ("max", "1")}),  # runc 1.4: 0 means 1
    "pids-two": ({"pids": {"limit": 2}}, {}),
    "blkio-weight": ({"blockIO": {"weight": 300}}, {}),
    "blkio-throttle": ({"blockIO": {
        "throttleReadBpsDevice": [{"major": BLOCK_MAJ, "minor": BLOCK_MIN, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": BLOCK_MAJ, "minor": BLOCK_MIN, "rate": 2097152}],
        "throttleReadIOPSDevice": [{"major": BLOCK_MAJ, "minor": BLOCK_MIN, "rate": 100}],
        "throttleWriteIOPSDevice": [{"major": BLOCK_MAJ, "minor": BLOCK_MIN, "rate": 200}]}}, {}),
    "blkio-weight-device": ({"blockIO": {"weightDevice": [{"major": BLOCK_MAJ, "minor": BLOCK_MIN, "weight": 400}]}},
                            {}),
    "blkio-leaf-weight": ({"blockIO": {"weight": 300, "leafWeight": 300}}, {}),
    "hugetlb": ({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}, {}),
    # 1GB pages: absent on many hosts (no pdpe1gb, or a kernel without them)
    "hugetlb-1GB": ({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304},
                                        {"pageSize": "1GB", "limit": 1 << 30}]}, {}),
    "network-classid": ({"network": {"classID": 1048577}}, {}),
    "network-priorities": ({"network": {"priorities": [{"name": "lo", "priority": 5}]}}, {}),
    "rdma": ({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}}, {}),
    "unified": ({"unified": {"memory.high": "100000000"}}, {}),
    "devices-default": ({"devices": [{"allow": False, "access": "rwm"}]}, {}),
    "devices-rules": ({"devices": [{"allow": False, "access": "rwm"},
                                   {"allow": True, "type": "b", "major": BLOCK_MAJ, "minor": BLOCK_MIN, "access": "r"},
                                   {"allow": True, "type": "c", "major": 4, "access": "rw"},
                                   {"allow": False, "type": "c", "major": 5, "minor": 0, "access": "w"}]}, {}),
    "devices-allow-all": ({"devices": [{"allow": True, "access": "rwm"}]}, {}),
    "devices-none": ({}, {}),
}


def _bundle(make_test_bundle, name, res, args=("sleep", "300"), **linux):
    b = make_test_bundle(args=list(args))
    b.linux["cgroupsPath"] = "/" + name
    if res is not None:
        b.linux["resources"] = res
    b.linux.update(linux)
    b.write()
    return b


def _create(rt, cid, bundle, cg_cleanup):
    cg_cleanup.append(cid)
    r = rt.create(cid, bundle)
    out, err = rt.output(cid)
    return r, (r.stdout + r.stderr + out + err)


def _expect_same(case, ours, ref, known):
    diff = {}
    for k in sorted(set(ours) | set(ref)):
        if ours.get(k) != ref.get(k):
            diff[k] = (ref.get(k), ours.get(k))
    unexplained = {k: v for k, v in diff.items() if known.get(k) != v}
    assert not unexplained, f"{case}: cgroup files differ from runc's (runc, ours): {json.dumps(unexplained, indent=1)}"


@pytest.mark.oci_reference
@pytest.mark.parametrize("case", [pytest.param(k, marks=v.marks) if hasattr(v, "marks") else k
                                  for k, v in CASES.items()])
def test_differential_create(case, oci_runtime, reference_runtime, make_test_bundle, cg_cleanup):
    res, known = CASES[case].values[0] if hasattr(CASES[case], "values") else CASES[case]
    ids = {}
    results = {}
    snaps = {}
    for name, rt in (("runc", reference_runtime), ("ours", oci_runtime)):
        cid = f"cgd-{name}-{uuid.uuid4().hex[:10]}"
        ids[name] = cid
        b = _bundle(make_test_bundle, cid, res)
        r, text = _create(rt, cid, b, cg_cleanup)
        results[name] = (r.rc, text)
        snaps[name] = snapshot(cid) if r.rc == 0 else None
    assert (results["ours"][0] == 0) == (results["runc"][0] == 0), \
        f"{case}: runc rc={results['runc'][0]} ({results['runc'][1].strip()}) vs ours rc={results['ours'][0]} " \
        f"({results['ours'][1].strip()})"
    lacks = host_lacks(case)
    if lacks:
        assert results["ours"][0] != 0 and lacks in results["ours"][1], results["ours"][1]
    if results["runc"][0] != 0:
        # both refused: ours with a clear message naming the setting, and nothing left behind
        msg = results["ours"][1]
        assert "create failed" in msg, msg
        for name, cid in ids.items():
            assert not cg_dirs(cid) or name == "runc", f"{name} left cgroups: {cg_dirs(cid)}"
        return
    _expect_same(case, snaps["ours"], snaps["runc"], known)
    if case == "memory-kernel":
        assert "Kernel memory settings are ignored" in results["ours"][1]
    for name, rt in (("runc", reference_runtime), ("ours", oci_runtime)):
        assert rt.delete(ids[name], force=True).rc == 0
    assert cg_dirs(ids["ours"]) == []


UPDATES = {
    "flags-memory": (["--memory", "100m", "--memory-swap", "200m", "--memory-reservation", "50m"], {}),
    "flags-memory-lower": (["--memory", "32m", "--memory-swap", "64m"], {}),
    "flags-memory-unlimited": (["--memory", "-1"], {}),
    "flags-cpu": (["--cpu-share", "256", "--cpu-quota", "30000", "--cpu-period", "150000"], {}),
    "flags-cpu-quota-only": (["--cpu-quota", "10000"], {}),
    "flags-cpu-rt": (["--cpu-rt-period", "900000", "--cpu-rt-runtime", "10000"], {}),
    "flags-cpuset": (["--cpuset-cpus", CPU, "--cpuset-mems", MEM], {}),
    "flags-pids": (["--pids-limit", "50"], {}),
    "flags-blkio": (["--blkio-weight", "200"], {}),
    "resources-json": ({"memory": {"limit": 104857600, "swap": 209715200}, "cpu": {"shares": 128, "quota": 40000,
                        "period": 100000, "cpus": CPU}, "pids": {"limit": 77}, "blockIO": {"weight": 500, "throttleReadBpsDevice": [
                            {"major": BLOCK_MAJ, "minor": BLOCK_MIN, "rate": 4096}]}},
                       # runc 1.1.5's update ignores throttle devices; runc 1.4 upserts and applies them
                       {"blkio/blkio.throttle.read_bps_device": ("", f"{BLOCK_MAJ}:{BLOCK_MIN} 4096")}),
}

# the base of the update cases: a blkio weight only where the host has one (else create fails, see host_lacks)
BASE = {"memory": {"limit": 67108864, "swap": 134217728}, "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 33}, "blockIO": {"weight": 300} if HAS_BLKIO_WEIGHT else {}}


@pytest.mark.oci_reference
@pytest.mark.parametrize("case", list(UPDATES))
def test_differential_update(case, oci_runtime, reference_runtime, make_test_bundle, cg_cleanup):
    upd, known = UPDATES[case]
    snaps = {}
    rcs = {}
    before = {}
    for name, rt in (("runc", reference_runtime), ("ours", oci_runtime)):
        cid = f"cgu-{name}-{uuid.uuid4().hex[:10]}"
        b = _bundle(make_test_bundle, cid, BASE)
        r, text = _create(rt, cid, b, cg_cleanup)
        assert r.rc == 0, text
        assert rt.start(cid).rc == 0
        before[name] = snapshot(cid)
        if isinstance(upd, dict):
            r = rt.call("update", "--resources", "-", cid, input=json.dumps(upd).encode())
        else:
            r = rt.call("update", *upd, cid)
        rcs[name] = (r.rc, r.stderr)
        snaps[name] = snapshot(cid)
        assert rt.delete(cid, force=True).rc == 0
    assert rcs["ours"][0] == rcs["runc"][0], f"runc {rcs['runc']} vs ours {rcs['ours']}"
    lacks = host_lacks(case)
    if lacks:
        flag = UPDATE_FLAG[case]
        assert rcs["ours"][0] != 0 and f"update {flag}: {lacks}" in rcs["ours"][1], rcs["ours"]
        # a failed update leaves the cgroup as it was: the settings written before the failing one are
        # set back (runc 1.1.5 means to, but its set-back re-applies the new values: it keeps them).
        # cpuset: the base config sets no cpus, so there is no value to set back (as in runc)
        changed = {k: (v, snaps["ours"][k]) for k, v in before["ours"].items()
                   if snaps["ours"][k] != v and not k.startswith("cpuset/")}
        assert not changed, changed
        return
    _expect_same(case, snaps["ours"], snaps["runc"], known)


def test_update_saves_state_and_refuses_stopped(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgs-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, BASE)
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    assert oci_runtime.call("update", "--pids-limit", "44", "--memory", "80m", cid).rc == 0
    with open(os.path.join(oci_runtime.root, cid, "state.json")) as f:
        st = json.load(f)
    assert st["resources"]["pids"] == {"limit": 44}
    assert st["resources"]["memory"]["limit"] == 80 << 20
    assert st["resources"]["memory"]["swap"] == 134217728  # kept from the config
    assert open(f"{CG}/pids/{cid}/pids.max").read().strip() == "44"
    # a second update merges with the saved one (runc keeps unset values)
    assert oci_runtime.call("update", "--cpu-share", "100", cid).rc == 0
    assert open(f"{CG}/memory/{cid}/memory.limit_in_bytes").read().strip() == str(80 << 20)
    assert open(f"{CG}/cpu/{cid}/cpu.shares").read().strip() == "100"
    # bad input
    r = oci_runtime.call("update", "--memory", "lots", cid)
    assert r.rc == 1 and "invalid value for memory" in r.stderr
    r = oci_runtime.call("update", "--resources", "-", cid, input=b"{not json")
    assert r.rc == 1
    oci_runtime.kill(cid, "KILL")
    oci_runtime.wait_stopped(cid)
    r = oci_runtime.call("update", "--pids-limit", "10", cid)
    assert r.rc == 1 and "container not running" in r.stderr
    assert oci_runtime.delete(cid).rc == 0
    assert cg_dirs(cid) == []


# --- limits bite --------------------------------------------------------------------------------------

def test_memory_hog_is_oom_killed(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgm-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, {"memory": {"limit": 33554432, "swap": 33554432}},
                args=["sh", "-c", 'x=$(head -c 100000000 /dev/zero | tr "\\000" a); echo survived ${#x}'])
    cg_cleanup.append(cid)
    r = oci_runtime.run(cid, b, timeout=60)
    assert "survived" not in r.stdout, r.describe()
    oc = open(f"{CG}/memory/{cid}/memory.oom_control").read() if os.path.isdir(f"{CG}/memory/{cid}") else ""
    # run deletes the container (and its cgroup) when it ends: the proof is the exit status
    assert r.rc != 0 or "oom_kill 1" in oc, r.describe()


def test_oom_event_and_stats_stream(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cge-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, {"memory": {"limit": 33554432, "swap": 33554432}},
                args=["sh", "-c", 'read go < /tmp/go 2>/dev/null || sleep 1; '
                                  'while true; do x=$(head -c 100000000 /dev/zero | tr "\\000" a); sleep 0.2; done'])
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    p = subprocess.Popen(oci_runtime.argv("events", "--interval", "300ms", cid), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert oci_runtime.start(cid).rc == 0
        seen = set()
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline and not {"oom", "stats"} <= seen:
            line = p.stdout.readline()
            if not line:
                break
            ev = json.loads(line)
            lines.append(ev)
            assert ev["id"] == cid
            seen.add(ev["type"])
        assert {"oom", "stats"} <= seen, (lines, p.stderr.read1() if p.poll() is not None else "")
        st = next(e for e in lines if e["type"] == "stats")
        assert st["data"]["memory"]["usage"]["limit"] == 33554432
        oom = next(e for e in lines if e["type"] == "oom")
        assert oom == {"type": "oom", "id": cid}
        # the stream ends when the cgroup goes away
        assert oci_runtime.delete(cid, force=True).rc == 0
        # read on while waiting: a stats line every 300 ms fills the pipe within seconds on a busy host,
        # and a writer blocked on a full pipe would never see the cgroup go away
        p.communicate(timeout=20)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_fork_bomb_stops_at_pids_max(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgp-{uuid.uuid4().hex[:10]}"
    # an endless fork loop in a subshell: busybox sh gives up ("can't fork") when pids.max is
    # reached; the numbers are then read with builtins (forking is impossible until the sleeps die)
    script = ("( while true; do sleep 30 & done ) 2>/tmp/err; "
              "read cur < /sys/fs/cgroup/pids/pids.current; read mx < /sys/fs/cgroup/pids/pids.max; "
              "read ev < /sys/fs/cgroup/pids/pids.events; kill -9 -1; wait; echo $cur $mx $ev; cat /tmp/err")
    b = _bundle(make_test_bundle, cid, {"pids": {"limit": 10}}, args=["sh", "-c", script])
    b.set_readonly_root(False)
    b.write()
    cg_cleanup.append(cid)
    r = oci_runtime.run(cid, b, timeout=60)
    assert r.rc == 0, r.describe()
    first, err = r.stdout.split("\n", 1)
    cur, mx, _, nfail = first.split()
    assert mx == "10" and 8 <= int(cur) <= 10, r.describe()
    assert int(nfail) >= 1 and "can't fork" in err, r.describe()


# --- pause / resume / ps / events --stats ---------------------------------------------------------------

def test_pause_resume(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgz-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, None, args=["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done"],
                )
    b.set_readonly_root(False)
    b.write()
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    r = oci_runtime.call("resume", cid)
    assert r.rc == 1 and "container not paused" in r.stderr
    assert oci_runtime.start(cid).rc == 0
    time.sleep(0.2)
    assert oci_runtime.call("pause", cid).rc == 0
    assert oci_runtime.state(cid)["status"] == "paused"
    assert open(f"{CG}/freezer/{cid}/freezer.state").read().strip() == "FROZEN"
    n1 = open(b.rootfs_path("/tmp/n")).read()
    time.sleep(0.3)
    assert open(b.rootfs_path("/tmp/n")).read() == n1  # nothing runs
    r = oci_runtime.call("pause", cid)
    assert r.rc == 1 and "container not running" in r.stderr  # runc: paused is not running
    assert oci_runtime.call("resume", cid).rc == 0
    assert oci_runtime.state(cid)["status"] == "running"
    deadline = time.monotonic() + 5
    while open(b.rootfs_path("/tmp/n")).read() in ("", n1):  # runs again ("" = caught mid-write)
        assert time.monotonic() < deadline, "no progress after resume"
        time.sleep(0.02)
    # delete --force of a paused container thaws and kills it
    assert oci_runtime.call("pause", cid).rc == 0
    assert oci_runtime.delete(cid, force=True).rc == 0
    assert cg_dirs(cid) == []


def test_pause_stopped_container_fails(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgz-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, None, args=["true"])
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0
    assert oci_runtime.start(cid).rc == 0
    oci_runtime.wait_stopped(cid)
    r = oci_runtime.call("pause", cid)
    assert r.rc == 1 and "container not running" in r.stderr
    assert oci_runtime.delete(cid).rc == 0


def test_ps_json_and_table(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgq-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 & sleep 301 & wait"])
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    assert oci_runtime.start(cid).rc == 0
    pid = oci_runtime.state(cid)["pid"]
    deadline = time.monotonic() + 5
    while True:
        r = oci_runtime.call("ps", "--format", "json", cid)
        assert r.rc == 0 and r.stderr == ""
        pids = json.loads(r.stdout)
        if len(pids) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert pid in pids and len(pids) == 3, pids
    r = oci_runtime.call("ps", "-f", "json", cid)
    assert json.loads(r.stdout) == pids
    r = oci_runtime.call("ps", cid)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    assert sorted(int(line.split()[1]) for line in lines[1:]) == sorted(pids)
    assert any("sleep 301" in line for line in lines)
    r = oci_runtime.call("ps", cid, "-o", "pid,comm")
    assert r.stdout.splitlines()[0].split() == ["PID", "COMMAND"]
    assert len(r.stdout.splitlines()) == 4
    r = oci_runtime.call("ps", cid, "-o", "comm")
    assert r.rc == 1 and "couldn't find PID field in ps output" in r.stderr
    r = oci_runtime.call("ps", "--format", "yaml", cid)
    assert r.rc == 1 and "invalid format option" in r.stderr
    oci_runtime.kill(cid, "KILL")
    oci_runtime.wait_stopped(cid)
    r = oci_runtime.call("ps", "--format", "json", cid)
    assert r.rc == 0 and r.stdout == "null\n"
    assert oci_runtime.delete(cid).rc == 0


@pytest.mark.oci_reference
def test_events_stats_shape_like_runc(oci_runtime, reference_runtime, make_test_bundle, cg_cleanup):
    out = {}
    for name, rt in (("runc", reference_runtime), ("ours", oci_runtime)):
        cid = f"cgx-{name}-{uuid.uuid4().hex[:10]}"
        b = _bundle(make_test_bundle, cid, {"memory": {"limit": 67108864}, "pids": {"limit": 20},
                                            "cpu": {"quota": 50000, "period": 100000}})
        r, text = _create(rt, cid, b, cg_cleanup)
        assert r.rc == 0, text
        assert rt.start(cid).rc == 0
        r = rt.call("events", "--stats", cid)
        assert r.rc == 0, r.describe()
        assert r.stdout.endswith("}\n") and r.stdout.count("\n") == 1
        ev = json.loads(r.stdout)
        assert ev["type"] == "stats" and ev["id"] == cid
        out[name] = ev["data"]
        assert rt.delete(cid, force=True).rc == 0
    ours, ref = out["ours"], out["runc"]
    assert set(ours) == set(ref) - {"network_interfaces"} | {"network_interfaces"}
    assert set(ours["cpuset"]) == set(ref["cpuset"])
    assert ours["cpuset"]["cpus"] == ref["cpuset"]["cpus"]
    assert set(ours["memory"]) == set(ref["memory"]) and set(ours["memory"]["raw"]) == set(ref["memory"]["raw"])
    assert ours["memory"]["usage"]["limit"] == ref["memory"]["usage"]["limit"] == 67108864
    assert ours["pids"] == ref["pids"] == {"current": 1, "limit": 20}
    assert set(ours["cpu"]["usage"]) <= set(ref["cpu"]["usage"]) | {"total"}
    assert ours["hugetlb"] == ref["hugetlb"] and ours["intel_rdt"] == ref["intel_rdt"] == {}
    assert list(ours["memory"]["raw"]) == sorted(ours["memory"]["raw"])


def test_events_errors(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgx-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, None, args=["true"])
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0
    r = oci_runtime.call("events", "--interval", "0s", cid)
    assert r.rc == 1 and "duration interval must be greater than 0" in r.stderr
    r = oci_runtime.call("events", "--interval", "5", cid)
    assert r.rc == 1 and "missing unit in duration" in r.stderr
    assert oci_runtime.start(cid).rc == 0
    oci_runtime.wait_stopped(cid)
    r = oci_runtime.call("events", "--stats", cid)
    assert r.rc == 1 and f"container with id {cid} is not running" in r.stderr
    assert oci_runtime.delete(cid).rc == 0


# --- kill --all / delete --force leftovers ----------------------------------------------------------

def _no_pidns(b):
    b.remove_namespace("pid")
    b.write()


def _alive(pids):
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    out.append(p)
        except OSError:
            pass
    return out


def _wait_gone(pids, timeout=5):
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _alive(pids)


def test_kill_all_signals_every_process(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgk-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 & sleep 301 & wait"])
    _no_pidns(b)
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    assert oci_runtime.start(cid).rc == 0
    deadline = time.monotonic() + 5
    while len(json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout) or []) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout)
    # TERM to all: sh ignores nothing here, every process goes
    assert oci_runtime.kill(cid, "TERM", all=True).rc == 0
    assert _wait_gone(pids) == []
    oci_runtime.wait_stopped(cid)
    # --all on a stopped container is not an error
    assert oci_runtime.kill(cid, "KILL", all=True).rc == 0
    # a shared pid namespace: KILL goes to the whole cgroup even without an init (runc >= 1.2);
    # any other signal still needs the init
    assert oci_runtime.kill(cid, "KILL").rc == 0
    r = oci_runtime.kill(cid, "TERM")
    assert r.rc == 1 and "container not running" in r.stderr
    assert oci_runtime.delete(cid).rc == 0


def test_sigkill_without_pidns_kills_the_whole_cgroup(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgk-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 & sleep 301 & wait"])
    _no_pidns(b)
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    assert oci_runtime.start(cid).rc == 0
    deadline = time.monotonic() + 5
    while len(json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout) or []) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout)
    assert oci_runtime.kill(cid, "KILL").rc == 0
    assert _wait_gone(pids) == []
    assert oci_runtime.delete(cid).rc == 0
    assert cg_dirs(cid) == []


def test_delete_force_kills_leftovers_of_stopped_container(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgl-{uuid.uuid4().hex[:10]}"
    # the init exits at once; with a shared pid namespace its child stays in the cgroup
    b = _bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & exit 0"])
    _no_pidns(b)
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    assert oci_runtime.start(cid).rc == 0
    oci_runtime.wait_stopped(cid)
    deadline = time.monotonic() + 5
    while not (json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout) or []):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    left = json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout)
    assert _alive(left)
    assert oci_runtime.delete(cid, force=True).rc == 0
    assert _wait_gone(left) == []
    assert cg_dirs(cid) == []


# --- eBPF device filter (works on the unified hierarchy of this hybrid host too) ---------------------

def test_ebpf_device_filter_on_unified_hierarchy(cg_cleanup):
    from ociruntime.cgroups import devices, resources
    name = f"cgb-{uuid.uuid4().hex[:10]}"
    d = f"{CG}/unified/{name}"
    if not os.path.isdir(f"{CG}/unified"):
        pytest.skip(f"this host mounts no unified (cgroup2) hierarchy at {CG}/unified")
    cg_cleanup.append(name)
    os.mkdir(d)
    probe = f"""
import os
open('{d}/cgroup.procs', 'w').write(str(os.getpid()))
for p in ('/dev/null', '/dev/zero', '/dev/kmsg'):
    try:
        os.close(os.open(p, os.O_RDONLY)); print(p, 'ok')
    except OSError as e:
        print(p, e.errno)
"""
    devices.set_v2(d, resources.device_rules({"devices": [{"allow": False, "access": "rwm"}]}))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30).stdout
    assert out.split("\n")[:3] == ["/dev/null ok", "/dev/zero ok", "/dev/kmsg 1"]  # EPERM
    # replacing the program (update): /dev/kmsg readable, and only one program stays attached
    devices.set_v2(d, resources.device_rules({"devices": [{"allow": False, "access": "rwm"},
                                                          {"allow": True, "type": "c", "major": 1, "minor": 11,
                                                           "access": "r"}]}))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30).stdout
    assert "/dev/kmsg ok" in out
    bpftool = subprocess.run(["sh", "-c", f"command -v bpftool >/dev/null && bpftool cgroup show {d}"],
                             capture_output=True, text=True)
    if bpftool.returncode == 0:
        assert bpftool.stdout.count("cgroup_device") == 1, bpftool.stdout


def test_kill_all_of_paused_container(oci_runtime, make_test_bundle, cg_cleanup):
    cid = f"cgk-{uuid.uuid4().hex[:10]}"
    b = _bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 & sleep 301 & wait"])
    _no_pidns(b)
    r, text = _create(oci_runtime, cid, b, cg_cleanup)
    assert r.rc == 0, text
    assert oci_runtime.start(cid).rc == 0
    deadline = time.monotonic() + 5
    while len(json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout) or []) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = json.loads(oci_runtime.call("ps", "-f", "json", cid).stdout)
    assert oci_runtime.call("pause", cid).rc == 0
    # a signal other than KILL leaves a paused container paused
    assert oci_runtime.kill(cid, "CONT", all=True).rc == 0
    assert oci_runtime.state(cid)["status"] == "paused"
    # KILL goes through (the frozen tasks are thawed so that they die)
    assert oci_runtime.kill(cid, "KILL", all=True).rc == 0
    assert _wait_gone(pids) == []
    oci_runtime.wait_stopped(cid)
    assert oci_runtime.delete(cid).rc == 0
    assert cg_dirs(cid) == []
