"""The cgroup v2 manager on a real pure-v2 kernel: runs INSIDE the qemu guest (tests/vm/qemu.py).

Not collected on the host (the file name does not match test_*.py); tests/vm/test_vm_v2.py boots
the guest and runs ``pytest tests/vm/guest_v2.py`` (and the rest of its GUEST_SUITE) there. The
guest kernel (Debian's) offers every v2 controller (cpuset cpu io memory hugetlb pids rdma misc)
and a raw scratch disk, ``$OCI_VM_SCRATCH`` (/dev/vda), for the io and device tests.

Every container's cgroup is /sys/fs/cgroup/ocitest/<container id> (so the plugin's leak guard
finds leftovers by id); the module fixture removes /sys/fs/cgroup/ocitest at the end.
"""
import json
import os
import subprocess
import time
import uuid

import pytest

CG = "/sys/fs/cgroup"
PARENT = "ocitest"

pytestmark = pytest.mark.skipif(
    not (os.environ.get("OCI_VM_GUEST") and os.path.exists(f"{CG}/cgroup.controllers")
         and not os.path.isdir(f"{CG}/memory")),
    reason="runs inside the pure cgroup v2 guest (tests/vm/test_vm_v2.py)")


def scratch():
    st = os.stat(os.environ.get("OCI_VM_SCRATCH", "/dev/vda"))
    return os.major(st.st_rdev), os.minor(st.st_rdev)


@pytest.fixture(scope="module", autouse=True)
def parent_cgroup():
    yield
    d = f"{CG}/{PARENT}"
    for dirpath, _dirs, _files in sorted(os.walk(d, topdown=False), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def cg(cid, name=None):
    d = f"{CG}/{PARENT}/{cid}"
    return d if name is None else os.path.join(d, name)


def rd(cid, name):
    with open(cg(cid, name)) as f:
        return f.read().strip()


def keyed(cid, name):
    out = {}
    for line in rd(cid, name).splitlines():
        k, v = line.split()
        out[k] = v
    return out


def bundle(make_test_bundle, cid, res=None, args=("sleep", "300"), writable=False, **linux):
    b = make_test_bundle(args=list(args))
    b.linux["cgroupsPath"] = f"/{PARENT}/{cid}"
    if res is not None:
        b.linux["resources"] = res
    b.linux.update(linux)
    if writable:
        b.set_readonly_root(False)
    b.write()
    return b


def new_id(rt, prefix):
    return rt.new_id(prefix)


def create_ok(rt, cid, b):
    r = rt.create(cid, b)
    assert r.rc == 0, (r.describe(), rt.output(cid))


def wait_for(pred, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timeout waiting for {what}"
        time.sleep(0.05)


# --- resources -----------------------------------------------------------------------------------------

def test_resources_written(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2r-")
    ma, mi = scratch()
    res = {"memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296},
           "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0},
           "pids": {"limit": 20},
           "blockIO": {"throttleReadBpsDevice": [{"major": ma, "minor": mi, "rate": 1048576}],
                       "throttleWriteIOPSDevice": [{"major": ma, "minor": mi, "rate": 200}]},
           "unified": {"memory.high": "62914560", "memory.oom.group": "1"}}
    create_ok(oci_runtime, cid, bundle(make_test_bundle, cid, res))
    assert rd(cid, "memory.max") == "67108864"
    assert rd(cid, "memory.low") == "33554432"
    assert rd(cid, "memory.swap.max") == str(100663296 - 67108864)  # memory+swap -> swap only
    assert rd(cid, "cpu.weight") == "59"  # shares 512 -> weight (runc's conversion)
    assert rd(cid, "cpu.max") == "50000 100000"
    assert rd(cid, "cpu.max.burst") == "1000"
    assert rd(cid, "pids.max") == "20"
    assert f"{ma}:{mi} rbps=1048576 wbps=max riops=max wiops=200" in rd(cid, "io.max")
    assert rd(cid, "memory.high") == "62914560"  # page-aligned: the kernel rounds down
    assert rd(cid, "memory.oom.group") == "1"
    # the init is in the cgroup before it runs anything
    pid = oci_runtime.state(cid)["pid"]
    assert str(pid) in rd(cid, "cgroup.procs").split()
    assert oci_runtime.delete(cid, force=True).rc == 0
    assert not os.path.exists(cg(cid))


def test_defaults_unlimited_and_conversions(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2d-")
    create_ok(oci_runtime, cid, bundle(make_test_bundle, cid, {"memory": {"limit": -1}, "pids": {"limit": -1},
                                                               "cpu": {"shares": 2, "period": 50000}}))
    assert rd(cid, "memory.max") == "max"
    assert rd(cid, "memory.swap.max") == "max"
    assert rd(cid, "pids.max") == "max"
    assert rd(cid, "cpu.weight") == "1"
    assert rd(cid, "cpu.max") == "max 50000"
    assert oci_runtime.delete(cid, force=True).rc == 0


def test_weight_and_hugetlb_applied_bad_settings_refused(oci_runtime, make_test_bundle):
    # Debian's kernel: io.weight from blk-iocost (io.bfq.weight only with the bfq module loaded), hugetlb
    cid = new_id(oci_runtime, "v2w-")
    res = {"blockIO": {"weight": 500}, "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}
    r = oci_runtime.create(cid, bundle(make_test_bundle, cid, res))
    out = r.stderr + "".join(oci_runtime.output(cid))
    if os.path.exists(f"{CG}/io.cost.qos"):
        assert r.rc == 0, out
        bfq = cg(cid, "io.bfq.weight")
        if os.path.exists(bfq):
            assert open(bfq).read().split()[-1] == "500"
        else:
            assert rd(cid, "io.weight") == "default 4950"  # runc's blkio -> io weight conversion
        assert rd(cid, "hugetlb.2MB.max") == "4194304"
        assert rd(cid, "hugetlb.2MB.rsvd.max") == "4194304"
        assert oci_runtime.delete(cid, force=True).rc == 0
    else:
        assert r.rc == 1 and "io.weight" in out, out
    assert not os.path.exists(cg(cid))
    cases = [({"unified": {"nosuch.max": "1"}}, "controller 'nosuch' not available"),
             ({"unified": {"misc.max": "nosuchresource 1"}}, "unable to set unified resource 'misc.max'"),
             ({"rdma": {"nosuchdev": {"hcaHandles": 2}}}, "rdma.max"),
             ({"unified": {"../cgroup.procs": "1"}}, "must be a file name")]
    # a huge page size this kernel lacks (host fact: /sys/kernel/mm/hugepages): refused naming the entry
    have = set(os.listdir("/sys/kernel/mm/hugepages")) if os.path.isdir("/sys/kernel/mm/hugepages") else set()
    lack = next(size for size, d in (("64KB", "hugepages-64kB"), ("32MB", "hugepages-32768kB"),
                                     ("16GB", "hugepages-16777216kB")) if d not in have)
    cases.append(({"hugepageLimits": [{"pageSize": lack, "limit": 1 << 20}]},
                  f"/linux/resources/hugepageLimits/0/pageSize: this kernel has no {lack} huge pages"))
    for res, msg in cases:
        cid = new_id(oci_runtime, "v2u-")
        r = oci_runtime.create(cid, bundle(make_test_bundle, cid, res))
        out = r.stderr + "".join(oci_runtime.output(cid))
        assert r.rc == 1 and msg in out, (res, out)
        assert not os.path.exists(cg(cid))


# --- limits bite ---------------------------------------------------------------------------------------

def test_memory_limit_oom_kills(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2m-")
    b = bundle(make_test_bundle, cid, {"memory": {"limit": 33554432, "swap": 33554432}},
               args=["sh", "-c", 'x=$(head -c 60000000 /dev/zero | tr "\\000" a); echo survived ${#x}'])
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    oci_runtime.wait_stopped(cid, timeout=180)  # TCG on a busy host can be slow to get there
    assert int(keyed(cid, "memory.events")["oom_kill"]) >= 1
    assert "survived" not in oci_runtime.output(cid)[0]
    assert oci_runtime.delete(cid).rc == 0


def test_pids_limit_stops_fork_bomb(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2p-")
    script = ("( while true; do sleep 30 & done ) 2>/tmp/err; read cur < /sys/fs/cgroup/pids.current; "
              "kill -9 -1; wait; echo $cur; cat /tmp/err")
    b = bundle(make_test_bundle, cid, {"pids": {"limit": 10}}, args=["sh", "-c", script], writable=True,
               namespaces=[{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")])
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    oci_runtime.wait_stopped(cid, timeout=60)
    out = oci_runtime.output(cid)[0]
    cur, err = out.split("\n", 1)
    assert 8 <= int(cur) <= 10 and "can't fork" in err, out
    assert int(keyed(cid, "pids.events")["max"]) >= 1
    assert oci_runtime.delete(cid).rc == 0


def test_cpu_max_throttles(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2c-")
    b = bundle(make_test_bundle, cid, {"cpu": {"quota": 10000, "period": 100000}},
               args=["sh", "-c", "end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done"])
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    oci_runtime.wait_stopped(cid, timeout=60)
    st = keyed(cid, "cpu.stat")
    assert int(st["nr_throttled"]) > 0, st
    # 10% of one CPU over ~2 s of wall time
    assert int(st["usage_usec"]) < 1_000_000, st
    assert oci_runtime.delete(cid).rc == 0


# --- devices: the eBPF program ---------------------------------------------------------------------------

def test_device_filter(oci_runtime, make_test_bundle):
    ma, mi = scratch()
    dev = [{"path": "/dev/scratch", "type": "b", "major": ma, "minor": mi, "fileMode": 0o660, "uid": 0, "gid": 0}]
    probe = ("head -c 16 /dev/scratch >/dev/null 2>/tmp/e && echo blk-ok || cat /tmp/e; "
             "echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; "
             f"mknod /tmp/n2 b {ma} {mi} && echo mknod-ok")
    results = {}
    for name, rules in (("default", [{"allow": False, "access": "rwm"}]),
                        ("allow-read", [{"allow": False, "access": "rwm"},
                                        {"allow": True, "type": "b", "major": ma, "minor": mi, "access": "r"}])):
        cid = new_id(oci_runtime, "v2b-")
        b = bundle(make_test_bundle, cid, {"devices": rules}, args=["sh", "-c", probe], writable=True, devices=dev)
        b.set_capabilities(["CAP_MKNOD", "CAP_KILL"])  # mknod needs the capability; the filter allows "m"
        b.write()
        create_ok(oci_runtime, cid, b)
        assert oci_runtime.start(cid).rc == 0
        oci_runtime.wait_stopped(cid, timeout=30)
        results[name] = oci_runtime.output(cid)[0] + oci_runtime.output(cid)[1]
        assert oci_runtime.delete(cid).rc == 0
    assert "Operation not permitted" in results["default"] and "blk-ok" not in results["default"], results
    assert "null-ok" in results["default"] and "\n4\n" in results["default"]
    assert "mknod-ok" in results["default"]  # runc's default list allows mknod of any device
    assert "blk-ok" in results["allow-read"], results


def test_update_keeps_device_filter_and_changes_limits(oci_runtime, make_test_bundle):
    ma, mi = scratch()
    dev = [{"path": "/dev/scratch", "type": "b", "major": ma, "minor": mi}]
    cid = new_id(oci_runtime, "v2up-")
    b = bundle(make_test_bundle, cid, {"memory": {"limit": 67108864, "swap": 134217728}, "pids": {"limit": 20},
                                       "cpu": {"shares": 512, "quota": 50000, "period": 100000}},
               devices=dev)
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    r = oci_runtime.call("update", "--memory", "100m", "--memory-swap", "150m", "--pids-limit", "50",
                         "--cpu-quota", "20000", "--cpu-share", "1024", cid)
    assert r.rc == 0, r.describe()
    assert rd(cid, "memory.max") == str(100 << 20)
    assert rd(cid, "memory.swap.max") == str(50 << 20)
    assert rd(cid, "pids.max") == "50"
    assert rd(cid, "cpu.max") == "20000 100000"
    assert rd(cid, "cpu.weight") == "100"
    r = oci_runtime.call("update", "--resources", "-", cid,
                         input=json.dumps({"memory": {"limit": 83886080}, "unified": {"memory.high": "73400320"}}).encode())
    assert r.rc == 0, r.describe()
    assert rd(cid, "memory.max") == "83886080"
    assert rd(cid, "memory.swap.max") == str((150 << 20) - 83886080)  # the saved memory+swap
    assert rd(cid, "memory.high") == "73400320"
    # devices are never touched by update: still denied
    r = oci_runtime.exec(cid, "sh", "-c", "head -c 1 /dev/scratch >/dev/null")
    assert r.rc != 0 and "Operation not permitted" in r.stderr, r.describe()
    oci_runtime.kill(cid, "KILL")
    oci_runtime.wait_stopped(cid)
    r = oci_runtime.call("update", "--pids-limit", "5", cid)
    assert r.rc == 1 and "container not running" in r.stderr
    assert oci_runtime.delete(cid).rc == 0


def test_check_before_update(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2cb-")
    b = bundle(make_test_bundle, cid, {"memory": {"limit": 67108864}},
               args=["sh", "-c", 'x=$(head -c 8000000 /dev/zero | tr "\\000" a); sleep 300'])
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    wait_for(lambda: int(rd(cid, "memory.current")) > 4_000_000, what="memory use")
    r = oci_runtime.call("update", "--resources", "-", cid,
                         input=json.dumps({"memory": {"limit": 1048576, "checkBeforeUpdate": True}}).encode())
    assert r.rc == 1 and "rejecting memory limit 1048576 <= usage" in r.stderr, r.describe()
    assert rd(cid, "memory.max") == "67108864"
    assert oci_runtime.delete(cid, force=True).rc == 0


# --- freeze / kill / events / ps -------------------------------------------------------------------------

def test_pause_resume(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2z-")
    b = bundle(make_test_bundle, cid, None, args=["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done"],
               writable=True)
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    time.sleep(0.3)
    assert oci_runtime.call("pause", cid).rc == 0
    assert rd(cid, "cgroup.freeze") == "1"
    assert keyed(cid, "cgroup.events")["frozen"] == "1"
    assert oci_runtime.state(cid)["status"] == "paused"
    n1 = open(b.rootfs_path("/tmp/n")).read()
    time.sleep(0.3)
    assert open(b.rootfs_path("/tmp/n")).read() == n1
    assert oci_runtime.call("resume", cid).rc == 0
    assert rd(cid, "cgroup.freeze") == "0"
    assert oci_runtime.state(cid)["status"] == "running"
    wait_for(lambda: open(b.rootfs_path("/tmp/n")).read() not in ("", n1), what="progress after resume")
    r = oci_runtime.call("resume", cid)
    assert r.rc == 1 and "container not paused" in r.stderr
    assert oci_runtime.call("pause", cid).rc == 0
    assert oci_runtime.delete(cid, force=True).rc == 0  # thaws and kills
    assert not os.path.exists(cg(cid))


def test_kill_all_uses_cgroup_kill(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2k-")
    b = bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 & sleep 301 & wait"],
               namespaces=[{"type": t} for t in ("ipc", "uts", "mount")])  # shared pid namespace
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    wait_for(lambda: len(rd(cid, "cgroup.procs").split()) == 3, what="3 processes")
    pids = [int(p) for p in rd(cid, "cgroup.procs").split()]
    r = oci_runtime.call("ps", "--format", "json", cid)
    assert sorted(json.loads(r.stdout)) == sorted(pids)
    assert oci_runtime.kill(cid, "KILL", all=True).rc == 0
    wait_for(lambda: keyed(cid, "cgroup.events")["populated"] == "0", what="empty cgroup")
    oci_runtime.wait_stopped(cid)
    assert oci_runtime.kill(cid, "KILL", all=True).rc == 0  # stopped: still success
    assert oci_runtime.delete(cid).rc == 0


def test_kill_all_other_signal_and_delete_force_leftovers(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2l-")
    b = bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & exit 0"],
               namespaces=[{"type": t} for t in ("ipc", "uts", "mount")])
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    oci_runtime.wait_stopped(cid)
    wait_for(lambda: len(rd(cid, "cgroup.procs").split()) == 1, what="the leftover sleep")
    left = int(rd(cid, "cgroup.procs"))
    assert oci_runtime.delete(cid, force=True).rc == 0
    wait_for(lambda: not os.path.exists(f"/proc/{left}") or open(f"/proc/{left}/stat").read().split(") ")[1][0] == "Z",
             what="leftover killed")
    assert not os.path.exists(cg(cid))
    # TERM to every process (freeze, signal each, thaw)
    cid = new_id(oci_runtime, "v2l-")
    b = bundle(make_test_bundle, cid, None, args=["sh", "-c", "sleep 300 & sleep 301 & wait"],
               namespaces=[{"type": t} for t in ("ipc", "uts", "mount")])
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    wait_for(lambda: len(rd(cid, "cgroup.procs").split()) == 3, what="3 processes")
    assert oci_runtime.kill(cid, "TERM", all=True).rc == 0
    wait_for(lambda: keyed(cid, "cgroup.events")["populated"] == "0", what="empty cgroup")
    assert rd(cid, "cgroup.freeze") == "0"
    assert oci_runtime.delete(cid).rc == 0


def test_events_stats(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2e-")
    b = bundle(make_test_bundle, cid, {"memory": {"limit": 67108864}, "pids": {"limit": 20},
                                       "cpu": {"quota": 50000, "period": 100000}})
    create_ok(oci_runtime, cid, b)
    assert oci_runtime.start(cid).rc == 0
    r = oci_runtime.call("events", "--stats", cid)
    assert r.rc == 0 and r.stderr == "", r.describe()
    assert r.stdout.count("\n") == 1
    ev = json.loads(r.stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    d = ev["data"]
    assert set(d) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"}
    assert d["memory"]["usage"]["limit"] == 67108864 and d["memory"]["usage"]["usage"] > 0
    assert d["memory"]["swap"]["limit"] >= 67108864
    assert d["pids"] == {"current": 1, "limit": 20}
    assert d["cpu"]["usage"]["total"] > 0
    assert "anon" in d["memory"]["raw"] and "cache" not in d["memory"]
    assert oci_runtime.delete(cid, force=True).rc == 0


def test_events_stream_oom_and_end(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2o-")
    b = bundle(make_test_bundle, cid, {"memory": {"limit": 33554432, "swap": 33554432}},
               args=["sh", "-c", 'sleep 1; (x=$(head -c 60000000 /dev/zero | tr "\\000" a)); sleep 1'])
    create_ok(oci_runtime, cid, b)
    p = subprocess.Popen(oci_runtime.argv("events", "--interval", "200ms", cid), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert oci_runtime.start(cid).rc == 0
        out, err = p.communicate(timeout=180)  # ends by itself once the cgroup is empty (slow TCG CPU)
        events = [json.loads(line) for line in out.decode().splitlines()]
        types = [e["type"] for e in events]
        assert "oom" in types and "stats" in types, (types, err)
        assert {"type": "oom", "id": cid} in events
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert oci_runtime.delete(cid).rc == 0


def test_relative_cgroups_path_and_nonempty_refused(oci_runtime, make_test_bundle):
    cid = new_id(oci_runtime, "v2rel-")
    b = make_test_bundle(args=["sleep", "300"])
    b.linux["cgroupsPath"] = f"{PARENT}/{cid}"  # relative to our own cgroup, "/" in the guest
    b.linux["resources"] = {"pids": {"limit": 7}}
    b.write()
    create_ok(oci_runtime, cid, b)
    own = open("/proc/self/cgroup").read().strip().split("::")[1]
    path = os.path.normpath(f"{CG}/{own}/{PARENT}/{cid}")
    assert open(f"{path}/pids.max").read().strip() == "7"
    # a second container into the same (populated) cgroup is refused
    cid2 = new_id(oci_runtime, "v2rel-")
    r = oci_runtime.create(cid2, b)
    assert r.rc == 1 and "is not empty" in (r.stderr + "".join(oci_runtime.output(cid2)))
    assert oci_runtime.delete(cid, force=True).rc == 0
    assert not os.path.exists(path)
