"""Unit tests of the cgroup managers against fake cgroup trees (tmp dirs of regular files).

The fake tree mimics the kernel where it matters: a write replaces a file's content (control
files are not appended to), and devices.allow / devices.deny update devices.list the way the v1
devices controller does (modelled with the same emulator the v1 writer uses), so the writers'
file names, values and order are checked without touching the host's cgroups.
"""
import json
import os
import sys

import pytest

from ociruntime import cgroups
from ociruntime.cgroups import cgstats, devices, files, fs1, fs2, resources
from ociruntime.cgroups.devices import Emulator
from ociruntime.errors import OciError

V1_FILES = {
    "memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712",
               "memory.soft_limit_in_bytes": "9223372036854771712", "memory.kmem.limit_in_bytes": "9223372036854771712",
               "memory.kmem.tcp.limit_in_bytes": "9223372036854771712", "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0", "memory.use_hierarchy": "1",
               "memory.usage_in_bytes": "4096", "memory.max_usage_in_bytes": "8192", "memory.failcnt": "0",
               "memory.memsw.usage_in_bytes": "4096", "memory.memsw.max_usage_in_bytes": "8192",
               "memory.memsw.failcnt": "0", "memory.stat": "cache 12\nrss 34\ntotal_rss 34", "cgroup.procs": ""},
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.cfs_burst_us": "0",
            "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0", "cpu.idle": "0",
            "cpu.stat": "nr_periods 5\nnr_throttled 2\nthrottled_time 300", "cgroup.procs": ""},
    "cpuacct": {"cpuacct.stat": "user 10\nsystem 20", "cpuacct.usage": "123456", "cpuacct.usage_percpu": "100 200",
                "cpuacct.usage_all": "cpu user system\n0 50 50\n1 100 100", "cgroup.procs": ""},
    "cpuset": {"cpuset.cpus": "0-1", "cpuset.mems": "0", "cpuset.cpu_exclusive": "0", "cpuset.sched_load_balance": "1",
               "cpuset.sched_relax_domain_level": "-1", "cgroup.procs": ""},
    "pids": {"pids.max": "max", "pids.current": "3", "cgroup.procs": ""},
    "blkio": {"blkio.bfq.weight": "100", "blkio.bfq.weight_device": "", "blkio.throttle.read_bps_device": "",
              "blkio.throttle.write_bps_device": "", "blkio.throttle.read_iops_device": "",
              "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_serviced_recursive": "8:0 Read 5\n8:0 Write 6\nTotal 11",
              "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\nTotal 12288",
              "cgroup.procs": ""},
    "devices": {"devices.list": "a *:* rwm", "devices.allow": "", "devices.deny": "", "cgroup.procs": ""},
    "freezer": {"freezer.state": "THAWED", "cgroup.procs": ""},
}


class FakeKernel:
    """Routes files.write into the fake tree with cgroupfs semantics; records every write."""

    def __init__(self, monkeypatch):
        self.log = []
        self.fail = {}  # (name, data) -> errno, failing once; (name, None) -> errno, always
        real_write = files.write

        def write(d, name, data):
            if not d:
                return real_write(d, name, data)
            path = os.path.join(d, name)
            if not os.path.exists(path):
                return real_write(d, name, data)  # the real error for a missing file
            err = self.fail.pop((name, data), None) or self.fail.get((name, None))
            if err:
                raise files.CgroupError(f"write {path}: {files.strerror(err)}", err)
            self.log.append((os.path.basename(os.path.dirname(d)), name, data))
            if name in ("devices.allow", "devices.deny"):
                emu = Emulator.from_list(open(os.path.join(d, "devices.list")).read())
                t, rest = data.split(" ", 1)
                mm, perms = rest.split(" ")
                ma, mi = mm.split(":")
                emu.apply(t, -1 if ma == "*" else int(ma), -1 if mi == "*" else int(mi), perms,
                          name == "devices.allow")
                with open(os.path.join(d, "devices.list"), "w") as f:
                    if emu.default_allow:
                        f.write("a *:* rwm\n")
                    else:
                        for (tt, a, b), p in sorted(emu.rules.items(), key=lambda kv: devices._sort_key(kv[0])):
                            f.write(devices.rule_string(tt, a, b, devices.set_to_perms(p)) + "\n")
                return
            if name == "freezer.state":
                data = {"FROZEN": "FROZEN", "THAWED": "THAWED"}[data]
            with open(path, "w") as f:
                f.write(data)

        monkeypatch.setattr(files, "write", write)


def make_v1_tree(tmp_path, omit=()):
    paths = {}
    for ctrl, content in V1_FILES.items():
        if ctrl in omit:
            continue
        d = tmp_path / ctrl / "ctr"
        d.mkdir(parents=True)
        for name, data in content.items():
            (d / name).write_text(data)
        paths[ctrl] = str(d)
    return paths


def read(paths, ctrl, name):
    with open(os.path.join(paths[ctrl], name)) as f:
        return f.read()


@pytest.fixture
def kernel(monkeypatch):
    return FakeKernel(monkeypatch)


# --- conversions ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shares,weight", [(0, 0), (1, 1), (2, 1), (3, 2), (1024, 100), (512, 59),
                                           (262143, 10000), (262144, 10000), (262145, 10000)])
def test_shares_to_weight(shares, weight):
    assert resources.shares_to_weight(shares) == weight


@pytest.mark.parametrize("swap,mem,out", [(0, -1, -1), (-1, 100, -1), (0, 100, 0), (200, -1, 200), (300, 100, 200),
                                          (100, 100, 0)])
def test_swap_to_v2(swap, mem, out):
    assert resources.swap_to_v2(swap, mem) == out


@pytest.mark.parametrize("swap,mem,msg", [(100, 0, "without memory limit"), (50, 100, "should be >= memory"),
                                          (100, -5, "invalid memory value")])
def test_swap_to_v2_errors(swap, mem, msg):
    with pytest.raises(OciError, match=msg):
        resources.swap_to_v2(swap, mem)


@pytest.mark.parametrize("w,io", [(0, 0), (10, 1), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io(w, io):
    assert resources.blkio_weight_to_io(w) == io


def test_device_rules_defaults_appended_and_validated():
    rules = resources.device_rules({"devices": [{"allow": False, "access": "rwm"},
                                                {"allow": True, "type": "c", "major": 4, "access": "rw"}]})
    assert rules[0] == ("a", -1, -1, "rwm", False)
    assert rules[1] == ("c", 4, -1, "rw", True)
    assert rules[2:] == [(t, a, b, p, True) for t, a, b, p in resources.DEFAULT_ALLOWED]
    with pytest.raises(OciError, match="invalid cgroup device type"):
        resources.device_rules({"devices": [{"allow": True, "type": "p", "access": "rwm"}]})
    with pytest.raises(OciError, match="device access at 0 field cannot be empty"):
        resources.device_rules({"devices": [{"allow": True, "access": ""}]})


# --- device emulator ---------------------------------------------------------------------------------

def test_transition_from_allow_all_denies_first_then_allows_sorted():
    cur = Emulator.from_list("a *:* rwm\n")
    target = Emulator.from_rules(resources.device_rules({"devices": [{"allow": False, "access": "rwm"}]}))
    writes = [(devices.rule_string(t, a, b, p), allow) for t, a, b, p, allow in cur.transition(target)]
    assert writes[0] == ("a *:* rwm", False)
    assert writes[1:] == [("b *:* m", True), ("c *:* m", True), ("c 1:3 rwm", True), ("c 1:5 rwm", True),
                          ("c 1:7 rwm", True), ("c 1:8 rwm", True), ("c 1:9 rwm", True), ("c 5:0 rwm", True),
                          ("c 5:2 rwm", True), ("c 10:200 rwm", True), ("c 136:* rwm", True)]


def test_transition_minimal_between_allow_lists():
    cur = Emulator.from_list("c 1:3 rwm\nc 1:5 rw\n")
    target = Emulator.from_rules([("a", -1, -1, "rwm", False), ("c", 1, 3, "rwm", True), ("c", 1, 5, "rwm", True),
                                  ("b", 8, 0, "r", True)])
    assert cur.transition(target) == [("c", 1, 5, "m", True), ("b", 8, 0, "r", True)]
    # dropping permissions writes deny lines for exactly what goes
    assert target.transition(cur) == [("c", 1, 5, "m", False), ("b", 8, 0, "r", False)]


def test_emulator_refuses_punching_holes_in_wildcards():
    emu = Emulator.from_rules([("a", -1, -1, "rwm", False), ("c", -1, -1, "rwm", True)])
    with pytest.raises(OciError, match="cannot punch hole"):
        emu.apply("c", 1, 3, "r", False)


def test_emulator_merges_and_normalises_permissions():
    emu = Emulator.from_rules([("a", -1, -1, "rwm", False), ("c", 1, 3, "mr", True), ("c", 1, 3, "w", True)])
    assert emu.rules == {("c", 1, 3): devices.R | devices.W | devices.M}
    emu2 = Emulator.from_rules([("a", -1, -1, "rwm", True), ("b", 8, 0, "w", False)])
    assert emu2.default_allow and emu2.rules == {("b", 8, 0): devices.W}


# --- the eBPF program, checked with a small interpreter -------------------------------------------------

def run_bpf(prog, dev_type, access, major, minor):
    """Interpret the instruction subset device_filter emits; returns r0."""
    regs = [0] * 11
    ctx = (dev_type | (access << 16), major, minor)
    pc = 0
    steps = 0
    while True:
        steps += 1
        assert steps < 10000
        code, dst, src, off, imm = prog[pc]
        pc += 1
        if code == 0x61:
            assert src == 1 and off in (0, 4, 8)
            regs[dst] = ctx[off // 4]
        elif code == 0x54:
            regs[dst] = (regs[dst] & imm) & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xb4:
            regs[dst] = imm & 0xFFFFFFFF
        elif code == 0xbc:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == 0x55:
            if regs[dst] != (imm & 0xFFFFFFFFFFFFFFFF if imm >= 0 else imm + (1 << 64)):
                pc += off
        elif code == 0x5d:
            if regs[dst] != regs[src]:
                pc += off
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def expected_access(emu, t, major, minor, perms):
    """What the emulated devices cgroup allows (an exception matches exactly or by wildcard)."""
    need = devices.perms_to_set(perms)
    for (rt, ra, rb), have in emu.rules.items():
        if rt == t and ra in (-1, major) and rb in (-1, minor) and (need & have) == need:
            return not emu.default_allow
    return emu.default_allow


@pytest.mark.parametrize("cfg", [
    [{"allow": False, "access": "rwm"}],
    [{"allow": False, "access": "rwm"}, {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}],
    [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rw"}],
    [],
])
def test_device_filter_program_matches_emulator(cfg):
    rules = resources.device_rules({"devices": cfg})
    emu = Emulator.from_rules(rules)
    prog = devices.device_filter(rules)
    assert len(devices.encode(prog)) == 8 * len(prog)
    bpf_type = {"c": devices.BPF_DEVCG_DEV_CHAR, "b": devices.BPF_DEVCG_DEV_BLOCK}
    bpf_acc = {"r": devices.BPF_DEVCG_ACC_READ, "w": devices.BPF_DEVCG_ACC_WRITE, "m": devices.BPF_DEVCG_ACC_MKNOD}
    for t in ("c", "b"):
        for major, minor in ((1, 3), (1, 5), (1, 11), (8, 0), (8, 1), (136, 4), (5, 1), (10, 200), (4000000, 2)):
            for perms in ("r", "w", "m", "rw", "rwm"):
                acc = 0
                for ch in perms:
                    acc |= bpf_acc[ch]
                got = run_bpf(prog, bpf_type[t], acc, major, minor)
                assert bool(got) == expected_access(emu, t, major, minor, perms), (t, major, minor, perms)


# --- v1 writers ---------------------------------------------------------------------------------------

FULL_V1 = {
    "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "kernelTCP": 50593792,
               "swappiness": 10, "disableOOMKiller": True},
    "cpu": {"shares": 512, "quota": 50000, "period": 200000, "burst": 10000, "realtimeRuntime": 950,
            "realtimePeriod": 1000, "cpus": "1", "mems": "0", "idle": 1},
    "pids": {"limit": 33},
    "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 400}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]},
    "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rw"}],
}


def test_v1_every_field(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    warnings = []
    fs1.set_resources(paths, FULL_V1, warnings.append)
    assert read(paths, "memory", "memory.limit_in_bytes") == "67108864"
    assert read(paths, "memory", "memory.memsw.limit_in_bytes") == "134217728"
    assert read(paths, "memory", "memory.soft_limit_in_bytes") == "33554432"
    assert read(paths, "memory", "memory.kmem.tcp.limit_in_bytes") == "50593792"
    assert read(paths, "memory", "memory.swappiness") == "10"
    assert read(paths, "memory", "memory.oom_control") == "1"
    assert read(paths, "cpu", "cpu.shares") == "512"
    assert read(paths, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(paths, "cpu", "cpu.cfs_period_us") == "200000"
    assert read(paths, "cpu", "cpu.cfs_burst_us") == "10000"
    assert read(paths, "cpu", "cpu.rt_runtime_us") == "950"
    assert read(paths, "cpu", "cpu.rt_period_us") == "1000"
    assert read(paths, "cpu", "cpu.idle") == "1"
    assert read(paths, "cpuset", "cpuset.cpus") == "1"
    assert read(paths, "pids", "pids.max") == "33"
    assert read(paths, "blkio", "blkio.bfq.weight") == "300"  # no blkio.weight: the bfq names
    assert read(paths, "blkio", "blkio.bfq.weight_device") == "8:0 400"
    assert read(paths, "blkio", "blkio.throttle.read_bps_device") == "8:0 1048576"
    assert read(paths, "blkio", "blkio.throttle.write_iops_device") == "8:0 200"
    dl = read(paths, "devices", "devices.list").splitlines()
    assert dl[:2] == ["b *:* m", "c *:* m"] and "b 8:0 rw" in dl and "c 1:3 rwm" in dl
    assert warnings == []
    # runc's subsystem order: cpuset, devices, memory, cpu, pids, blkio
    order = []
    for ctrl, _, _ in kernel.log:
        if not order or order[-1] != ctrl:
            order.append(ctrl)
    assert order == ["cpuset", "devices", "memory", "cpu", "pids", "blkio"]
    # memory: the current limit (unlimited) is above the new memsw: limit first, then memsw
    mem = [n for c, n, _ in kernel.log if c == "memory"]
    assert mem.index("memory.limit_in_bytes") < mem.index("memory.memsw.limit_in_bytes")


def test_v1_memory_raising_writes_swap_first(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    (tmp_path / "memory/ctr/memory.limit_in_bytes").write_text("33554432")
    fs1.set_resources(paths, {"memory": {"limit": 67108864, "swap": 134217728}}, print, skip_devices=True)
    mem = [n for c, n, _ in kernel.log if c == "memory"]
    assert mem == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_memory_lowering_writes_limit_first(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    (tmp_path / "memory/ctr/memory.limit_in_bytes").write_text("268435456")
    fs1.set_resources(paths, {"memory": {"limit": 67108864, "swap": 134217728}}, print)
    mem = [n for c, n, _ in kernel.log if c == "memory"]
    assert mem == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_v1_memory_unlimited_implies_unlimited_swap(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    fs1.set_resources(paths, {"memory": {"limit": -1}}, print)
    assert read(paths, "memory", "memory.limit_in_bytes") == "-1"
    assert read(paths, "memory", "memory.memsw.limit_in_bytes") == "-1"


def test_v1_kernel_memory_warns(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    w = []
    fs1.set_resources(paths, {"memory": {"kernel": 1 << 20}}, w.append)
    assert w == [resources.KERNEL_MEMORY_WARNING]
    assert not any(n == "memory.kmem.limit_in_bytes" for _, n, _ in kernel.log)


def test_v1_pids_zero_and_negative(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    fs1.set_resources(paths, {"pids": {"limit": 0}, "devices": []}, print, skip_devices=True)
    assert read(paths, "pids", "pids.max") == "1"
    fs1.set_resources(paths, {"pids": {"limit": -1}}, print, skip_devices=True)
    assert read(paths, "pids", "pids.max") == "max"


def test_v1_swappiness_out_of_range(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    with pytest.raises(OciError, match="invalid memory swappiness value: 101"):
        fs1.set_resources(paths, {"memory": {"swappiness": 101}}, print)


def test_v1_cpu_shares_read_back(tmp_path, kernel, monkeypatch):
    paths = make_v1_tree(tmp_path)
    real = files.write

    def clamp(d, name, data):
        if name == "cpu.shares":
            data = str(min(int(data), 262144))
        real(d, name, data)
    monkeypatch.setattr(files, "write", clamp)
    with pytest.raises(OciError, match="the maximum allowed cpu-shares is 262144"):
        fs1.set_resources(paths, {"cpu": {"shares": 300000}}, print, skip_devices=True)


def test_v1_period_retried_after_quota(tmp_path, kernel):
    import errno as E
    paths = make_v1_tree(tmp_path)
    kernel.fail[("cpu.cfs_period_us", "10000")] = E.EINVAL
    with pytest.raises(OciError, match="invalid argument"):
        fs1.set_resources(paths, {"cpu": {"period": 10000}}, print, skip_devices=True)
    # EINVAL on the period with a quota to set: retried after the quota
    kernel.fail[("cpu.cfs_period_us", "10000")] = E.EINVAL
    fs1.set_resources(paths, {"cpu": {"period": 10000, "quota": 5000}}, print, skip_devices=True)
    cpu = [(n, v) for c, n, v in kernel.log if c == "cpu"]
    assert cpu == [("cpu.cfs_quota_us", "5000"), ("cpu.cfs_period_us", "10000")]


@pytest.mark.parametrize("res,ctrl", [
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]}, "hugetlb"),
    ({"network": {"classID": 1048577}}, "net_cls"),
    ({"network": {"priorities": [{"name": "eth0", "priority": 5}]}}, "net_prio"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "rdma"),
])
def test_v1_missing_controller_is_a_clear_error(tmp_path, kernel, res, ctrl):
    paths = make_v1_tree(tmp_path)
    with pytest.raises(OciError, match=f"cannot set {ctrl} limit: container could not join or create cgroup"):
        fs1.set_resources(paths, res, print)


def test_v1_unified_refused(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    with pytest.raises(OciError, match="cannot use unified on cgroup v1"):
        fs1.set_resources(paths, {"unified": {"memory.high": "1"}}, print)


def test_v1_hugetlb_and_rdma_when_mounted(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    for ctrl, names in (("hugetlb", ["hugetlb.2MB.limit_in_bytes"]), ("rdma", ["rdma.max"])):
        d = tmp_path / ctrl / "ctr"
        d.mkdir(parents=True)
        for n in names:
            (d / n).write_text("")
        paths[ctrl] = str(d)
    fs1.set_resources(paths, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
                              "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}}, print, skip_devices=True)
    assert read(paths, "hugetlb", "hugetlb.2MB.limit_in_bytes") == "4194304"  # no rsvd file: skipped
    assert read(paths, "rdma", "rdma.max") == "mlx5_1 hca_handle=3 hca_object=10000"


def test_v1_devices_update_is_minimal(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    fs1.set_resources(paths, {"devices": [{"allow": False, "access": "rwm"}]}, print)
    n = len(kernel.log)
    fs1.set_resources(paths, {"devices": [{"allow": False, "access": "rwm"}]}, print)
    assert kernel.log[n:] == []  # already in the target state: nothing written


def test_v1_freeze_thaw(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    fs1.freeze(paths)
    assert read(paths, "freezer", "freezer.state") == "FROZEN"
    assert cgroups.is_path_frozen(paths["freezer"])
    fs1.thaw(paths)
    assert read(paths, "freezer", "freezer.state") == "THAWED"


def test_v1_stats_shape(tmp_path):
    paths = make_v1_tree(tmp_path)
    s = cgstats.collect_v1(paths)
    assert s["cpu"]["usage"]["total"] == 123456
    assert s["cpu"]["usage"]["percpu"] == [100, 200]
    assert s["cpu"]["usage"]["percpu_user"] == [50, 100]
    assert s["cpu"]["throttling"] == {"periods": 5, "throttledPeriods": 2, "throttledTime": 300}
    assert s["cpuset"]["cpus"] == [0, 1] and s["cpuset"]["sched_relax_domain_level"] == -1
    assert s["memory"]["cache"] == 12
    assert s["memory"]["usage"] == {"limit": 9223372036854771712, "usage": 4096, "max": 8192, "failcnt": 0}
    assert s["memory"]["raw"] == {"cache": 12, "rss": 34, "total_rss": 34}
    assert s["pids"] == {"current": 3}
    assert s["blkio"]["ioServiceBytesRecursive"][0] == {"major": 8, "op": "Read", "value": 4096}
    assert s["hugetlb"] == {} and s["intel_rdt"] == {} and s["network_interfaces"] is None
    json.dumps(s)


# --- v2 writers ---------------------------------------------------------------------------------------

V2_FILES = ["cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "cgroup.freeze", "cgroup.kill",
            "memory.max", "memory.low", "memory.high", "memory.swap.max", "memory.oom.group", "memory.current",
            "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems", "pids.max",
            "io.weight", "io.max", "hugetlb.2MB.max", "hugetlb.2MB.rsvd.max", "rdma.max"]


def make_v2_tree(tmp_path):
    d = tmp_path / "unified" / "ctr"
    d.mkdir(parents=True)
    for n in V2_FILES:
        (d / n).write_text("")
    (d / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma")
    (d / "memory.current").write_text("1048576")
    return str(d)


def test_v2_every_field(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    res = {
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
        "cpu": {"shares": 512, "quota": 50000, "burst": 1000, "cpus": "0", "mems": "0", "idle": 0},
        "pids": {"limit": 33},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "rdma": {"mlx5_1": {"hcaObjects": 100}},
        "unified": {"memory.high": "60000000", "memory.oom.group": "1"},
    }
    fs2.set_resources(d, res, print, skip_devices=True)
    f = lambda n: open(os.path.join(d, n)).read()  # noqa: E731
    assert f("memory.max") == "67108864"
    assert f("memory.swap.max") == str(134217728 - 67108864)
    assert f("memory.low") == "33554432"
    assert f("cpu.weight") == "59"
    assert f("cpu.max") == "50000 100000"
    assert f("cpu.max.burst") == "1000"
    assert f("cpu.idle") == "0"
    assert f("cpuset.cpus") == "0"
    assert f("pids.max") == "33"
    assert f("io.weight") == "4950"
    assert [v for _, n, v in kernel.log if n == "io.max"] == ["8:0 rbps=1048576", "8:0 wiops=100"]
    assert f("hugetlb.2MB.max") == "4194304" and f("hugetlb.2MB.rsvd.max") == "4194304"
    assert f("rdma.max") == "mlx5_1 hca_object=100"
    assert f("memory.high") == "60000000" and f("memory.oom.group") == "1"
    order = [n for _, n, _ in kernel.log]
    # runc fs2 order: pids, memory, io, cpu, (devices), cpuset, hugetlb, rdma, unified
    assert order.index("pids.max") < order.index("memory.swap.max") < order.index("io.weight") \
        < order.index("cpu.idle") < order.index("cpuset.cpus") < order.index("hugetlb.2MB.max") \
        < order.index("rdma.max") < order.index("memory.high")


def test_v2_quota_only_period_default_and_unlimited(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    fs2.set_resources(d, {"cpu": {"period": 50000}}, print, skip_devices=True)
    assert open(os.path.join(d, "cpu.max")).read() == "max 50000"
    fs2.set_resources(d, {"cpu": {"quota": -1, "period": 100000}}, print, skip_devices=True)
    assert open(os.path.join(d, "cpu.max")).read() == "max 100000"


def test_v2_memory_swap_equal_means_no_swap(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    fs2.set_resources(d, {"memory": {"limit": 1 << 26, "swap": 1 << 26}}, print, skip_devices=True)
    assert open(os.path.join(d, "memory.swap.max")).read() == "0"
    fs2.set_resources(d, {"memory": {"limit": -1}}, print, skip_devices=True)
    assert open(os.path.join(d, "memory.swap.max")).read() == "max"
    assert open(os.path.join(d, "memory.max")).read() == "max"


def test_v2_check_before_update(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    with pytest.raises(OciError, match="rejecting memory limit 4096 <= usage 1048576"):
        fs2.set_resources(d, {"memory": {"limit": 4096, "checkBeforeUpdate": True}}, print, skip_devices=True)
    fs2.set_resources(d, {"memory": {"limit": 4096}}, print, skip_devices=True)


# --- blkio weights: which files the host's kernel has --------------------------------------------

BLKIO_HOSTS = {
    # CFQ era (before Linux 5.0): the plain names and leaf weights
    "cfq": ["blkio.weight", "blkio.weight_device", "blkio.leaf_weight", "blkio.leaf_weight_device"],
    # BFQ: its own names, no leaf weights
    "bfq": ["blkio.bfq.weight", "blkio.bfq.weight_device"],
    # neither (mq-deadline/kyber/none only): throttle files only
    "none": [],
}


def blkio_tree(tmp_path, host):
    paths = make_v1_tree(tmp_path)
    d = paths["blkio"]
    for n in os.listdir(d):
        if n.startswith("blkio.") and not n.startswith("blkio.throttle."):
            os.unlink(os.path.join(d, n))
    for n in BLKIO_HOSTS[host]:
        with open(os.path.join(d, n), "w") as f:
            f.write("")
    return paths


@pytest.mark.parametrize("host", list(BLKIO_HOSTS))
@pytest.mark.parametrize("bio,field,wfile,data", [
    ({"weight": 300}, "/linux/resources/blockIO/weight", "weight", "300"),
    ({"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 20}, {"major": 8, "minor": 16, "weight": 400}]},
     "/linux/resources/blockIO/weightDevice/0/leafWeight", "weight_device", "8:16 400"),
    ({"leafWeight": 300}, "/linux/resources/blockIO/leafWeight", "leaf_weight", "300"),
], ids=["weight", "weightDevice", "leafWeight"])
def test_v1_blkio_weights_per_host(tmp_path, kernel, host, bio, field, wfile, data):
    """What the kernel has decides: the value lands in the file it has, else a ConfigError naming the
    field and the missing host feature, before anything is written."""
    paths = blkio_tree(tmp_path, host)
    has = BLKIO_HOSTS[host]
    names = {f.rsplit(".", 1)[1] for f in has}
    wants = {"weight"} if "weight" in bio else set()
    wants |= {"leaf_weight"} if "leafWeight" in bio else set()
    for wd in bio.get("weightDevice", []):
        wants |= {"weight_device"} if "weight" in wd else set()
        wants |= {"leaf_weight_device"} if "leafWeight" in wd else set()
    if wants <= names:
        cgroups.set_resources(paths, {"blockIO": bio}, skip_devices=True)
        assert read(paths, "blkio", [f for f in has if f.endswith("." + wfile)][0]) == data
        return
    with pytest.raises(OciError) as ei:
        cgroups.set_resources(paths, {"blockIO": bio}, skip_devices=True)
    msg = str(ei.value)
    assert msg.startswith(f"config.json: {field}: this kernel has no blkio "), msg
    assert "BFQ not available" in msg or "CFQ" in msg, msg
    assert [w for w in kernel.log if w[1].startswith("blkio.")] == []


def test_v1_blkio_weight_error_text_without_bfq(tmp_path, kernel):
    paths = blkio_tree(tmp_path, "none")
    with pytest.raises(OciError) as ei:
        cgroups.set_resources(paths, {"blockIO": {"weight": 300}}, skip_devices=True)
    assert str(ei.value) == ("config.json: /linux/resources/blockIO/weight: this kernel has no blkio weight "
                             "(BFQ not available)")
    # update names its own request
    with pytest.raises(OciError) as ei:
        cgroups.set_resources(paths, {"blockIO": {"weight": 300}}, skip_devices=True,
                              source="update --blkio-weight", pointer_base="")
    assert str(ei.value) == "update --blkio-weight: /blockIO/weight: this kernel has no blkio weight (BFQ not available)"
    # throttling needs no scheduler: applied
    cgroups.set_resources(paths, {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 9}]}},
                          skip_devices=True)
    assert read(paths, "blkio", "blkio.throttle.read_bps_device") == "8:0 9"


def test_v2_io_weight_without_bfq_or_iocost(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    os.unlink(os.path.join(d, "io.weight"))
    with pytest.raises(OciError) as ei:
        cgroups.set_resources({"": d}, {"blockIO": {"weight": 300}}, skip_devices=True)
    assert str(ei.value) == ("config.json: /linux/resources/blockIO/weight: this kernel has no io weight "
                             "(neither BFQ nor blk-iocost available)")


# --- other host facts: RT group scheduling, huge page sizes, controllers without a hierarchy ----------

def test_v1_realtime_without_rt_group_sched(tmp_path, kernel):
    """No cpu.rt_* files (CONFIG_RT_GROUP_SCHED unset): the field is named, nothing of cpu is written."""
    paths = make_v1_tree(tmp_path)
    for n in ("cpu.rt_runtime_us", "cpu.rt_period_us"):
        os.unlink(os.path.join(paths["cpu"], n))
    for cpu, field in (({"shares": 512, "realtimeRuntime": 950, "realtimePeriod": 1000}, "realtimeRuntime"),
                       ({"realtimePeriod": 1000}, "realtimePeriod")):
        with pytest.raises(OciError) as ei:
            cgroups.set_resources(paths, {"cpu": cpu}, skip_devices=True)
        assert str(ei.value) == (f"config.json: /linux/resources/cpu/{field}: this kernel has no real-time group "
                                 "scheduling (no cpu.rt_runtime_us: CONFIG_RT_GROUP_SCHED is unset or disabled)")
    with pytest.raises(OciError, match=r"^update --cpu-rt-runtime: /cpu/realtimeRuntime: this kernel has no "):
        cgroups.set_resources(paths, {"cpu": {"realtimeRuntime": 5}}, skip_devices=True,
                              source="update --cpu-rt-runtime", pointer_base="")
    assert [w for w in kernel.log if w[0] == "cpu"] == []
    # with the files: applied (runtime before period when the period alone is refused)
    paths2 = make_v1_tree(tmp_path / "rt")
    cgroups.set_resources(paths2, {"cpu": {"realtimeRuntime": 950, "realtimePeriod": 1000}}, skip_devices=True)
    assert read(paths2, "cpu", "cpu.rt_runtime_us") == "950"


def _hugetlb_dir(tmp_path, suffix, sizes):
    d = tmp_path / "hugetlb" / "ctr"
    d.mkdir(parents=True)
    for size in sizes:
        (d / f"hugetlb.{size}.{suffix}").write_text("")
        (d / f"hugetlb.{size}.usage_in_bytes").write_text("0")
    return str(d)


@pytest.mark.parametrize("sizes", [["2MB", "1GB"], ["2MB"], ["64KB", "2MB", "32MB", "1GB"], ["32MB", "2MB", "64KB"]],
                         ids=["2MB+1GB", "2MB-only", "arm64", "arm64-no-1GB"])
def test_v1_hugetlb_page_sizes_per_host(tmp_path, kernel, sizes):
    """A page size the host has is applied; one it lacks names the entry and lists the host's sizes."""
    paths = make_v1_tree(tmp_path)
    paths["hugetlb"] = _hugetlb_dir(tmp_path, "limit_in_bytes", sizes)
    limits = [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": 1 << 30}]
    if "1GB" in sizes:
        cgroups.set_resources(paths, {"hugepageLimits": limits}, skip_devices=True)
        assert read(paths, "hugetlb", "hugetlb.1GB.limit_in_bytes") == str(1 << 30)
        return
    with pytest.raises(OciError) as ei:
        cgroups.set_resources(paths, {"hugepageLimits": limits}, skip_devices=True)
    have = ", ".join(sorted(sizes, key=fs1._page_bytes))  # listed smallest first
    assert str(ei.value) == ("config.json: /linux/resources/hugepageLimits/1/pageSize: this kernel has no 1GB huge "
                             f"pages (no hugetlb.1GB.limit_in_bytes; this host's sizes: {have})")
    if len(sizes) == 3:
        assert have == "64KB, 2MB, 32MB"
    assert [w for w in kernel.log if w[1].startswith("hugetlb.")] == []


def test_v2_hugetlb_page_size_and_missing_controller(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    with pytest.raises(OciError) as ei:
        cgroups.set_resources({"": d}, {"hugepageLimits": [{"pageSize": "1GB", "limit": 1 << 30}]}, skip_devices=True)
    assert str(ei.value) == ("config.json: /linux/resources/hugepageLimits/0/pageSize: this kernel has no 1GB huge "
                             "pages (no hugetlb.1GB.max; this host's sizes: 2MB)")
    for n in os.listdir(d):
        if n.startswith(("hugetlb.", "rdma.")):
            os.unlink(os.path.join(d, n))
    with open(os.path.join(d, "cgroup.controllers"), "w") as f:
        f.write("cpuset cpu io memory pids")
    for res, ptr, ctrl in (({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}, "/hugepageLimits", "hugetlb"),
                           ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "/rdma", "rdma")):
        with pytest.raises(OciError) as ei:
            cgroups.set_resources({"": d}, res, skip_devices=True)
        assert str(ei.value) == (f"config.json: /linux/resources{ptr}: no {ctrl} cgroup controller for this cgroup: "
                                 f"it is not in {d}/cgroup.controllers (the kernel lacks it, or the parent cgroup "
                                 "does not delegate it)")


PROC_CGROUPS = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpu\t1\t12\t1
net_cls\t0\t11\t1
net_prio\t0\t11\t0
hugetlb\t0\t11\t1
"""


@pytest.mark.parametrize("res,ptr,ctrl,why", [
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]}, "/hugepageLimits", "hugetlb",
     "the kernel's hugetlb controller is on the unified (v2) hierarchy only"),
    ({"network": {"classID": 1048577}}, "/network/classID", "net_cls",
     "the kernel's net_cls controller is mounted on no v1 hierarchy"),
    ({"network": {"priorities": [{"name": "eth0", "priority": 5}]}}, "/network/priorities", "net_prio",
     "the kernel's net_prio controller is disabled (cgroup_disable=)"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "/rdma", "rdma", "the kernel has no rdma controller"),
], ids=["hugetlb-v2-only", "net_cls-unmounted", "net_prio-disabled", "rdma-not-built"])
def test_v1_controller_the_host_lacks_names_the_field(tmp_path, kernel, monkeypatch, res, ptr, ctrl, why):
    """A setting whose controller the host mounts no v1 hierarchy for: the field, and why (from a fake
    /proc/cgroups and a fake unified hierarchy) — what a second machine would show, proven here."""
    paths = make_v1_tree(tmp_path)
    unified = tmp_path / "unified-root"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("hugetlb")
    fake = tmp_path / "proc-cgroups"
    fake.write_text(PROC_CGROUPS)
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {"cpu": ("/x/cpu", "/"), "": (str(unified), "/")})
    real = cgroups.kernel_controllers
    monkeypatch.setattr(cgroups, "kernel_controllers", lambda proc_cgroups=None: real(str(fake)))
    with pytest.raises(OciError) as ei:
        cgroups.set_resources(paths, res, skip_devices=True)
    assert str(ei.value) == f"config.json: /linux/resources{ptr}: cannot set {ctrl} limit: this host has no {ctrl} " \
                            f"cgroup v1 hierarchy ({why})"


def test_missing_namespace_names_the_entry(tmp_path):
    from ociruntime import validate
    ns = tmp_path / "ns"
    ns.mkdir()
    for n in ("mnt", "pid", "net", "user"):
        (ns / n).write_text("")
    linux = {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"},
                            {"type": "cgroup", "path": "/proc/1/ns/cgroup"}, {"type": "time"}]}
    assert list(validate.missing_namespaces(linux, str(ns))) == [
        ("/linux/namespaces/4", f"this kernel has no time namespace ({ns}/time is missing: CONFIG_TIME_NS, "
                                "Linux >= 5.6)")]
    (ns / "time").write_text("")
    assert list(validate.missing_namespaces(linux, str(ns))) == []


def test_v2_unified_errors(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    with pytest.raises(OciError, match="must be a file name"):
        fs2.set_resources(d, {"unified": {"../x": "1"}}, print, skip_devices=True)
    with pytest.raises(OciError, match="controller 'misc' not available"):
        fs2.set_resources(d, {"unified": {"misc.max": "x 1"}}, print, skip_devices=True)


def test_v2_bfq_weight_used_when_present(tmp_path, kernel, monkeypatch):
    d = make_v2_tree(tmp_path)
    with open(os.path.join(d, "io.bfq.weight"), "w") as f:
        f.write("default 100\n")
    fs2.set_resources(d, {"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}},
                      print, skip_devices=True)
    data = open(os.path.join(d, "io.bfq.weight")).read()
    assert data.startswith("500") and "8:0 200" in data
    assert open(os.path.join(d, "io.weight")).read() == ""


def test_v2_freeze_waits_for_events(tmp_path, kernel):
    d = make_v2_tree(tmp_path)
    with open(os.path.join(d, "cgroup.events"), "w") as f:
        f.write("populated 1\nfrozen 1\n")
    fs2.freeze(d)
    assert open(os.path.join(d, "cgroup.freeze")).read() == "1"
    assert cgroups.is_path_frozen(d)
    fs2.thaw(d)
    assert open(os.path.join(d, "cgroup.freeze")).read() == "0"


def test_v2_enable_controllers(tmp_path, kernel):
    mount = tmp_path / "mnt"
    (mount / "a" / "b").mkdir(parents=True)
    for p in (mount, mount / "a"):
        (p / "cgroup.controllers").write_text("cpu memory pids")
        (p / "cgroup.subtree_control").write_text("")
    fs2.enable_controllers(str(mount / "a" / "b"), str(mount))
    assert (mount / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (mount / "a" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


@pytest.mark.parametrize("res, need", [
    (None, False), ({}, False), ({"devices": [{"allow": False, "access": "rwm"}]}, False),
    ({"memory": {"limit": 1 << 26}}, True), ({"memory": {"reservation": 1}}, True), ({"pids": {"limit": 5}}, True),
    ({"pids": {"limit": 0}}, False), ({"cpu": {"shares": 2}}, True), ({"cpu": {"quota": 1000}}, True),
    ({"cpu": {"cpus": "0"}}, True), ({"blockIO": {"weight": 10}}, True),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}}, True),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}, False),   # no hugetlb controller on this host
    ({"network": {"classID": 1}}, False)])
def test_v2_needs_controllers(tmp_path, res, need):
    """runc fs2 needAnyControllers: a limit of a controller the host has."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids")
    assert fs2.needs_controllers(res, str(tmp_path)) is need
    assert fs2.needs_controllers({"pids": {"limit": 5}}, str(tmp_path / "nosuch")) is True  # unreadable: needed


def test_v2_rootless_without_a_cgroup_refuses_limits(tmp_path, monkeypatch):
    """The rootless manager without a cgroupsPath on v2, where the user may not create its cgroup: runc's fs2
    Apply wording when a limit needs one; without such a limit the container runs in the caller's cgroup."""
    mount = tmp_path / "cg"
    mount.mkdir()
    (mount / "cgroup.controllers").write_text("cpu memory pids")
    target = str(mount / "user" / "c1")
    real_mkdir = os.mkdir

    def mkdir(p, mode=0o777):
        if str(p).startswith(str(mount)):
            raise PermissionError(13, "Permission denied", str(p))
        return real_mkdir(p, mode)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(cgroups, "_mountpoint_of", lambda p: str(mount))
    m = cgroups.Fs2Manager({"": target}, rootless=True, lax=True)
    with pytest.raises(OciError) as ei:
        m.prepare({"memory": {"limit": 1 << 26}})
    assert str(ei.value) == ("unable to apply cgroup configuration: rootless needs no limits + no cgrouppath when "
                             f"no permission is granted for cgroups: mkdir {mount}/user: permission denied")
    m = cgroups.Fs2Manager({"": target}, rootless=True, lax=True)
    m.prepare({"devices": [{"allow": False, "access": "rwm"}]})
    assert m.paths == {} and m.made == []
    assert m.mount_paths() == {"": target}   # the cgroup the mount falls back to (runc's cgroup2Path)
    # with a cgroupsPath (not lax) the permission error is create's own, as before
    m = cgroups.Fs2Manager({"": target}, rootless=True, lax=False)
    with pytest.raises(OciError, match=r"^create cgroup: .*/user: Permission denied"):
        m.prepare({})


def test_v2_stats(tmp_path):
    d = make_v2_tree(tmp_path)
    for n, v in (("pids.current", "2"), ("pids.max", "max"), ("memory.max", "max"), ("memory.peak", "2097152"),
                 ("memory.swap.current", "0"), ("memory.swap.max", "max"),
                 ("memory.stat", "anon 4096\nfile 8192\n"),
                 ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 1\nnr_throttled 0\nthrottled_usec 0\n"),
                 ("io.stat", "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"),
                 ("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")):
        with open(os.path.join(d, n), "w") as f:
            f.write(v)
    s = cgstats.collect_v2(d)
    assert s["pids"] == {"current": 2}
    assert s["memory"]["usage"] == {"limit": (1 << 64) - 1, "usage": 1048576, "max": 2097152, "failcnt": 0}
    assert s["memory"]["swap"]["limit"] == (1 << 64) - 1
    assert s["memory"]["cache"] == 8192
    assert s["memory"]["psi"] == {"some": {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 5}}
    assert s["cpu"]["usage"] == {"total": 10000, "kernel": 4000, "user": 6000}
    assert s["cpu"]["throttling"] == {"periods": 1}
    assert s["blkio"]["ioServiceBytesRecursive"] == [{"major": 8, "op": "Read", "value": 4096},
                                                     {"major": 8, "op": "Write"}]


def test_size_names():
    assert cgstats.size_name(2 << 20) == "2MB"
    assert cgstats.size_name(1 << 30) == "1GB"
    assert cgstats.size_name(64 << 10) == "64KB"


# --- update merge, flag parsing ------------------------------------------------------------------------

def test_merge_update_semantics():
    saved = {"memory": {"limit": 100, "swap": 200, "swappiness": 10, "kernel": 5},
             "cpu": {"shares": 512, "quota": 5000, "period": 100000, "cpus": "0"},
             "pids": {"limit": 10}, "blockIO": {"weight": 100, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]},
             "hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}
    new = {"memory": {"limit": 300}, "cpu": {"quota": 7000}, "blockIO": {
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 9}, {"major": 8, "minor": 16, "rate": 3}]}}
    m = resources.merge_update(saved, new)
    assert m["memory"] == {"limit": 300, "swap": 200, "swappiness": 10, "checkBeforeUpdate": False}
    assert m["cpu"] == {"shares": 512, "quota": 7000, "period": 100000}  # cpus not given: reset
    assert "pids" not in m  # not given: not re-applied (runc: PidsLimit = r.Pids.Limit)
    assert m["blockIO"]["throttleReadBpsDevice"] == [{"major": 8, "minor": 0, "rate": 9}, {"major": 8, "minor": 16, "rate": 3}]
    assert m["hugepageLimits"] == saved["hugepageLimits"]
    assert saved["memory"]["limit"] == 100  # not modified in place
    # memory -1 alone implies swap 0 (i.e. "unlimited" handling), idle implies shares 0
    m2 = resources.merge_update({}, {"memory": {"limit": -1}, "cpu": {"idle": 1}})
    assert m2["memory"]["limit"] == -1 and m2["memory"]["swap"] == 0
    assert "shares" not in m2["cpu"] and m2["cpu"]["idle"] == 1
    m3 = resources.merge_update({"cpu": {"quota": 1, "period": 2}}, {"cpu": {"period": 3}})
    assert m3["cpu"] == {"quota": 1, "period": 3}


def test_ram_in_bytes_and_durations():
    from ociruntime.lifecycle.cgroupcmds import parse_duration, ram_in_bytes
    assert ram_in_bytes("64m") == 64 << 20
    assert ram_in_bytes("1g") == 1 << 30
    assert ram_in_bytes("1.5GiB") == 3 << 29
    assert ram_in_bytes("1024") == 1024
    with pytest.raises(OciError, match="invalid size"):
        ram_in_bytes("lots")
    assert parse_duration("5s") == 5
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_duration("1m30s") == 90
    assert parse_duration("0") == 0
    with pytest.raises(OciError, match="missing unit"):
        parse_duration("5")
    with pytest.raises(OciError, match="unknown unit"):
        parse_duration("5x")


# --- paths / layout -------------------------------------------------------------------------------------

def test_is_v2_and_controller_path():
    assert cgroups.is_v2({"": "/sys/fs/cgroup/x"})
    assert not cgroups.is_v2({"": "/sys/fs/cgroup/unified/x", "memory": "/m/x"})
    assert not cgroups.is_v2({})
    paths = {"cpu,cpuacct": "/c/x", "memory": "/m/x", "": "/u/x"}
    assert fs1.controller_path(paths, "cpuacct") == "/c/x"
    assert fs1.controller_path(paths, "hugetlb") == ""


def test_files_error_texts(tmp_path):
    with pytest.raises(files.CgroupError, match=r"^openat2 .*/nope: no such file or directory$"):
        files.write(str(tmp_path), "nope", "1")
    with pytest.raises(files.NoPath, match="no directory specified for x"):
        files.write("", "x", "1")
    assert files.parse_uint("max") == (1 << 64) - 1
    assert files.parse_uint("-1") == 0


# --- the package API ------------------------------------------------------------------------------------

def test_set_resources_refuses_pids_below_setup_needs(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    for limit in (0, 1):
        with pytest.raises(OciError, match=f"pids.limit {limit} is too low"):
            cgroups.set_resources(paths, {"pids": {"limit": limit}})
    cgroups.set_resources(paths, {"pids": {"limit": 2}}, skip_devices=True)
    assert read(paths, "pids", "pids.max") == "2"
    # update (skip_devices) may lower it: the container is set up by then
    cgroups.set_resources(paths, {"pids": {"limit": 0}}, skip_devices=True)
    assert read(paths, "pids", "pids.max") == "1"


def test_set_resources_wraps_errors_and_dispatches_v2(tmp_path, kernel, monkeypatch):
    paths = make_v1_tree(tmp_path)
    # a hugetlb hierarchy the host mounts but the container was not given (rootless): runc's text
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {"hugetlb": ("/sys/fs/cgroup/hugetlb", "/")})
    with pytest.raises(OciError, match=r"^error setting cgroup config: cannot set hugetlb limit: container could "
                                       r"not join or create cgroup$"):
        cgroups.set_resources(paths, {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})
    d = make_v2_tree(tmp_path)
    cgroups.set_resources({"": d}, {"pids": {"limit": 5}}, skip_devices=True)
    assert open(os.path.join(d, "pids.max")).read() == "5"


def test_all_pids_recursive_and_exists(tmp_path):
    paths = make_v1_tree(tmp_path)
    (tmp_path / "devices/ctr/cgroup.procs").write_text("10\n11\n")
    sub = tmp_path / "devices/ctr/sub"
    sub.mkdir()
    (sub / "cgroup.procs").write_text("12\n")
    assert sorted(cgroups.all_pids(paths)) == [10, 11, 12]
    assert cgroups.exists(paths)
    assert not cgroups.exists({"devices": str(tmp_path / "gone")})
    d = make_v2_tree(tmp_path)
    (tmp_path / "unified/ctr/cgroup.procs").write_text("7\n")
    assert cgroups.all_pids({"": d}) == [7]


def test_freeze_dispatch_and_frozen_status(tmp_path, kernel):
    paths = make_v1_tree(tmp_path)
    st = {"cgroup_paths": paths}
    cgroups.freeze(paths)
    assert cgroups.is_frozen(st)
    cgroups.thaw(paths)
    assert not cgroups.is_frozen(st)


def test_update_request_from_flags_and_json(monkeypatch):
    import io
    from ociruntime.lifecycle import cgroupcmds as lc

    class Ctx:
        def __init__(self, flags):
            self.flags = flags

        def flag(self, name, default=None):
            return self.flags.get(name, default)

    r = lc._update_request(Ctx({"memory": "64m", "memory-swap": "-1", "cpu-quota": "20000", "cpu-share": "512",
                                "cpuset-cpus": "0-1", "pids-limit": 0, "blkio-weight": 300, "cpu-idle": "1"}))
    assert r == {"memory": {"limit": 64 << 20, "swap": -1}, "cpu": {"quota": 20000, "shares": 512, "cpus": "0-1",
                                                                   "idle": 1},
                 "blockIO": {"weight": 300}, "pids": {"limit": 0}}
    with pytest.raises(OciError, match="invalid value for cpu-share"):
        lc._update_request(Ctx({"cpu-share": "-5"}))
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"pids": {"limit": 9}} trailing'))
    assert lc._update_request(Ctx({"resources": "-"})) == {"pids": {"limit": 9}}
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(OciError):
        lc._update_request(Ctx({"r": "-"}))


def test_saved_resources_fallback(tmp_path):
    from ociruntime.lifecycle.cgroupcmds import _saved_resources
    (tmp_path / "config.json").write_text(json.dumps({"linux": {"resources": {"pids": {"limit": 3}}}}))
    assert _saved_resources({"bundle": str(tmp_path)}) == {"pids": {"limit": 3}}
    assert _saved_resources({"bundle": str(tmp_path), "resources": {"cpu": {"shares": 2}}}) == {"cpu": {"shares": 2}}
    assert _saved_resources({"bundle": str(tmp_path / "nope")}) == {}


def _prewarm_with(monkeypatch, tmp_path, hier):
    import time as _time
    from ociruntime import cgroups as cg
    monkeypatch.setattr(cg, "hierarchies", lambda: hier)
    cg.prewarm_attach()
    deadline = _time.monotonic() + 5
    procs = tmp_path / "own" / "cgroup.procs"
    while _time.monotonic() < deadline and procs.exists() and not procs.read_text():
        _time.sleep(0.01)
    return procs


def test_prewarm_writes_zero_to_own_v1_cgroup(monkeypatch, tmp_path):
    # "0" = the writing process itself, into the cgroup it is already in: a no-op move whose only
    # effect is the kernel's rwsem grace period, started early (see prewarm_attach)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "cgroup.procs").write_text("")
    procs = _prewarm_with(monkeypatch, tmp_path, {"": ("/nonexistent", "/"), "pids": (str(tmp_path), "/own")})
    assert procs.read_text() == "0"


def test_prewarm_skipped_on_pure_v2(monkeypatch, tmp_path):
    # pure v2: nothing is placed by cgroup.procs writes, a warm-up would only delay the clone
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "cgroup.procs").write_text("")
    procs = _prewarm_with(monkeypatch, tmp_path, {"": (str(tmp_path), "/own")})
    import time as _time
    _time.sleep(0.1)
    assert procs.read_text() == ""


def test_prewarm_leaves_own_cgroup_unchanged():
    import subprocess
    import sys
    code = ("import time; from ociruntime import cgroups as cg\n"
            "before = open('/proc/self/cgroup').read(); cg.prewarm_attach(); time.sleep(0.3)\n"
            "assert open('/proc/self/cgroup').read() == before\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
