"""ociruntime/lsm.py: LSM and resctrl detection, the attr file and bytes for each label, mountLabel's
context= option, the refusals where the host lacks what the config asks for, and the test-only override."""
import os
import subprocess

import pytest

from ociruntime import lsm, plan, validate
from ociruntime.errors import ConfigError, OciError
from ociruntime.misc import default_spec

from tests.unit.test_plan import decode, plan_dump  # noqa: F401  (fixture)

FDS = {"sync": 3, "close_from": 3}
INIT = os.path.join(os.path.dirname(plan.__file__), "libexec", "ociruntime-init")


@pytest.fixture
def host(monkeypatch):
    """A fake host: files -> contents (None: absent) for every path lsm.py reads or checks."""
    files = {}

    def read(path, n=4096):
        v = files.get(path)
        return v.encode() if isinstance(v, str) else v

    monkeypatch.setattr(lsm, "_read", read)
    monkeypatch.setattr(lsm, "_exists", lambda p: files.get(p) is not None)
    monkeypatch.delenv(lsm.FAKE_PROC_ENV, raising=False)
    return files


APPARMOR_HOST = {"/sys/kernel/security/apparmor": "", "/sys/module/apparmor/parameters/enabled": "Y\n",
                 "/proc/filesystems": "nodev\tsysfs\nnodev\tsecurityfs\n"}
SELINUX_MOUNT = "40 22 0:21 / /sys/fs/selinux rw,nosuid,noexec,relatime shared:5 - selinuxfs selinuxfs rw\n"
SELINUX_HOST = {"/proc/filesystems": "nodev\tsysfs\nnodev\tselinuxfs\n", "/proc/self/mountinfo": SELINUX_MOUNT,
                "/proc/thread-self/attr/current": "system_u:system_r:unconfined_t:s0\0"}


# ---------------------------------------------------------------------------------------------- detection

def test_apparmor_detected_as_runc_does(host):
    host.update(APPARMOR_HOST)
    assert lsm.apparmor_enabled()
    host["/sys/module/apparmor/parameters/enabled"] = "N\n"
    assert not lsm.apparmor_enabled()
    host.update(APPARMOR_HOST)
    del host["/sys/kernel/security/apparmor"]          # securityfs without apparmor
    assert not lsm.apparmor_enabled()


def test_apparmor_must_be_in_the_active_lsm_list_when_there_is_one(host):
    host.update(APPARMOR_HOST)
    host["/sys/kernel/security/lsm"] = "lockdown,capability,landlock,yama,bpf"
    assert not lsm.apparmor_enabled()
    host["/sys/kernel/security/lsm"] = "lockdown,capability,apparmor,bpf"
    assert lsm.apparmor_enabled()


def test_selinux_detected_as_go_selinux_does(host):
    host.update(SELINUX_HOST)
    assert lsm.selinux_enabled()
    host["/proc/thread-self/attr/current"] = "kernel\0"       # policy not loaded
    assert not lsm.selinux_enabled()
    host.update(SELINUX_HOST)
    host["/proc/self/mountinfo"] = SELINUX_MOUNT.replace("relatime shared", "relatime,ro shared").replace(" rw,", " ro,")
    assert not lsm.selinux_enabled()                          # read-only selinuxfs does not count
    host.update(SELINUX_HOST)
    host["/proc/filesystems"] = "nodev\tsysfs\n"
    assert not lsm.selinux_enabled()
    host.update(SELINUX_HOST)
    host["/sys/kernel/security/lsm"] = "capability,apparmor"
    assert not lsm.selinux_enabled()


def test_resctrl_detection(host):
    host["/proc/filesystems"] = "nodev\tresctrl\n"
    host["/proc/self/mountinfo"] = ""
    assert not lsm.resctrl_available()                        # known to the kernel, not mounted
    host["/proc/self/mountinfo"] = "50 22 0:40 / /sys/fs/resctrl rw,relatime shared:9 - resctrl resctrl rw\n"
    assert lsm.resctrl_available()
    host["/proc/filesystems"] = "nodev\tsysfs\n"
    assert not lsm.resctrl_available()


def test_detection_on_this_host_agrees_with_its_files():
    """No mocks: the answers for the machine the tests run on."""
    def read(p):
        try:
            with open(p) as f:
                return f.read()
        except OSError:
            return ""
    aa = os.path.exists("/sys/kernel/security/apparmor") and read("/sys/module/apparmor/parameters/enabled")[:1] == "Y"
    assert lsm.apparmor_enabled() == (aa and "apparmor" in (read("/sys/kernel/security/lsm") or "apparmor"))
    if "selinuxfs" not in read("/proc/filesystems"):
        assert not lsm.selinux_enabled()
    assert lsm.resctrl_available() == (" - resctrl " in read("/proc/self/mountinfo"))


def test_apparmor_attr_falls_back_to_the_old_file(host):
    assert lsm.apparmor_attr() == "attr/exec"
    host["/proc/self/attr/apparmor/exec"] = ""
    assert lsm.apparmor_attr() == "attr/apparmor/exec"


def test_plan_and_lsm_constants_agree():
    assert (lsm.LSM_APPARMOR, lsm.LSM_SELINUX, lsm.LSM_FAKE_PROC) == \
        (plan.LSM_APPARMOR, plan.LSM_SELINUX, plan.LSM_F_FAKE_PROC)
    assert (plan.OP_LSM_ATTR, plan.OP_MOUNT_LABEL) == (28, 29)


# ---------------------------------------------------------------------------------------------- what is written

def test_apparmor_profile_record(host):
    host.update(APPARMOR_HOST)
    host["/proc/self/attr/apparmor/exec"] = ""
    assert lsm.process_labels({"apparmorProfile": "acme"}) == \
        [(1, 0, "/proc", "thread-self/attr/apparmor/exec", b"exec acme")]


def test_selinux_label_record(host):
    host.update(SELINUX_HOST)
    label = "system_u:system_r:container_t:s0:c1,c2"
    assert lsm.process_labels({"selinuxLabel": label}) == [(2, 0, "/proc", "thread-self/attr/exec", label.encode())]


def test_no_labels_no_records_and_no_detection(host, monkeypatch):
    monkeypatch.setattr(lsm, "apparmor_enabled", lambda: pytest.fail("detection without a label"))
    assert lsm.process_labels({"apparmorProfile": "", "selinuxLabel": ""}) == []
    assert lsm.mount_label({"mountLabel": ""}) == ""


@pytest.mark.parametrize("field,value,pointer,lsmname", [
    ("apparmorProfile", "acme", "/process/apparmorProfile", "AppArmor"),
    ("selinuxLabel", "system_u:system_r:container_t:s0", "/process/selinuxLabel", "SELinux"),
])
def test_refused_where_the_lsm_is_not_enabled(host, field, value, pointer, lsmname):
    with pytest.raises(ConfigError) as ei:
        lsm.process_labels({field: value})
    assert ei.value.pointer == pointer
    assert f"{lsmname} is not enabled on this host" in str(ei.value)


def test_exec_inherits_the_containers_labels_unless_it_names_its_own(host):
    host.update(APPARMOR_HOST)
    recs = lsm.process_labels({}, "", "process.json", defaults={"apparmorProfile": "ctr"})
    assert [r[4] for r in recs] == [b"exec ctr"]
    recs = lsm.process_labels({"apparmorProfile": "own"}, "", "process.json", defaults={"apparmorProfile": "ctr"})
    assert [r[4] for r in recs] == [b"exec own"]


def test_exec_refusal_names_process_json(host):
    with pytest.raises(ConfigError) as ei:
        lsm.process_labels({"selinuxLabel": "x"}, "", "process.json")
    assert str(ei.value).startswith("process.json: /selinuxLabel: SELinux is not enabled on this host")


@pytest.mark.parametrize("bad", ["a\nb", " lead", "trail "])
def test_bad_label_characters(host, bad):
    host.update(APPARMOR_HOST)
    with pytest.raises(ConfigError) as ei:
        lsm.process_labels({"apparmorProfile": bad})
    assert ei.value.pointer == "/process/apparmorProfile" and "invalid" in ei.value.reason


# ---------------------------------------------------------------------------------------------- test override

def test_fake_proc_override_redirects_both_labels(host, monkeypatch):
    monkeypatch.setenv(lsm.FAKE_PROC_ENV, "/fake")
    recs = lsm.process_labels({"apparmorProfile": "p", "selinuxLabel": "l"})
    assert recs == [(1, lsm.LSM_FAKE_PROC, "/fake", "thread-self/attr/exec", b"exec p"),
                    (2, lsm.LSM_FAKE_PROC, "/fake", "thread-self/attr/exec", b"l")]


def test_fake_proc_override_is_refused_where_an_lsm_is_enabled(host, monkeypatch):
    host.update(APPARMOR_HOST)
    monkeypatch.setenv(lsm.FAKE_PROC_ENV, "/fake")
    with pytest.raises(OciError, match="test-only setting and is refused on a host where AppArmor or SELinux"):
        lsm.process_labels({"apparmorProfile": "p"})


def test_fake_proc_override_must_be_absolute(host, monkeypatch):
    monkeypatch.setenv(lsm.FAKE_PROC_ENV, "fake")
    with pytest.raises(OciError, match="absolute path"):
        lsm.process_labels({"apparmorProfile": "p"})


def test_fake_proc_override_does_not_fake_selinux_mounts(host, monkeypatch):
    monkeypatch.setenv(lsm.FAKE_PROC_ENV, "/fake")
    with pytest.raises(ConfigError) as ei:
        lsm.mount_label({"mountLabel": "system_u:object_r:container_file_t:s0"})
    assert ei.value.pointer == "/linux/mountLabel" and "SELinux is not enabled on this host" in ei.value.reason


def test_fake_proc_override_is_never_read_by_the_init():
    src = os.path.join(os.path.dirname(plan.__file__), "..", "csrc")
    for d, _, files in os.walk(src):
        for f in files:
            with open(os.path.join(d, f), errors="replace") as fh:
                assert "getenv" not in fh.read(), f"{f}: the init must not read its environment"


# ---------------------------------------------------------------------------------------------- mountLabel

MLABEL = "system_u:object_r:container_file_t:s0:c1,c2"


def test_format_mount_label():
    assert lsm.format_mount_label("", "") == ""
    assert lsm.format_mount_label("mode=755", "") == "mode=755"
    assert lsm.format_mount_label("", "a:b:c:s0") == 'context="a:b:c:s0"'
    assert lsm.format_mount_label("mode=755", "a:b:c:s0:c1,c2") == 'mode=755,context="a:b:c:s0:c1,c2"'


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "a\nb"])
def test_bad_mount_label(host, bad):
    host.update(SELINUX_HOST)
    with pytest.raises(ConfigError) as ei:
        lsm.mount_label({"mountLabel": bad})
    assert ei.value.pointer == "/linux/mountLabel" and "invalid" in ei.value.reason


def _labelled_spec(tmp_path):
    s = default_spec()
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "vol").mkdir(exist_ok=True)
    s["linux"]["mountLabel"] = MLABEL
    s["mounts"].append({"destination": "/vol", "type": "bind", "source": str(tmp_path / "vol"), "options": ["rbind"]})
    s["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"})
    return s


def test_mount_label_goes_where_runc_puts_it(plan_dump, host, tmp_path):  # noqa: F811
    host.update(SELINUX_HOST)
    s = _labelled_spec(tmp_path)
    d = decode(plan_dump, plan.build(s, str(tmp_path), dict(FDS), {}, {}).data, tmp_path)
    m = {x["dst"]: x for x in d["mounts"]}
    ctx = f'context="{MLABEL}"'
    assert m["/dev"]["data"] == "mode=755,size=65536k," + ctx
    assert m["/dev/pts"]["data"] == "newinstance,ptmxmode=0666,mode=0620,gid=5," + ctx
    assert m["/dev/shm"]["data"] == "mode=1777,size=65536k," + ctx
    assert m["/scratch"]["data"] == ctx
    assert m["/sys/fs/cgroup"]["data"] == "mode=755," + ctx       # the v1 cgroup tmpfs (runc: through mountToRootfs)
    for dst in ("/proc", "/sys", "/dev/mqueue", "/vol"):            # no context= (mqueue: xattr on its root)
        assert "context=" not in m[dst]["data"], dst
    assert d["mount_label"] == MLABEL                               # masked-dir tmpfs and mqueue, in the init
    assert d["lsms"] == []


def test_no_mount_label_no_record(plan_dump, tmp_path):  # noqa: F811
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    d = decode(plan_dump, plan.build(s, str(tmp_path), dict(FDS), {}, {}).data, tmp_path)
    assert d["mount_label"] is None and d["lsms"] == []
    assert not any("context=" in x["data"] for x in d["mounts"])


def test_mount_label_refused_by_plan_without_selinux(host, tmp_path):
    with pytest.raises(ConfigError) as ei:
        plan.build(_labelled_spec(tmp_path), str(tmp_path), dict(FDS), {}, {})
    assert ei.value.pointer == "/linux/mountLabel" and "SELinux is not enabled on this host" in ei.value.reason


def test_labels_round_trip_through_the_decoder(plan_dump, host, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(lsm.FAKE_PROC_ENV, "/fake proc")
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["process"].update(apparmorProfile="acme-ü", selinuxLabel="u:r:t:s0:c1,c2")
    d = decode(plan_dump, plan.build(s, str(tmp_path), dict(FDS), {}, {}).data, tmp_path)
    assert d["lsms"] == [
        {"lsm": 1, "flags": 1, "procroot": "/fake proc", "subpath": "thread-self/attr/exec", "value": "exec acme-ü"},
        {"lsm": 2, "flags": 1, "procroot": "/fake proc", "subpath": "thread-self/attr/exec", "value": "u:r:t:s0:c1,c2"},
    ]
    e = decode(plan_dump, plan.build_exec({"args": ["x"], "cwd": "/"}, dict(FDS), [], None,
                                          labels={"selinuxLabel": "u:r:ctr:s0"}), tmp_path)
    assert e["lsms"] == [{"lsm": 2, "flags": 1, "procroot": "/fake proc", "subpath": "thread-self/attr/exec",
                          "value": "u:r:ctr:s0"}]


def test_check_plan_prints_the_lsm_records(host, tmp_path, monkeypatch):
    monkeypatch.setenv(lsm.FAKE_PROC_ENV, "/f")
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["process"]["apparmorProfile"] = "acme"
    f = tmp_path / "plan"
    f.write_bytes(plan.build(s, str(tmp_path), dict(FDS), {}, {}).data)
    r = subprocess.run([INIT, "--check-plan", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "lsm 1 flags=1 /f/thread-self/attr/exec value=exec acme" in r.stdout.splitlines()


@pytest.mark.parametrize("rec,why", [
    ((3, 0, "/proc", "thread-self/attr/exec", "x"), "unknown LSM"),
    ((1, 2, "/proc", "thread-self/attr/exec", "x"), "unknown flag"),
    ((1, 0, "proc", "thread-self/attr/exec", "x"), "relative procroot"),
    ((1, 0, "/proc", "/thread-self/attr/exec", "x"), "absolute subpath"),
    ((1, 0, "/proc", "thread-self/attr/exec", ""), "empty value"),
])
def test_decoder_refuses_malformed_lsm_records(tmp_path, rec, why):
    e = plan.Encoder()
    e.add(plan.OP_LSM_ATTR, plan._u32(rec[0], rec[1]), e.s(rec[2]), e.s(rec[3]), e.s(rec[4]))
    f = tmp_path / "plan"
    f.write_bytes(e.bytes())
    r = subprocess.run([INIT, "--check-plan", str(f)], capture_output=True, text=True)
    assert r.returncode == 1 and "LSM record 0 malformed" in r.stdout, (why, r.stdout)


# ---------------------------------------------------------------------------------------------- intelRdt

def test_intel_rdt_refused_without_resctrl(host):
    host["/proc/filesystems"] = "nodev\tsysfs\n"
    for rdt in ({}, {"closID": "g"}, {"l3CacheSchema": "L3:0=7f0"}):
        with pytest.raises(ConfigError) as ei:
            validate.check_host({"linux": {"intelRdt": rdt}})
        assert ei.value.pointer == "/linux/intelRdt"
        assert "resctrl filesystem, which is not available on this host" in ei.value.reason


def test_intel_rdt_with_resctrl_is_still_refused_truthfully(host):
    host["/proc/filesystems"] = "nodev\tresctrl\n"
    host["/proc/self/mountinfo"] = "50 22 0:40 / /sys/fs/resctrl rw,relatime shared:9 - resctrl resctrl rw\n"
    with pytest.raises(ConfigError) as ei:
        validate.check_host({"linux": {"intelRdt": {"closID": "g"}}})
    assert ei.value.pointer == "/linux/intelRdt" and "not supported by this runtime yet" in ei.value.reason


def test_intel_rdt_null_or_absent_is_fine(host):
    validate.check_host({"linux": {"intelRdt": None}})
    validate.check_host({"linux": {}})
    validate.check_host({})


def test_plan_build_refuses_intel_rdt_too(host, tmp_path):
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["linux"]["intelRdt"] = {"closID": "g"}
    with pytest.raises(ConfigError) as ei:
        plan.build(s, str(tmp_path), dict(FDS), {}, {})
    assert ei.value.pointer == "/linux/intelRdt"
