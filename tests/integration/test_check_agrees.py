"""`ociruntime check` agrees with `create`: every host-feasibility error check reports on a bundle made
for it is one create fails on (with nothing left behind), and on a bundle check finds no error in,
create succeeds. Each case runs `check` and `create` under the same conditions (for the capability
cases both under the same `setpriv` bounding set). Root, real kernel."""
import json
import os
import resource
import stat

import pytest

from _util import RUNTIME, Runtime
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def wrapper(env, *setpriv_args):
    """An executable that runs the runtime under `setpriv ARGS` (check and create see the same caps)."""
    path = os.path.join(env.tmp, "rt-" + "-".join(a.strip("-+,") for a in setpriv_args))
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexec setpriv {' '.join(setpriv_args)} -- {RUNTIME} \"$@\"\n")
    os.chmod(path, 0o755)
    return Runtime(env.root, binary=path)


def checked(rt, b, *extra):
    r = rt(*extra, "check", "--format", "json", "--bundle", b.path)
    doc = json.loads(r.stdout)
    return r.rc, [(f["code"], f["pointer"]) for f in doc["findings"] if f["severity"] == "error"]


def agree(env, b, code, pointer, *fragments, rt=None, extra=()):
    """check reports exactly the error (code, pointer); create fails naming it; nothing is left."""
    rt = rt or env.rt
    rc, errors = checked(rt, b, *extra)
    assert rc == 1 and errors == [(code, pointer)], errors
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = rt(*extra, "create", "--bundle", b.path, cid)
    assert r.rc != 0, r
    msg = r.error_msg()
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    snap.assert_clean()
    return msg


def test_clean_bundle_check_and_create_agree(env):
    b = env.bundle(args=("true",))
    rc, errors = checked(env.rt, b)
    assert rc == 2 and errors == []
    cid, r = env.create(b)
    assert r.rc == 0, r
    env.rt("delete", "--force", cid).check()


def test_capability_outside_the_bounding_set(env):
    rt = wrapper(env, "--bounding-set", "-kill")
    b = env.bundle(args=("true",))
    rc, errors = checked(rt, b)
    assert rc == 1 and {c for c, _ in errors} == {"host-capability"} and \
        ("host-capability", "/process/capabilities/bounding/1") in errors, errors
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = rt("create", "--bundle", b.path, cid)
    assert r.rc != 0 and "capset" in r.error_msg(), r
    snap.assert_clean()


def test_rlimit_above_the_hard_limit_without_cap_sys_resource(env):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= int(open("/proc/sys/fs/nr_open").read()):
        pytest.skip("the hard NOFILE limit is already at its maximum")
    rt = wrapper(env, "--bounding-set", "-sys_resource")
    b = env.bundle(args=("true",), mutate=lambda s: s["process"]["rlimits"][0].update(soft=hard + 1, hard=hard + 1))
    agree(env, b, "host-rlimit", "/process/rlimits/0/hard", "RLIMIT_NOFILE", "operation not permitted", rt=rt)


def test_rlimit_above_the_hard_limit_in_a_user_namespace(env):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= int(open("/proc/sys/fs/nr_open").read()):
        pytest.skip("the hard NOFILE limit is already at its maximum")

    def mutate(s):
        s["linux"]["namespaces"].append({"type": "user"})
        s["linux"]["uidMappings"] = s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        s["process"]["rlimits"][0].update(soft=hard + 1, hard=hard + 1)
    b = env.bundle(args=("true",), mutate=mutate)
    os.chown(b.rootfs, 100000, 100000)
    agree(env, b, "host-rlimit", "/process/rlimits/0/hard", "RLIMIT_NOFILE", "operation not permitted")


def test_rlimit_above_nr_open(env):
    nr_open = int(open("/proc/sys/fs/nr_open").read())
    b = env.bundle(args=("true",), mutate=lambda s: s["process"]["rlimits"][0].update(hard=nr_open + 1))
    agree(env, b, "host-rlimit", "/process/rlimits/0/hard", "RLIMIT_NOFILE")


def test_blkio_weight_without_bfq(env):
    from ociruntime.check import _cgroup_root
    root = _cgroup_root("blkio")
    if not root or any(os.path.exists(os.path.join(root, f)) for f in ("blkio.weight", "blkio.bfq.weight")):
        pytest.skip("this host has blkio weight files (BFQ or CFQ): create applies them (test_cgroups)")
    b = env.bundle(args=("true",), mutate=lambda s: s["linux"]["resources"].update(blockIO={"weight": 500}))
    agree(env, b, "host-blkio-weight", "/linux/resources/blockIO/weight", "weight")


def test_block_device_that_does_not_exist(env):
    from ociruntime.check import _cgroup_root
    if not _cgroup_root("blkio"):
        pytest.skip("this host mounts no cgroup v1 blkio hierarchy (the throttle files live there)")
    b = env.bundle(args=("true",), mutate=lambda s: s["linux"]["resources"].update(blockIO={
        "throttleReadBpsDevice": [{"major": 259, "minor": 65000, "rate": 1000}]}))
    agree(env, b, "host-device", "/linux/resources/blockIO/throttleReadBpsDevice/0", "throttle")


def test_lsm_that_is_not_enabled(env):
    from ociruntime import lsm
    if lsm.apparmor_enabled():
        pytest.skip("AppArmor is enabled here")
    b = env.bundle(args=("true",), mutate=lambda s: s["process"].update(apparmorProfile="unconfined"))
    agree(env, b, "host-lsm", "/process/apparmorProfile", "/process/apparmorProfile", "AppArmor is not enabled")


def test_idmapped_mount_on_a_filesystem_without_idmap(env):
    def mutate(s):
        s["linux"]["namespaces"].append({"type": "user"})
        s["linux"]["uidMappings"] = s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        s["mounts"].append({"destination": "/mnt", "type": "bind", "source": "/sys/kernel", "options": ["rbind", "idmap"]})
    b = env.bundle(args=("true",), mutate=mutate)
    os.chown(b.rootfs, 100000, 100000)
    agree(env, b, "host-idmap", "/mounts/7/source", "/mnt")


def test_systemd_cgroup_without_systemd(env):
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here")
    b = env.bundle(args=("true",))
    agree(env, b, "host-systemd", "/linux/cgroupsPath", "systemd is not running", extra=("--systemd-cgroup",))


def test_systemd_slice_path_without_the_flag(env):
    b = env.bundle(args=("true",), mutate=lambda s: s["linux"].update(cgroupsPath="system.slice:oci:x"))
    agree(env, b, "host-systemd", "/linux/cgroupsPath", "systemd")


def test_bind_source_missing(env):
    b = env.bundle(args=("true",), mutate=lambda s: s["mounts"].append(
        {"destination": "/mnt", "type": "bind", "source": "/nonexistent-ociruntime-check", "options": ["rbind"]}))
    agree(env, b, "host-plan", "/mounts/7/source", "/mounts/7/source", "does not exist")


def test_cgroup_controller_this_host_lacks(env):
    from ociruntime import cgroups
    h = cgroups.hierarchies()
    have = set(",".join(h).split(","))
    if list(h) == [""]:
        have = set(open(os.path.join(h[""][0], "cgroup.controllers")).read().split())
    if "hugetlb" in have:
        # the host has the controller: a page size it lacks is what both refuse (64KB on x86, 2MB elsewhere)
        sizes = os.listdir("/sys/kernel/mm/hugepages") if os.path.isdir("/sys/kernel/mm/hugepages") else []
        lack = "64KB" if "hugepages-64kB" not in sizes else "32MB" if "hugepages-32768kB" not in sizes else "16GB"
        b = env.bundle(args=("true",), mutate=lambda s: s["linux"]["resources"].update(
            hugepageLimits=[{"pageSize": lack, "limit": 1 << 20}]))
        agree(env, b, "host-hugetlb", "/linux/resources/hugepageLimits/0/pageSize",
              f"/linux/resources/hugepageLimits/0/pageSize: this kernel has no {lack} huge pages")
        return
    b = env.bundle(args=("true",), mutate=lambda s: s["linux"]["resources"].update(
        hugepageLimits=[{"pageSize": "2MB", "limit": 1 << 20}]))
    agree(env, b, "host-cgroup-controller", "/linux/resources/hugepageLimits",
          "/linux/resources/hugepageLimits: cannot set hugetlb limit: this host has no hugetlb cgroup v1 hierarchy")


@pytest.mark.parametrize("key,ctrl,value", [("classID", "net_cls", 1048577),
                                             ("priorities", "net_prio", [{"name": "lo", "priority": 5}])])
def test_network_controller_this_host_lacks(env, key, ctrl, value):
    from ociruntime import cgroups
    h = cgroups.hierarchies()
    if list(h) == [""]:
        pytest.skip("pure cgroup v2 host: net_cls/net_prio do not exist there (the setting is ignored with a "
                    "warning, as runc)")
    if ctrl in ",".join(h).split(","):
        pytest.skip(f"this host mounts a {ctrl} cgroup v1 hierarchy: create applies network.{key} (test_cgroups)")
    b = env.bundle(args=("true",), mutate=lambda s: s["linux"]["resources"].update(network={key: value}))
    agree(env, b, "host-cgroup-controller", f"/linux/resources/network/{key}",
          f"/linux/resources/network/{key}: cannot set {ctrl} limit: this host has no {ctrl} cgroup v1 hierarchy")


def test_realtime_without_rt_group_sched(env):
    from ociruntime.check import _cgroup_root
    root = _cgroup_root("cpu")
    if not root:
        pytest.skip("this host mounts no cgroup v1 cpu hierarchy (pure v2: no per-cgroup RT budget)")
    b = env.bundle(args=("true",), mutate=lambda s: s["linux"]["resources"].update(
        cpu={"realtimeRuntime": 10000, "realtimePeriod": 1000000}))
    if os.path.exists(os.path.join(root, "cpu.rt_runtime_us")):
        # the host has RT group scheduling: check finds nothing to say (create applies it: test_cgroups cpu-rt)
        rc, errors = checked(env.rt, b)
        assert [e for e in errors if e[0] == "host-cpu-rt"] == [], errors
        return
    agree(env, b, "host-cpu-rt", "/linux/resources/cpu/realtimeRuntime",
          "/linux/resources/cpu/realtimeRuntime: this kernel has no real-time group scheduling")
