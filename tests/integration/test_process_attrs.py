"""process.scheduler, process.ioPriority, process.execCPUAffinity, linux.personality and
linux.memoryPolicy, observed from inside a busybox container (its init and `exec`'d processes):

* /proc/self/stat: nice (field 19), rt_priority (field 40), policy (field 41); /proc/self/sched;
* busybox `ionice` (ioprio_get of the process itself);
* /proc/self/status Cpus_allowed_list (the runtime runs under a one-CPU affinity to show the reset);
* `uname -m` and /proc/self/personality;
* /proc/self/numa_maps, which shows the task's memory policy for mappings without their own.

Bad values are refused with a JSON pointer before anything is spawned, or, when only the kernel can
tell (a node without memory), by the init with one error line; either way nothing is left behind.
"""

import json
import os
import platform
import re

import pytest

from _util import wait_for
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)
from test_bad_input import create_fails

pytestmark = [pytest.mark.timeout(40)]

CPUS = sorted(os.sched_getaffinity(0))
NCPU = len(CPUS)
A, B = (str(c) for c in (CPUS * 2)[:2])  # two CPUs this process may use (the same one on a 1-CPU host)
HOST_NODES = sorted(int(n[4:]) for n in os.listdir("/sys/devices/system/node") if re.fullmatch(r"node\d+", n)) \
    if os.path.isdir("/sys/devices/system/node") else []
needs_2cpus = pytest.mark.skipif(NCPU < 2, reason=f"this process may run on {NCPU} CPU only (sched_getaffinity): "
                                                 "2 are needed to tell affinities apart")
needs_numa = pytest.mark.skipif(not os.path.exists("/proc/self/numa_maps"),
                                reason="kernel without CONFIG_NUMA (no /proc/self/numa_maps)")
# host facts: a cgroup v1 cpu hierarchy, and RT group scheduling on it (CONFIG_RT_GROUP_SCHED, not
# disabled at boot: the hierarchy has cpu.rt_* files)
V1_CPU_DIRS = [os.path.join("/sys/fs/cgroup", h) for h in sorted(os.listdir("/sys/fs/cgroup"))
               if "cpu" in h.split(",") and os.path.exists(os.path.join("/sys/fs/cgroup", h, "cpu.shares"))] \
    if os.path.isdir("/sys/fs/cgroup") else []
RT_GROUP_SCHED = any(os.path.exists(os.path.join(d, "cpu.rt_runtime_us")) for d in V1_CPU_DIRS)


def stat_fields(text):
    """/proc/<pid>/stat -> {field number (1-based, proc(5)): value}, comm may hold spaces."""
    head, _, rest = text.strip().rpartition(")")
    fields = rest.split()
    return {i + 3: v for i, v in enumerate(fields)}


def run_out(env, mutate, script, timeout=15):
    b = env.bundle(args=("sh", "-c", script), mutate=mutate)
    return env.run_to_completion(b, timeout=timeout)[1]


def rt_fields(spec):
    spec["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 10000, "realtimePeriod": 1000000}


def rt_budget(spec):
    """cgroup v1 RT group scheduling: a real-time task needs runtime in its cpu cgroup (elsewhere there
    is no such budget to give, and the runtime refuses one: test_scheduler_fifo_without_rt_budget_...)."""
    if RT_GROUP_SCHED:
        rt_fields(spec)


def sched(spec, **s):
    spec["process"]["scheduler"] = s


def one_cpu(cpu=A):
    """preexec_fn: the runtime itself runs on one CPU only (as under `taskset`)."""
    return lambda: os.sched_setaffinity(0, {int(cpu)})


# ------------------------------------------------------------------------------------------ scheduler

@pytest.mark.parametrize("policy,num,nice", [("SCHED_OTHER", 0, 7), ("SCHED_BATCH", 3, 5), ("SCHED_IDLE", 5, 0)])
def test_scheduler_normal_policies(env, policy, num, nice):
    out = run_out(env, lambda s: sched(s, policy=policy, nice=nice), "cat /proc/self/stat")
    f = stat_fields(out)
    assert (int(f[41]), int(f[19]), int(f[40])) == (num, nice, 0), out


@pytest.mark.parametrize("policy,num", [("SCHED_FIFO", 1), ("SCHED_RR", 2)])
def test_scheduler_realtime(env, policy, num):
    def m(s):
        sched(s, policy=policy, priority=10)
        rt_budget(s)
    out = run_out(env, m, "cat /proc/self/stat; grep -E '^(policy|prio) ' /proc/self/sched")
    first, rest = out.split("\n", 1)
    f = stat_fields(first)
    assert (int(f[41]), int(f[40])) == (num, 10), out
    assert re.search(rf"^policy\s+:\s+{num}$", rest, re.M) and re.search(r"^prio\s+:\s+89$", rest, re.M), out


def test_scheduler_realtime_for_an_unprivileged_process(env):
    """The policy is set while the init still holds CAP_SYS_NICE, before it becomes uid 1000 with no
    capabilities (and IOPRIO_CLASS_RT, which needs CAP_SYS_ADMIN or CAP_SYS_NICE, likewise)."""
    def m(s):
        sched(s, policy="SCHED_RR", priority=20)
        rt_budget(s)
        s["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_RT", "priority": 1}
        s["process"]["user"] = {"uid": 1000, "gid": 1000}
        s["process"]["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "inheritable",
                                                        "ambient")}
    out = run_out(env, m, "cat /proc/self/stat; ionice; grep CapEff /proc/self/status; id -u")
    lines = out.splitlines()
    f = stat_fields(lines[0])
    assert (int(f[41]), int(f[40])) == (2, 20), out
    assert lines[1:] == ["realtime: prio 1", "CapEff:\t0000000000000000", "1000"], out


def test_scheduler_reset_on_fork(env):
    """SCHED_FLAG_RESET_ON_FORK: the container process is SCHED_FIFO, the children it forks are not."""
    def m(flags):
        def mut(s):
            sched(s, policy="SCHED_FIFO", priority=5, flags=flags)
            rt_budget(s)
        return mut
    script = "cat /proc/self/stat; cat /proc/$$/stat"
    for flags, child in (([], (1, 5)), (["SCHED_FLAG_RESET_ON_FORK"], (0, 0))):
        child_line, own_line = run_out(env, m(flags), script).splitlines()
        c, o = stat_fields(child_line), stat_fields(own_line)
        assert (int(o[41]), int(o[40])) == (1, 5), own_line
        assert (int(c[41]), int(c[40])) == child, (flags, child_line)


@pytest.mark.parametrize("s,want", [
    # KEEP_POLICY: the policy stays SCHED_OTHER (no RT budget needed), the nice value is applied
    ({"policy": "SCHED_FIFO", "nice": 6, "flags": ["SCHED_FLAG_KEEP_POLICY"]}, (0, 6, 0)),
    # KEEP_PARAMS: the kernel skips the policy and parameters altogether (only utilization clamps
    # would change); without the flag this gives (3, 6, 0)
    ({"policy": "SCHED_BATCH", "nice": 6, "flags": ["SCHED_FLAG_KEEP_PARAMS"]}, (0, 0, 0)),
    ({"policy": "SCHED_BATCH", "nice": 6}, (3, 6, 0)),
], ids=["keep-policy", "keep-params", "no-keep"])
def test_scheduler_keep_flags(env, s, want):
    """The flags reach sched_setattr(2): the kernel's KEEP_* semantics are observable."""
    f = stat_fields(run_out(env, lambda spec: sched(spec, **s), "cat /proc/self/stat"))
    assert (int(f[41]), int(f[19]), int(f[40])) == want


def _has_uclamp():
    with open("/proc/self/sched") as f:
        return "uclamp" in f.read()


def test_scheduler_util_clamp_flags(env):
    """SCHED_FLAG_UTIL_CLAMP_MIN/MAX need the v1 sched_attr (with the clamp values, 0 as runc sends):
    applied where the kernel has utilization clamping, a clear error where it does not."""
    def m(s):
        sched(s, policy="SCHED_OTHER", nice=2, flags=["SCHED_FLAG_UTIL_CLAMP_MIN", "SCHED_FLAG_UTIL_CLAMP_MAX"])
    if _has_uclamp():
        out = run_out(env, m, "cat /proc/self/stat; grep uclamp /proc/self/sched")
        assert int(stat_fields(out.splitlines()[0])[19]) == 2, out
        assert re.search(r"^uclamp\.max\s+:\s+0$", out, re.M), out
    else:
        create_fails(env, env.bundle(mutate=m), "error setting scheduler SCHED_OTHER", "CONFIG_UCLAMP_TASK")


def test_scheduler_deadline(env):
    """SCHED_DEADLINE with runtime/deadline/period (ns): policy 6 and the runtime budget in /proc/self/sched.
    cat is exec'd directly: a deadline task may not fork."""
    def m(s):
        sched(s, policy="SCHED_DEADLINE", runtime=1_000_000, deadline=10_000_000, period=20_000_000)
    b = env.bundle(args=("cat", "/proc/self/sched"), mutate=m)
    out = env.run_to_completion(b)[1]
    assert re.search(r"^policy\s+:\s+6$", out, re.M), out
    # dl.runtime is the budget left in this period (<= runtime), dl.deadline an absolute time
    left = re.search(r"^dl\.runtime\s+:\s+(-?\d+)$", out, re.M)
    assert left and int(left.group(1)) <= 1_000_000, out


def test_scheduler_applies_to_exec(env):
    """`exec` gets the container's scheduler (as runc), or the process.json's own."""
    b = env.bundle(args=("sleep", "30"), mutate=lambda s: sched(s, policy="SCHED_BATCH", nice=4))
    cid = env.running(b)
    f = stat_fields(env.rt("exec", cid, "cat", "/proc/self/stat").check().stdout)
    assert (int(f[41]), int(f[19])) == (3, 4)
    proc = dict(b.spec["process"], args=["cat", "/proc/self/stat"], scheduler={"policy": "SCHED_IDLE"})
    pj = os.path.join(env.tmp, "process.json")
    with open(pj, "w") as fh:
        json.dump(proc, fh)
    f = stat_fields(env.rt("exec", "--process", pj, cid).check().stdout)
    assert (int(f[41]), int(f[19])) == (5, 0)


@pytest.mark.skipif(not V1_CPU_DIRS, reason="no cgroup v1 cpu hierarchy on this host (pure cgroup v2: no "
                                             "per-cgroup RT budget, realtimeRuntime/realtimePeriod do not apply)")
def test_scheduler_fifo_without_rt_budget_fails_cleanly(env):
    """With RT group scheduling the container's cpu cgroup has no RT runtime by default: sched_setattr
    fails with EPERM; one error line that says what is missing, nothing left behind. Without it (no
    cpu.rt_* files) a budget cannot be given: realtimeRuntime is refused, naming the field."""
    if not RT_GROUP_SCHED:
        b = env.bundle(mutate=rt_fields)
        create_fails(env, b, "/linux/resources/cpu/realtimeRuntime: this kernel has no real-time group scheduling")
        return
    b = env.bundle(mutate=lambda s: sched(s, policy="SCHED_FIFO", priority=10))
    create_fails(env, b, "error setting scheduler SCHED_FIFO priority 10", "realtimeRuntime")
    # exec: the init fails after READY; the error still reaches the runtime, nothing is left
    b = env.bundle()
    cid = env.running(b)
    pj = os.path.join(env.tmp, "process.json")
    with open(pj, "w") as fh:
        json.dump(dict(b.spec["process"], args=["true"], scheduler={"policy": "SCHED_RR", "priority": 3}), fh)
    snap = env.snapshot()
    r = env.rt("exec", "--process", pj, cid)
    assert r.rc != 0, r
    assert "error setting scheduler SCHED_RR priority 3" in r.error_msg(), r
    snap.assert_clean()
    assert env.rt.status(cid) == "running"


# ------------------------------------------------------------------------------------------ I/O priority

@pytest.mark.parametrize("cls,prio,want", [("IOPRIO_CLASS_RT", 3, "realtime: prio 3"),
                                           ("IOPRIO_CLASS_BE", 6, "best-effort: prio 6"),
                                           ("IOPRIO_CLASS_IDLE", 0, "idle")])
def test_io_priority(env, cls, prio, want):
    def m(s):
        s["process"]["ioPriority"] = {"class": cls, "priority": prio}
    out = run_out(env, m, "ionice; ionice -p $$")
    assert out.splitlines() == [want, want], out


def test_io_priority_applies_to_exec(env):
    b = env.bundle(mutate=lambda s: s["process"].update(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 2}))
    cid = env.running(b)
    assert env.rt("exec", cid, "ionice").check().stdout.strip() == "best-effort: prio 2"
    proc = dict(b.spec["process"], args=["ionice"], ioPriority={"class": "IOPRIO_CLASS_IDLE", "priority": 0})
    pj = os.path.join(env.tmp, "process.json")
    with open(pj, "w") as fh:
        json.dump(proc, fh)
    assert env.rt("exec", "--process", pj, cid).check().stdout.strip() == "idle"
    del proc["ioPriority"]      # a process.json without one: the container's (runc's newInitConfig)
    with open(pj, "w") as fh:
        json.dump(proc, fh)
    assert env.rt("exec", "--process", pj, cid).check().stdout.strip() == "best-effort: prio 2"


# ------------------------------------------------------------------------------------------ CPU affinity

def cpus_allowed(text):
    return re.search(r"^Cpus_allowed_list:\s*(\S+)$", text, re.M).group(1)


def all_cpus():
    with open("/proc/self/status") as f:
        return cpus_allowed(f.read())


@needs_2cpus
def test_init_affinity_is_reset_not_execcpuaffinity(env):
    """The runtime runs on one CPU only; the container's init gets every CPU of its cpuset (runc >=
    1.3.6 resets it), and execCPUAffinity, which "is not applicable to the container's init process"
    (config.md), does not touch it."""
    def m(s):
        s["process"]["execCPUAffinity"] = {"initial": B, "final": B}
    b = env.bundle(args=("grep", "Cpus_allowed_list", "/proc/self/status"), mutate=m)
    out = os.path.join(env.tmp, "out")
    with open(out, "wb") as f:
        cid = env.created(b, stdout=f, preexec_fn=one_cpu())
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    assert cpus_allowed(open(out).read()) == all_cpus()


@needs_2cpus
@pytest.mark.parametrize("aff,want", [
    (None, "all"),                                  # neither list: reset (not the runtime's one CPU)
    ({"final": B}, B),
    ({"initial": B}, B),                            # kept across the cgroup join
    ({"initial": B, "final": A}, A),
    ({"initial": "", "final": ""}, "all"),
])
def test_exec_cpu_affinity(env, aff, want):
    b = env.bundle()
    cid = env.running(b)
    proc = dict(b.spec["process"], args=["grep", "Cpus_allowed_list", "/proc/self/status"])
    if aff is not None:
        proc["execCPUAffinity"] = aff
    pj = os.path.join(env.tmp, "process.json")
    with open(pj, "w") as fh:
        json.dump(proc, fh)
    r = env.rt("exec", "--process", pj, cid, preexec_fn=one_cpu()).check()
    assert cpus_allowed(r.stdout) == (all_cpus() if want == "all" else want)


@needs_2cpus
def test_exec_cpu_affinity_defaults_to_the_containers(env):
    """Without one of its own, an exec'd process gets the config's execCPUAffinity (runc), with and
    without --process."""
    b = env.bundle(mutate=lambda s: s["process"].update(execCPUAffinity={"final": B}))
    cid = env.running(b)
    r = env.rt("exec", cid, "grep", "Cpus_allowed_list", "/proc/self/status").check()
    assert cpus_allowed(r.stdout) == B
    proc = dict(b.spec["process"], args=["grep", "Cpus_allowed_list", "/proc/self/status"])
    del proc["execCPUAffinity"]
    pj = os.path.join(env.tmp, "process.json")
    with open(pj, "w") as fh:
        json.dump(proc, fh)
    assert cpus_allowed(env.rt("exec", "--process", pj, cid).check().stdout) == B


def test_exec_cpu_affinity_bad_input(env):
    """A malformed list names the field; a list of CPUs this host cannot run on too. Nothing is left
    running, the container is untouched."""
    b = env.bundle()
    cid = env.running(b)
    pj = os.path.join(env.tmp, "process.json")
    for aff, frags in (({"final": "0-"}, ["process.json", "/execCPUAffinity/final", "is not a list of numbers"]),
                       ({"initial": "4095"}, ["process.json", "/execCPUAffinity/initial",
                                              "cannot run on CPUs 4095"])):
        with open(pj, "w") as fh:
            json.dump(dict(b.spec["process"], args=["true"], execCPUAffinity=aff), fh)
        snap = env.snapshot()
        r = env.rt("exec", "--process", pj, cid)
        assert r.rc != 0, r
        msg = r.error_msg()
        assert all(f in msg for f in frags), msg
        snap.assert_clean()
    assert env.rt.status(cid) == "running"


@needs_2cpus
def test_exec_final_affinity_outside_the_cpuset_fails_cleanly(env):
    """final names only CPUs the container's cpuset excludes: the init reports it, nothing is left."""
    b = env.bundle(mutate=lambda s: s["linux"].setdefault("resources", {}).update(cpu={"cpus": A}))
    cid = env.running(b)
    pj = os.path.join(env.tmp, "process.json")
    with open(pj, "w") as fh:
        json.dump(dict(b.spec["process"], args=["true"], execCPUAffinity={"final": B}), fh)
    snap = env.snapshot()
    r = env.rt("exec", "--process", pj, cid)
    assert r.rc != 0, r
    msg = r.error_msg()
    assert "error setting final CPU affinity" in msg and f'"{B}"' in msg, msg
    snap.assert_clean()
    assert env.rt.status(cid) == "running"


# ------------------------------------------------------------------------------------------ personality

@pytest.mark.skipif(platform.machine() != "x86_64", reason="the LINUX32 uname (i686) checked here is x86_64's")
def test_personality_linux32(env):
    b = env.bundle(args=("sh", "-c", "uname -m; cat /proc/self/personality; sleep 30"),
                   mutate=lambda s: s["linux"].update(personality={"domain": "LINUX32"}))
    out = os.path.join(env.tmp, "out")
    with open(out, "wb") as f:
        cid = env.created(b, stdout=f)
    env.rt("start", cid).check()
    assert wait_for(lambda: open(out).read().count("\n") >= 2)
    assert open(out).read().split() == ["i686", "00000008"]
    r = env.rt("exec", cid, "sh", "-c", "uname -m; cat /proc/self/personality").check()
    assert r.stdout.split() == ["i686", "00000008"], "exec gets the container's personality (runc)"


def test_personality_linux(env):
    out = run_out(env, lambda s: s["linux"].update(personality={"domain": "LINUX"}),
                  "uname -m; cat /proc/self/personality")
    assert out.split() == [platform.machine(), "00000000"]


# ------------------------------------------------------------------------------------------ memory policy

def numa_policies(text):
    """The policy column of numa_maps (second field), one per mapping."""
    return {line.split()[1] for line in text.splitlines() if line.strip()}


@needs_numa
@pytest.mark.parametrize("mp,want", [
    ({"mode": "MPOL_BIND", "nodes": "0"}, "bind:0"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0"),
    ({"mode": "MPOL_PREFERRED"}, "local"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_DEFAULT"}, "default"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, "bind=balancing:0"),
], ids=lambda v: v if isinstance(v, str) else "-".join([v["mode"], *v.get("flags", [])]))
def test_memory_policy(env, mp, want):
    out = run_out(env, lambda s: s["linux"].update(memoryPolicy=mp), "cat /proc/self/numa_maps")
    assert numa_policies(out) == {want}, out


@needs_numa
def test_memory_policy_relative_nodes(env):
    """MPOL_F_RELATIVE_NODES: node ids are relative to the allowed set (folded onto it), so node
    len(HOST_NODES) is the first allowed node again."""
    mp = {"mode": "MPOL_INTERLEAVE", "nodes": str(len(HOST_NODES)), "flags": ["MPOL_F_RELATIVE_NODES"]}
    out = run_out(env, lambda s: s["linux"].update(memoryPolicy=mp), "cat /proc/self/numa_maps")
    assert numa_policies(out) == {f"interleave=relative:{HOST_NODES[0]}"}, out


@needs_numa
def test_memory_policy_applies_to_exec(env):
    b = env.bundle(mutate=lambda s: s["linux"].update(memoryPolicy={"mode": "MPOL_BIND", "nodes": "0"}))
    cid = env.running(b)
    assert numa_policies(env.rt("exec", cid, "cat", "/proc/self/numa_maps").check().stdout) == {"bind:0"}


@needs_numa
def test_memory_policy_node_without_memory_fails_cleanly(env):
    """Only the kernel knows which nodes the container may use: the init reports it, nothing is left."""
    missing = max(HOST_NODES, default=0) + 1
    b = env.bundle(mutate=lambda s: s["linux"].update(memoryPolicy={"mode": "MPOL_BIND", "nodes": str(missing)}))
    create_fails(env, b, f'error setting memory policy MPOL_BIND nodes "{missing}"',
                 re.compile("invalid argument", re.I))
