"""`ociruntime check`: every class of finding on a bundle made for it (one per class), nothing but the
documented warnings on the default spec, the JSON document and the exit statuses. Runs nothing, so no
root is needed (the agreement with create is tests/integration/test_check_agrees.py)."""
import json
import os
import subprocess
import sys

import pytest

from ociruntime import check as chk
from ociruntime.misc import default_spec
from ociruntime.testing import assert_findings, check

CLI = os.path.join(os.path.dirname(sys.executable), "ociruntime")
# README "Checking a bundle": runc 1.4's template has a cgroup namespace only on a pure cgroup v2 host
DEFAULT_WARNINGS = {"sec-no-userns", "sec-no-seccomp"} | (
    set() if any(n["type"] == "cgroup" for n in default_spec()["linux"]["namespaces"]) else {"sec-host-cgroup-ns"})


def make(tmp_path, mutate=None, name="b"):
    d = tmp_path / name
    (d / "rootfs").mkdir(parents=True)
    doc = default_spec()
    doc["process"]["terminal"] = False
    if mutate:
        mutate(doc)
    (d / "config.json").write_text(json.dumps(doc))
    return d


def run_cli(*args, cwd=None):
    return subprocess.run([CLI, "check", *args], capture_output=True, text=True, cwd=cwd)


def test_default_spec_has_only_the_documented_warnings(tmp_path):
    rep = assert_findings(make(tmp_path), only=DEFAULT_WARNINGS)
    assert not rep.errors and rep.exit_status() == 2
    assert all(f.category == "security" for f in rep.findings)


def test_every_schema_and_semantic_error_at_once(tmp_path):
    def mutate(d):
        d["hostname"] = 5                                   # schema
        d["process"]["user"]["uid"] = -1                    # schema
        d["process"]["cwd"] = "relative"                    # semantic
        d["mounts"][0]["destination"] = "proc"              # semantic
        d["linux"]["sysctl"] = {"kernel.panic": "1"}        # semantic
        d["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1})  # semantic
    rep = check(make(tmp_path, mutate))
    got = {(f.category, f.pointer) for f in rep.errors}
    assert {("schema", "/hostname"), ("schema", "/process/user/uid"), ("semantic", "/process/cwd"),
            ("semantic", "/mounts/0/destination"), ("semantic", "/linux/sysctl/kernel.panic"),
            ("semantic", "/process/rlimits/1/type")} <= got, rep.findings
    for f in rep.findings:
        assert f.spec.startswith(chk.SPEC_BASE) and f.hint and f.message
    assert rep.exit_status() == 1
    assert {f.spec for f in rep.errors if f.pointer == "/linux/sysctl/kernel.panic"} == \
        {chk.SPEC_BASE + "config-linux.md#sysctl"}


def test_semantic_errors_are_the_validators_own(tmp_path):
    """check and create share validate.py: each semantic finding is what check_config raises."""
    from ociruntime import validate
    from ociruntime.errors import ConfigError
    b = make(tmp_path, lambda d: d["process"].update(cwd="relative"))
    with pytest.raises(ConfigError) as ei:
        validate.check_config(json.loads((b / "config.json").read_text()), str(b), for_create=True)
    (f,) = [f for f in check(b).errors]
    assert (f.pointer, f.message) == (ei.value.pointer, ei.value.reason)


# ------------------------------------------------------------------------------------- security classes

SECURITY = {
    "sec-host-pid-ns": lambda d: _drop_ns(d, "pid"),
    "sec-host-network-ns": lambda d: _drop_ns(d, "network"),
    "sec-host-ipc-ns": lambda d: _drop_ns(d, "ipc"),
    "sec-host-uts-ns": lambda d: (_drop_ns(d, "uts"), d.pop("hostname")),
    "sec-host-cgroup-ns": lambda d: _drop_ns(d, "cgroup"),
    "sec-capability": lambda d: [d["process"]["capabilities"][s].append("CAP_SYS_ADMIN")
                                 for s in ("bounding", "effective", "permitted")],
    "sec-no-nnp": lambda d: d["process"].update(noNewPrivileges=False),
    "sec-seccomp-permissive": lambda d: d["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW"}),
    "sec-writable-proc-sys": lambda d: d["linux"]["readonlyPaths"].remove("/proc/sys"),
    "sec-writable-sys": lambda d: d["mounts"][5]["options"].remove("ro"),
    "sec-writable-cgroup": lambda d: d["mounts"][6]["options"].remove("ro"),
    "sec-missing-masked": lambda d: d["linux"]["maskedPaths"].remove("/proc/kcore"),
    "sec-missing-readonly": lambda d: d["linux"]["readonlyPaths"].remove("/proc/sysrq-trigger"),
    "sec-all-devices": lambda d: d["linux"]["resources"].update(devices=[{"allow": True, "access": "rwm"}]),
    "sec-sensitive-bind": lambda d: d["mounts"].append({"destination": "/var/run/docker.sock", "type": "bind",
                                                        "source": "/", "options": ["rbind"]}),
    "sec-rootfs-shared": lambda d: d["linux"].update(rootfsPropagation="rshared"),
    "sec-writable-root": lambda d: d["root"].update(readonly=False),
}


def _drop_ns(d, t):
    d["linux"]["namespaces"] = [n for n in d["linux"]["namespaces"] if n["type"] != t]


@pytest.mark.parametrize("code", sorted(SECURITY))
def test_security_class(tmp_path, code):
    rep = assert_findings(make(tmp_path, SECURITY[code]), present=[code])
    new = set(rep.codes()) - (DEFAULT_WARNINGS - {code})
    assert new == {code}, rep.findings
    (f,) = [f for f in rep.findings if f.code == code][:1]
    assert f.severity == "warning" and f.risk in ("high", "medium", "low") and f.pointer.startswith("/")


@pytest.mark.parametrize("src", ["/var/run/docker.sock", "/run/containerd", "/proc", "/dev"])
def test_sensitive_binds(tmp_path, src):
    if not os.path.exists(src):
        pytest.skip(f"{src} does not exist here (the bind source must exist for the bundle to be valid)")
    rep = check(make(tmp_path, lambda d: d["mounts"].append({"destination": "/mnt", "type": "bind", "source": src,
                                                             "options": ["rbind"]})))
    assert [f.pointer for f in rep.findings if f.code == "sec-sensitive-bind"] == ["/mounts/7/source"]


def test_no_userns_is_not_reported_for_a_user_namespace(tmp_path):
    def userns(d):
        d["linux"]["namespaces"].append({"type": "user"})
        d["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        d["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert_findings(make(tmp_path, userns), absent=["sec-no-userns"])


# ------------------------------------------------------------------------------------- host classes

def test_host_rlimit_above_nr_open(tmp_path):
    nr_open = int(open("/proc/sys/fs/nr_open").read())
    rep = check(make(tmp_path, lambda d: d["process"]["rlimits"][0].update(hard=nr_open + 1)))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-rlimit", "/process/rlimits/0/hard")]


def test_host_seccomp_action_the_kernel_lacks(tmp_path, monkeypatch):
    avail = tmp_path / "actions_avail"
    avail.write_text("kill_process kill_thread trap errno trace allow\n")  # no "log", no "user_notif"
    monkeypatch.setattr(chk, "SECCOMP_ACTIONS_AVAIL", str(avail))
    rep = check(make(tmp_path, lambda d: d["linux"].update(seccomp={
        "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_LOG"}]})))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-seccomp-action", "/linux/seccomp/syscalls/0/action")]


def test_host_seccomp_flag_needs_a_newer_kernel(tmp_path, monkeypatch):
    monkeypatch.setattr(chk, "_kernel_at_least", lambda a, b: (a, b) <= (5, 4))
    rep = check(make(tmp_path, lambda d: d["linux"].update(seccomp={
        "defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]})))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-seccomp-flag", "/linux/seccomp/flags/0")]


def test_host_time_namespace(tmp_path, monkeypatch):
    real = os.path.exists
    monkeypatch.setattr(chk.os.path, "exists", lambda p: False if p == "/proc/self/ns/time" else real(p))
    at = len(default_spec()["linux"]["namespaces"])
    rep = check(make(tmp_path, lambda d: d["linux"]["namespaces"].append({"type": "time"})))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-namespace", f"/linux/namespaces/{at}")]


def test_host_capability_outside_the_bounding_set(tmp_path, monkeypatch):
    from ociruntime.plan import CAP_BITS
    full = (1 << 41) - 1
    monkeypatch.setattr(chk, "_status_caps", lambda key: full & ~(1 << CAP_BITS["CAP_KILL"]) if key == "CapBnd"
                        else full)
    rep = check(make(tmp_path))
    caps = default_spec()["process"]["capabilities"]
    assert {f.pointer for f in rep.errors} == {f"/process/capabilities/{s}/{caps[s].index('CAP_KILL')}"
                                               for s in caps if "CAP_KILL" in caps[s]}
    assert {f.code for f in rep.errors} == {"host-capability"}


def test_host_rlimit_without_cap_sys_resource(tmp_path, monkeypatch):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    monkeypatch.setattr(chk, "_status_caps", lambda key: 0 if key == "CapEff" else (1 << 41) - 1)
    rep = check(make(tmp_path, lambda d: d["process"]["rlimits"][0].update(hard=hard + 1, soft=hard + 1)))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-rlimit", "/process/rlimits/0/hard")]


def test_host_lsm_not_enabled(tmp_path):
    from ociruntime import lsm
    if lsm.apparmor_enabled():
        pytest.skip("AppArmor is enabled here: the profile would be applied")
    rep = check(make(tmp_path, lambda d: d["process"].update(apparmorProfile="unconfined")))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-lsm", "/process/apparmorProfile")]


def test_host_systemd_slice_without_systemd(tmp_path):
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here")
    rep = chk.check_bundle(str(make(tmp_path)), systemd=True)
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-systemd", "/linux/cgroupsPath")]
    rep = check(make(tmp_path, lambda d: d["linux"].update(cgroupsPath="system.slice:ociruntime:x"), "c"))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-systemd", "/linux/cgroupsPath")]


def test_host_block_device_that_does_not_exist(tmp_path):
    rep = check(make(tmp_path, lambda d: d["linux"]["resources"].update(blockIO={
        "throttleReadBpsDevice": [{"major": 259, "minor": 65000, "rate": 1000}]})))
    assert [(f.code, f.pointer) for f in rep.errors] == \
        [("host-device", "/linux/resources/blockIO/throttleReadBpsDevice/0")]


def test_host_blkio_weight(tmp_path):
    root = chk._cgroup_root("blkio")
    rep = check(make(tmp_path, lambda d: d["linux"]["resources"].update(blockIO={"weight": 500})))
    has_weight = root and (os.path.exists(os.path.join(root, "blkio.weight")) or
                           os.path.exists(os.path.join(root, "blkio.bfq.weight")))
    if root and not has_weight:
        assert [(f.code, f.pointer, f.message) for f in rep.errors] == \
            [("host-blkio-weight", "/linux/resources/blockIO/weight",
              "this kernel has no blkio weight (BFQ not available)")]
    else:
        assert not [f for f in rep.errors if f.code == "host-blkio-weight"]


def test_host_idmap_on_a_filesystem_without_idmap(tmp_path):
    rep = check(make(tmp_path, lambda d: (d["linux"]["namespaces"].append({"type": "user"}), d["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}]),
        d["mounts"].append({"destination": "/mnt", "type": "bind", "source": "/sys/kernel",
                            "options": ["rbind", "idmap"]}))))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-idmap", "/mounts/7/source")]


def test_idmap_support_goes_by_filesystem_and_kernel_release():
    """tmpfs idmaps only since Linux 6.3 (Debian 12's own 6.1 refuses it, as create then does); ext4 since 5.12;
    a filesystem without FS_ALLOW_IDMAP never (sysfs)."""
    tmpfs, ext4, sysfs = 0x01021994, 0xEF53, 0x62656572
    on = lambda release: (lambda major, minor: release >= (major, minor))
    assert chk.idmap_fs_lacks(tmpfs, on((6, 18))) is None
    assert "only since Linux 6.3" in chk.idmap_fs_lacks(tmpfs, on((6, 1)))
    assert chk.idmap_fs_lacks(ext4, on((6, 1))) is None
    assert "only since Linux 5.12" in chk.idmap_fs_lacks(ext4, on((5, 10)))
    assert "does not support idmapped mounts" in chk.idmap_fs_lacks(sysfs, on((6, 18)))


def test_host_bind_source_missing_is_plans_own_error(tmp_path):
    rep = check(make(tmp_path, lambda d: d["mounts"].append({"destination": "/mnt", "type": "bind",
                                                             "source": "/nonexistent-ociruntime-check",
                                                             "options": ["rbind"]})))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-plan", "/mounts/7/source")]


# ------------------------------------------------------------------------------------- --strict

def test_strict_reports_what_create_accepts_for_runc(tmp_path):
    def mutate(d):
        d["process"]["user"].pop("gid")
        d["mounts"][5]["options"].append("rw")
    b = make(tmp_path, mutate)
    assert not {"compat-missing-gid", "compat-ro-rw"} & set(check(b).codes())
    rep = assert_findings(b, present=["compat-missing-gid", "compat-ro-rw"], strict=True)
    assert rep.exit_status() == 1  # strict: warnings fail


def test_strict_null(tmp_path):
    rep = check(make(tmp_path, lambda d: d["process"].update(apparmorProfile=None)), strict=True)
    assert [f.pointer for f in rep.findings if f.code == "compat-null"] == ["/process/apparmorProfile"]


# ------------------------------------------------------------------------------------- CLI, JSON, --plan

def test_cli_json_document_and_exit_statuses(tmp_path):
    b = make(tmp_path)
    r = run_cli("--format", "json", "--bundle", str(b))
    assert r.returncode == 2, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"version", "bundle", "strict", "summary", "findings"}
    assert doc["version"] == chk.FORMAT_VERSION
    assert doc["summary"] == {"errors": 0, "warnings": len(DEFAULT_WARNINGS), "info": 0}
    for f in doc["findings"]:
        assert set(f) == {"severity", "code", "pointer", "message", "hint", "spec", "category", "risk"}
    assert run_cli("--strict", "--bundle", str(b)).returncode == 1
    bad = make(tmp_path, lambda d: d.update(hostname=5), "bad")
    r = run_cli("--format", "json", cwd=str(bad))
    assert r.returncode == 1 and json.loads(r.stdout)["findings"][0]["code"] == "schema"
    def clean_config(d):
        d["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ERRNO"})
        d["process"]["user"].update(uid=1000)
        if not any(n["type"] == "cgroup" for n in d["linux"]["namespaces"]):
            d["linux"]["namespaces"].append({"type": "cgroup"})
    clean = make(tmp_path, clean_config, "clean")
    r = run_cli("--bundle", str(clean))
    assert r.returncode == 0 and r.stdout.strip() == "0 error(s), 0 warning(s)", r.stdout


def test_cli_text_names_pointer_hint_and_spec(tmp_path):
    r = run_cli("--bundle", str(make(tmp_path, lambda d: d["process"].update(cwd="x"))))
    assert r.returncode == 1
    assert "error semantic /process/cwd: process.cwd 'x' must be an absolute path" in r.stdout
    assert "    fix: start the path with '/'" in r.stdout
    assert "    spec: " + chk.SPEC_BASE + "config.md#process" in r.stdout


def test_plan_lists_the_inits_steps_in_order(tmp_path):
    b = make(tmp_path, lambda d: d["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}))
    r = run_cli("--plan", "--format", "json", "--bundle", str(b))
    plan = json.loads(r.stdout)["plan"]
    ops = [p["op"] for p in plan]
    assert ops.index("ns_new") < ops.index("rootfs") < ops.index("mount") < ops.index("device") < \
        ops.index("caps") < ops.index("process")
    mounts = [p["destination"] for p in plan if p["op"] == "mount"]
    assert mounts[:6] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"] and mounts[-1] == "/data"
    (caps,) = [p for p in plan if p["op"] == "caps"]
    assert caps["bounding"] == ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
    (rl,) = [p for p in plan if p["op"] == "rlimit"]
    assert rl == {"op": "rlimit", "type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}
    assert [p for p in plan if p["op"] == "user"][0]["uid"] == 0


def test_check_changes_nothing(tmp_path):
    b = make(tmp_path)
    before = sorted(os.listdir(b)), (b / "config.json").read_bytes()
    run_cli("--plan", "--bundle", str(b))
    assert (sorted(os.listdir(b)), (b / "config.json").read_bytes()) == before


def test_missing_bundle_and_bad_json(tmp_path):
    r = run_cli("--bundle", str(tmp_path / "nope"))
    assert r.returncode == 1 and "no such directory" in r.stdout
    d = tmp_path / "j"
    d.mkdir()
    (d / "config.json").write_text("{")
    r = run_cli("--bundle", str(d))
    assert r.returncode == 1 and "error json /" in r.stdout


def test_pytest_plugin_fixture(tmp_path, oci_check):
    """The plugin's oci_check fixture: a report, and assert_findings that fails with the findings listed."""
    b = make(tmp_path, lambda d: d["linux"].update(rootfsPropagation="shared"))
    assert "sec-rootfs-shared" in oci_check(b).codes()
    oci_check.assert_findings(b, present=["sec-rootfs-shared"], absent=["schema"])
    with pytest.raises(AssertionError, match="sec-rootfs-shared"):
        oci_check.assert_findings(b, absent=["sec-rootfs-shared"])


def test_readme_example_is_real(tmp_path):
    """README "Checking a bundle": the example output is what check prints for that bundle (the BFQ line
    only where the host has no blkio weight)."""
    import re
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               "README.md")).read()
    block = re.search(r"```\n\$ ociruntime check\n(.*?)\$ echo \$\?\n(\d+)\n```", readme, re.S)
    assert block, "README example block not found"

    def mutate(d):
        if not any(n["type"] == "cgroup" for n in d["linux"]["namespaces"]):
            d["linux"]["namespaces"].append({"type": "cgroup"})  # the example's bundle has one on any host
        d["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
        d["mounts"].append({"destination": "/host", "type": "bind", "source": "/", "options": ["rbind"]})
        d["linux"]["resources"]["blockIO"] = {"weight": 500}
        d["process"]["cwd"] = "work"
    r = run_cli(cwd=str(make(tmp_path, mutate)))
    want = block.group(1)
    root = chk._cgroup_root("blkio")
    if not root or any(os.path.exists(os.path.join(root, f)) for f in ("blkio.weight", "blkio.bfq.weight")):
        want = re.sub(r"error host-blkio-weight.*?\n(    .*\n)+", "", want).replace("2 error(s)", "1 error(s)")
    assert r.stdout == want and str(r.returncode) == block.group(2)


def test_host_device_missing_in_a_user_namespace(tmp_path):
    """In a user namespace linux.devices are bind-mounted from the host's: one that is not there fails."""
    def mutate(d):
        d["linux"]["namespaces"].append({"type": "user"})
        d["linux"]["uidMappings"] = d["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        d["linux"]["devices"] = [{"path": "/dev/null"},
                                 {"path": "/dev/ociruntime-check-none", "type": "c", "major": 1, "minor": 3}]
        d["linux"]["devices"][0].update(type="c", major=1, minor=3)
    rep = check(make(tmp_path, mutate))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-device", "/linux/devices/1/path")]


def test_host_cgroup_controller_missing(tmp_path, monkeypatch):
    from ociruntime import cgroups
    real = cgroups.hierarchies()
    if list(real) == [""]:
        pytest.skip("pure cgroup v2 host: the controller list is cgroup.controllers")
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {k: v for k, v in real.items() if k != "pids"})
    rep = check(make(tmp_path, lambda d: d["linux"]["resources"].update(pids={"limit": 10})))
    assert [(f.code, f.pointer) for f in rep.errors] == [("host-cgroup-controller", "/linux/resources/pids")]


def test_rootless_spec_has_only_its_documented_warnings(tmp_path):
    """`spec --rootless` (runc's): no network namespace, a read-only rbind of /sys, no device rules (in a
    user namespace), no seccomp: warnings, no error, for a non-root user (README)."""
    d = tmp_path / "rl"
    (d / "rootfs").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(default_spec(rootless=True)))
    rep = chk.check_bundle(str(d), euid=1000)
    assert not rep.errors, rep.findings
    no_cgroupns = {("sec-host-cgroup-ns", "low")} if "sec-host-cgroup-ns" in DEFAULT_WARNINGS else set()
    assert {(f.code, f.risk) for f in rep.findings} == {
        ("sec-host-network-ns", "high"), ("sec-no-seccomp", "medium"), ("sec-sensitive-bind", "medium"),
        ("sec-all-devices", "low")} | no_cgroupns
