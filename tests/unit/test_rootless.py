"""Rootless mode without privileges or syscalls: the --rootless flag, the default state root, the
rootless cgroup manager (hierarchies we may not create or join are skipped, device errors
ignored, limits still enforced), the id-map writer's choice between writing the maps itself and
newuidmap/newgidmap, the plan's setgroups flag, `spec --rootless` and the euid != 0 config rule.
(The real thing, as an unprivileged uid: tests/integration/test_rootless.py.)"""
import errno
import os
import struct

import pytest

from ociruntime import cgroups, plan, state, validate
from ociruntime.lifecycle import create as lifecycle_create
from ociruntime.cgroups import fs1
from ociruntime.cgroups.files import NoPath
from ociruntime.errors import ConfigError, OciError, SpawnError
from ociruntime.misc import default_spec


# --- --rootless -------------------------------------------------------------------------------------

@pytest.mark.parametrize("v", ["true", "1", "t", "T", "TRUE", "True"])
def test_rootless_flag_true(v):
    assert cgroups.rootless_mode(v) is True


@pytest.mark.parametrize("v", ["false", "0", "f", "F", "FALSE", "False"])
def test_rootless_flag_false(v, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cgroups.rootless_mode(v) is False


@pytest.mark.parametrize("v", ["yes", "maybe", "tRue", "2"])
def test_rootless_flag_invalid(v):
    with pytest.raises(OciError, match=f'strconv.ParseBool: parsing "{v}": invalid syntax'):
        cgroups.rootless_mode(v)


@pytest.mark.parametrize("euid,userns,want", [(0, False, False), (0, True, True), (1000, False, True),
                                              (1000, True, True)])
def test_rootless_flag_auto(monkeypatch, euid, userns, want):
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    monkeypatch.setattr(cgroups, "running_in_userns", lambda: userns)
    assert cgroups.rootless_mode("auto") is want
    assert cgroups.rootless_mode("") is want
    assert cgroups.rootless_mode(None) is want


def test_running_in_userns_reads_uid_map():
    with open("/proc/self/uid_map") as f:
        initial = f.read().split() == ["0", "0", "4294967295"]
    assert cgroups.running_in_userns() is not initial


# --- default state root ---------------------------------------------------------------------------

@pytest.mark.parametrize("user,want", [(None, "/run/user/0/ociruntime"), ("alice", "/run/user/0/ociruntime"),
                                       ("root", "/run/ociruntime")])
def test_default_root_euid0_in_userns(monkeypatch, user, want):
    """runc shouldHonorXDGRuntimeDir: root inside a user namespace uses $XDG_RUNTIME_DIR unless $USER is root."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.setattr(state.posix, "geteuid", lambda: 0)  # default_root uses posix, not os
    monkeypatch.setattr(state, "running_in_userns", lambda: True)
    if user is None:
        monkeypatch.delenv("USER", raising=False)
    else:
        monkeypatch.setenv("USER", user)
    assert state.default_root() == want


def test_default_root_real_root_unset_user(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.setattr(state.posix, "geteuid", lambda: 0)  # default_root uses posix, not os
    monkeypatch.setattr(state, "running_in_userns", lambda: False)
    assert state.default_root() == "/run/ociruntime"


# --- the rootless cgroup manager --------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path, monkeypatch):
    """Three v1 hierarchies; mkdir below 'memory' and joining 'pids' are denied (EACCES)."""
    for h in ("cpu", "memory", "pids"):
        (tmp_path / h).mkdir()
    paths = {h: str(tmp_path / h / "box" / "ctr") for h in ("cpu", "memory", "pids")}
    real_mkdir = os.mkdir

    def mkdir(p, mode=0o777, *a, **kw):
        if str(p).startswith(str(tmp_path / "memory") + "/"):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_mkdir(p, mode, *a, **kw)
    monkeypatch.setattr(os, "mkdir", mkdir)
    real_open = open

    def fake_open(p, mode="r", *a, **kw):
        if "w" in mode and str(p).startswith(str(tmp_path / "pids") + "/"):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, mode, *a, **kw)
    monkeypatch.setattr(cgroups, "open", fake_open, raising=False)
    return tmp_path, paths


def test_create_rootless_skips_denied_hierarchies(tree):
    tmp, paths = tree
    made = cgroups.create(paths, rootless=True)
    assert list(paths) == ["cpu", "pids"]  # memory dropped, in place
    assert made == [str(tmp / "cpu" / "box"), str(tmp / "cpu" / "box" / "ctr"),
                    str(tmp / "pids" / "box"), str(tmp / "pids" / "box" / "ctr")]
    cgroups.apply(paths, 1234, rootless=True)
    assert list(paths) == ["cpu"]  # pids could not be joined: dropped too
    with open(tmp / "cpu" / "box" / "ctr" / "cgroup.procs") as f:
        assert f.read() == "1234"


def test_create_not_rootless_fails_and_rolls_back(tree):
    tmp, paths = tree
    with pytest.raises(OciError, match=r"create cgroup: .*/memory/box: Permission denied"):
        cgroups.create(paths)
    assert not (tmp / "cpu" / "box").exists()  # what it made before the failure is gone
    assert list(paths) == ["cpu", "memory", "pids"]


def test_apply_not_rootless_fails(tree):
    tmp, paths = tree
    del paths["memory"]
    cgroups.create(paths)
    with pytest.raises(OciError, match="add pid 1 to cgroup .*/pids/box/ctr: Permission denied"):
        cgroups.apply(paths, 1)


def test_create_rootless_other_errors_still_fail(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(OciError, match="create cgroup"):
        cgroups.create({"cpu": str(f / "ctr")}, rootless=True)  # ENOTDIR: not a permission problem


def test_with_own_fills_in_our_cgroup(monkeypatch):
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {"cpu": ("/sys/fs/cgroup/cpu", "/user.slice"),
                                                         "memory": ("/sys/fs/cgroup/memory", "/")})
    all_paths = {"cpu": "/sys/fs/cgroup/cpu/user.slice/c1", "memory": "/sys/fs/cgroup/memory/c1"}
    assert cgroups.with_own(all_paths, dict(all_paths)) == all_paths
    assert cgroups.with_own(all_paths, {}) == {"cpu": "/sys/fs/cgroup/cpu/user.slice",
                                               "memory": "/sys/fs/cgroup/memory"}
    got = cgroups.with_own(all_paths, {"memory": all_paths["memory"]})
    assert list(got) == ["cpu", "memory"] and got["memory"] == all_paths["memory"]


DENY_ALL = {"devices": [{"allow": False, "access": "rwm"}]}


def test_devices_without_a_path_ignored_when_rootless():
    fs1.set_resources({}, DENY_ALL, print, ignore_devices=True)
    with pytest.raises(NoPath, match="cannot set devices limit"):
        fs1.set_resources({}, DENY_ALL, print)


def test_device_write_errors_ignored_when_rootless(tmp_path):
    d = tmp_path / "devices"
    d.mkdir()  # no devices.* files: every write fails
    fs1.set_resources({"devices": str(d)}, DENY_ALL, print, ignore_devices=True)
    with pytest.raises(OciError):
        fs1.set_resources({"devices": str(d)}, DENY_ALL, print)


def test_limits_still_need_their_controller_when_rootless():
    with pytest.raises(OciError, match="cannot set memory limit: container could not join or create cgroup"):
        cgroups.set_resources({}, {"memory": {"limit": 1 << 26}, **DENY_ALL}, rootless=True)


# --- id maps ----------------------------------------------------------------------------------------

class _P:
    def __init__(self, uid_map, gid_map):
        self.uid_map, self.gid_map = uid_map, gid_map


@pytest.fixture
def maps_env(monkeypatch):
    """euid/egid 1000; /proc writes recorded (EPERM for any map that is not exactly our own id)."""
    log = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)

    def write(pid, name, data):
        if name in ("uid_map", "gid_map") and data != b"0 1000 1\n":
            raise PermissionError(errno.EPERM, "Operation not permitted")
        log.append(("write", name, data))
    monkeypatch.setattr(lifecycle_create, "_write_proc", write)
    monkeypatch.setattr(lifecycle_create, "_map_with_tool", lambda tool, pid, maps: log.append((tool, maps)))
    return log


OWN = [{"containerID": 0, "hostID": 1000, "size": 1}]
WIDE = [{"containerID": 0, "hostID": 1000, "size": 1}, {"containerID": 1, "hostID": 100000, "size": 65536}]


def test_own_ids_written_directly_after_setgroups_deny(maps_env):
    lifecycle_create._write_maps(42, _P(OWN, OWN))
    assert maps_env == [("write", "setgroups", b"deny"), ("write", "uid_map", b"0 1000 1\n"),
                        ("write", "gid_map", b"0 1000 1\n")]


def test_wider_maps_go_through_the_tools_without_setgroups_deny(maps_env):
    lifecycle_create._write_maps(42, _P(WIDE, WIDE))
    assert maps_env == [("newuidmap", WIDE), ("newgidmap", WIDE)]


def test_root_writes_every_map_itself(monkeypatch):
    log = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(lifecycle_create, "_write_proc", lambda pid, name, data: log.append((name, data)))
    lifecycle_create._write_maps(42, _P(WIDE, OWN))
    assert log == [("uid_map", b"0 1000 1\n1 100000 65536\n"), ("gid_map", b"0 1000 1\n")]


def test_root_map_errors_are_not_retried_with_tools(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def write(pid, name, data):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(lifecycle_create, "_write_proc", write)
    with pytest.raises(SpawnError, match="write uid_map of the container: Operation not permitted"):
        lifecycle_create._write_maps(42, _P(OWN, OWN))


def test_missing_tool_is_a_clear_error(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpawnError, match=r"needs newgidmap \(package uidmap\)"):
        lifecycle_create._map_with_tool("newgidmap", 42, WIDE)


def test_tool_argv(monkeypatch):
    import shutil
    import subprocess
    seen = []
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)

    class R:
        returncode, stdout = 1, b"newuidmap: uid range [1-65537) -> [100000-165536) not allowed\n"
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: seen.append(argv) or R())
    with pytest.raises(SpawnError, match=r"newuidmap failed \(exit status 1\): newuidmap: uid range .* not allowed$"):
        lifecycle_create._map_with_tool("newuidmap", 42, WIDE)
    assert seen == [["/usr/bin/newuidmap", "42", "0", "1000", "1", "1", "100000", "65536"]]


# --- plan: no setgroups when rootless ---------------------------------------------------------------

FDS = {"sync": 3, "fifo": 4, "close_from": 3}


def _user_flags(data):
    assert data[:4] == plan.MAGIC
    _ver, n = struct.unpack_from("=II", data, 4)
    off = 12
    for _ in range(n):
        op, ln = struct.unpack_from("=II", data, off)
        if op == plan.OP_USER:
            return struct.unpack_from("=IIIII", data, off + 8)[3]
        off += 8 + ln
    raise AssertionError("no OP_USER record")


def _rootless_spec():
    s = default_spec(rootless=True)
    s["process"]["terminal"] = False
    s["process"]["user"]["additionalGids"] = [5]
    return s


def test_plan_setgroups_flag(tmp_path):
    (tmp_path / "rootfs").mkdir()
    s = _rootless_spec()
    assert _user_flags(plan.build(s, str(tmp_path), dict(FDS), {}, {}).data) == plan.USER_SETGROUPS
    with pytest.raises(ConfigError, match=r"^config.json: /process/user/additionalGids: cannot set any additional groups "
                                          r"in a rootless container$"):
        plan.build(s, str(tmp_path), dict(FDS), {"rootless_euid": True}, {})  # runc's setupUser refuses it
    del s["process"]["user"]["additionalGids"]
    assert _user_flags(plan.build(s, str(tmp_path), dict(FDS), {"rootless_euid": True}, {}).data) == 0
    s["process"]["user"]["additionalGids"] = [5]
    proc = s["process"]
    assert _user_flags(plan.build_exec(proc, dict(FDS), [])) == plan.USER_SETGROUPS
    assert _user_flags(plan.build_exec(proc, dict(FDS), [], setgroups=False)) == 0


def test_exec_setgroups_rules(monkeypatch):
    from ociruntime.lifecycle import exec as lifecycle_exec
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert lifecycle_exec._setgroups_allowed(os.getpid(), [], None) is False
    with pytest.raises(OciError, match="cannot set any additional groups in a rootless container"):
        lifecycle_exec._setgroups_allowed(os.getpid(), [], [5])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert lifecycle_exec._setgroups_allowed(os.getpid(), [], [5]) is True


# --- spec --rootless and the config rule ----------------------------------------------------------------

def test_spec_rootless_is_runcs_to_rootless(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    monkeypatch.setattr(os, "getegid", lambda: 5678)
    base, s = default_spec(), default_spec(rootless=True)
    lx = s["linux"]
    assert [n["type"] for n in lx["namespaces"]] == \
        [n["type"] for n in base["linux"]["namespaces"] if n["type"] != "network"] + ["user"]
    assert lx["uidMappings"] == [{"containerID": 0, "hostID": 1234, "size": 1}]
    assert lx["gidMappings"] == [{"containerID": 0, "hostID": 5678, "size": 1}]
    assert "resources" not in lx
    assert [m["destination"] for m in s["mounts"]] == [m["destination"] for m in base["mounts"]]
    sysm = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert sysm == {"destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    assert not any(o.startswith(("uid=", "gid=")) for m in s["mounts"] for o in m.get("options", ()))
    pts = next(m for m in s["mounts"] if m["destination"] == "/dev/pts")
    assert pts["options"] == ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]


def test_rootless_config_needs_a_user_namespace():
    validate.check_rootless(default_spec(rootless=True))
    with pytest.raises(ConfigError) as ei:
        validate.check_rootless(default_spec())
    assert ei.value.pointer == "/linux/namespaces"
    assert "rootless container requires user namespaces" in str(ei.value)


def test_prepare_xdg_root_is_private_and_sticky(tmp_path):
    root = tmp_path / "xdg" / "ociruntime"
    state.prepare_xdg_root(str(root))
    assert root.stat().st_mode & 0o7777 == 0o1700
    root.chmod(0o700)
    state.prepare_xdg_root(str(root))  # an existing root gets the sticky bit back
    assert root.stat().st_mode & 0o7777 == 0o1700
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(OciError, match=r"cannot create state root .*must be writable by the user"):
        state.prepare_xdg_root(str(f / "ociruntime"))
