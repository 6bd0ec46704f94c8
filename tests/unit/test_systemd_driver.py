"""The systemd cgroup driver's pure parts (runc's rules): slice:prefix:name, slice expansion,
org.systemd.property.* annotations, resources as unit properties; the Manager interface choice.
The driver against a real systemd: tests/systemd (qemu guests, v2 and v1)."""
import pytest

from ociruntime import cgroups
from ociruntime.cgroups import systemd as sd
from ociruntime.errors import OciError


def test_parse_cgroups_path_and_unit_names():
    assert sd.parse_cgroups_path("", "c1") == ("", "runc", "c1")
    assert sd.parse_cgroups_path("system.slice:docker:abc", "c1") == ("system.slice", "docker", "abc")
    assert sd.parse_cgroups_path("::n", "c1") == ("", "", "n")
    with pytest.raises(OciError, match='expected cgroupsPath to be of format "slice:prefix:name"'):
        sd.parse_cgroups_path("a:b", "c1")
    with pytest.raises(OciError, match='got "/x/y" instead'):
        sd.parse_cgroups_path("/x/y", "c1")
    assert sd.unit_name("docker", "abc") == "docker-abc.scope"
    assert sd.unit_name("p", "my.slice") == "my.slice"


@pytest.mark.parametrize("slice_,path", [
    ("system.slice", "/system.slice"),
    ("-.slice", "/"),
    ("kubepods-besteffort-pod1234.slice",
     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice"),
    ("machine.slice", "/machine.slice"),
])
def test_expand_slice(slice_, path):
    assert sd.expand_slice(slice_) == path


@pytest.mark.parametrize("bad", ["system", "a--b.slice", "-a.slice", "a-.slice", "a/b.slice", ".slic"])
def test_expand_slice_refuses(bad):
    with pytest.raises(OciError, match="invalid slice name"):
        sd.expand_slice(bad)


def test_annotation_properties_runc_rules():
    props = sd.annotation_properties({
        "org.systemd.property.TimeoutStopSec": "uint64 7",
        "org.systemd.property.CollectMode": "'inactive-or-failed'",
        "org.systemd.property.CPUQuotaPeriodSec": "@t 1",
        "org.systemd.property.Delegate": "true",
        "org.systemd.property.AmbientCapabilities": "['a', 'b']",
        "other.annotation": "x",
    })
    assert dict(props) == {"TimeoutStopUSec": ("t", 7000000), "CollectMode": ("s", "inactive-or-failed"),
                           "CPUQuotaPeriodUSec": ("t", 1000000), "Delegate": ("b", True),
                           "AmbientCapabilities": ("as", ["a", "b"])}
    # a plain number is an int32 (godbus), and a …Sec name with an uppercase letter before Sec stays
    assert sd.annotation_properties({"org.systemd.property.XSec": "5"}) == [("XSec", ("i", 5))]
    with pytest.raises(OciError, match="org.systemd.property.bad-name name incorrect"):
        sd.annotation_properties({"org.systemd.property.bad-name": "1"})
    with pytest.raises(OciError, match="value parse error"):
        sd.annotation_properties({"org.systemd.property.TimeoutStopSec": "'x'"})


def test_cpu_quota_rounding_and_period():
    props = []
    sd._cpu_quota(props, 50000, 100000)
    assert props == [("CPUQuotaPeriodUSec", ("t", 100000)), ("CPUQuotaPerSecUSec", ("t", 500000))]
    props = []
    sd._cpu_quota(props, 12345, 0)  # 123450 µs/s, rounded up to 10 ms as runc does
    assert props == [("CPUQuotaPerSecUSec", ("t", 130000))]
    props = []
    sd._cpu_quota(props, 0, 50000)  # a period alone: "no quota"
    assert props == [("CPUQuotaPeriodUSec", ("t", 50000)), ("CPUQuotaPerSecUSec", ("t", sd.UINT64_MAX))]


def test_range_to_bits_little_endian():
    assert sd._range_to_bits("0") == b"\x01"
    assert sd._range_to_bits("0-2,9") == b"\x07\x02"
    assert sd._range_to_bits("8") == b"\x00\x01"


def _names(props):
    return {k: v for k, v in props}


def test_resource_properties_v2_and_v1():
    res = {"memory": {"limit": 64 << 20, "reservation": 1 << 20, "swap": 128 << 20},
           "cpu": {"shares": 1024, "cpus": "0-1"}, "pids": {"limit": 10}, "blockIO": {"weight": 500}}
    v2 = _names(sd.resource_properties(res, True, lambda m: None, devices=False))
    assert v2 == {"MemoryMax": ("t", 64 << 20), "MemoryLow": ("t", 1 << 20), "MemorySwapMax": ("t", 64 << 20),
                  "CPUWeight": ("t", 100), "IOWeight": ("t", 4950), "TasksMax": ("t", 10),
                  "AllowedCPUs": ("ay", b"\x03")}
    v1 = _names(sd.resource_properties(res, False, lambda m: None, devices=False))
    assert v1 == {"MemoryLimit": ("t", 64 << 20), "CPUShares": ("t", 1024), "BlockIOWeight": ("t", 500),
                  "TasksMax": ("t", 10), "AllowedCPUs": ("ay", b"\x03")}
    # pids -1 is "infinity"; 0 means unset
    assert _names(sd.resource_properties({"pids": {"limit": -1}}, True, None, devices=False)) == \
        {"TasksMax": ("t", sd.UINT64_MAX)}
    assert sd.resource_properties({"pids": {"limit": 0}}, True, None, devices=False) == []


def test_device_properties():
    warned = []
    allow_all = sd.device_properties({"devices": [{"allow": True, "access": "rwm"}]}, warned.append)
    assert allow_all == [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]
    strict = _names(sd.device_properties({"devices": [{"allow": False, "access": "rwm"}]}, warned.append))
    assert strict["DevicePolicy"] == ("s", "strict")
    entries = dict(strict["DeviceAllow"][1])
    assert entries["char-*"] == "m" and entries["block-*"] == "m" and entries["char-pts"] == "rwm"
    assert all(p.startswith(("char-", "block-", "/dev/char/", "/dev/block/")) for p in entries)


def test_manager_choice(monkeypatch):
    monkeypatch.setattr(cgroups, "_HIERARCHIES", {"": ("/sys/fs/cgroup", "/")})
    m = cgroups.new_manager("c1", {"cgroupsPath": "/a/b"})
    assert isinstance(m, cgroups.Fs2Manager) and m.paths == {"": "/sys/fs/cgroup/a/b"}
    monkeypatch.setattr(cgroups, "_HIERARCHIES", {"memory": ("/sys/fs/cgroup/memory", "/"),
                                                  "pids": ("/sys/fs/cgroup/pids", "/")})
    m = cgroups.new_manager("c1", {})
    assert isinstance(m, cgroups.FsManager) and m.paths["pids"] == "/sys/fs/cgroup/pids/c1"
    st = {"cgroup_paths": {"": "/sys/fs/cgroup/system.slice/x-y.scope"}, "cgroup_made": [],
          "systemd": {"unit": "x-y.scope", "slice": "system.slice", "rootless": False}}
    m = cgroups.manager_of(st)
    assert isinstance(m, sd.SystemdManager) and m.unit == "x-y.scope" and m.state() == st
    assert isinstance(cgroups.manager_of({"cgroup_paths": {"": "/sys/fs/cgroup/a"}}), cgroups.Fs2Manager)


def test_state_unit_must_be_a_scope_or_slice():
    """A hand-edited state never makes delete stop an arbitrary unit (sshd.service, say)."""
    st = {"cgroup_paths": {}, "systemd": {"unit": "ssh.service", "slice": "system.slice"}}
    with pytest.raises(OciError, match="not a unit of ours"):
        cgroups.manager_of(st)


def test_without_systemd_the_driver_refuses(monkeypatch):
    monkeypatch.setattr(sd.os.path, "isdir", lambda p: False if p == "/run/systemd/system" else True)
    with pytest.raises(OciError, match="systemd is not running on this host"):
        cgroups.new_manager("c1", {}, systemd=True)
