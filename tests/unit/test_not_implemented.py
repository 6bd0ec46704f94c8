"""Fields this runtime does not apply yet are refused with the field's pointer, never ignored."""
import pytest

from ociruntime import plan
from ociruntime.errors import ConfigError
from ociruntime.misc import default_spec

CASES = [
    (("process", "apparmorProfile"), "acme", "/process/apparmorProfile"),
    (("process", "selinuxLabel"), "system_u:system_r:container_t:s0", "/process/selinuxLabel"),
    (("linux", "mountLabel"), "system_u:object_r:container_file_t:s0", "/linux/mountLabel"),
    (("linux", "netDevices"), {"eth0": {}}, "/linux/netDevices"),
    (("linux", "intelRdt"), {"closID": "x"}, "/linux/intelRdt"),
]


@pytest.mark.parametrize("where,value,pointer", CASES, ids=[c[2] for c in CASES])
def test_refused_with_pointer(tmp_path, where, value, pointer):
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s[where[0]][where[1]] = value
    with pytest.raises(ConfigError) as ei:
        plan.build(s, str(tmp_path), {"sync": 3, "close_from": 3}, {}, {})
    assert ei.value.pointer == pointer and "not supported" in str(ei.value)


def test_empty_values_count_as_absent(tmp_path):
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["process"]["apparmorProfile"] = ""
    s["process"]["selinuxLabel"] = ""
    plan.build(s, str(tmp_path), {"sync": 3, "close_from": 3}, {}, {})


def test_command_line_is_windows_only(tmp_path):
    """process.commandLine has no meaning on Linux: refused (config.md: Windows only), never ignored."""
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["process"]["commandLine"] = "cmd.exe /c echo hi"
    with pytest.raises(ConfigError) as ei:
        plan.build(s, str(tmp_path), {"sync": 3, "close_from": 3}, {}, {})
    assert ei.value.pointer == "/process/commandLine"
    assert "Windows-only" in str(ei.value) and "not applicable on Linux" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        plan.build_exec(dict(s["process"]), {"sync": 3, "close_from": 3}, [])
    assert ei.value.pointer == "/commandLine" and "Windows-only" in str(ei.value)


@pytest.mark.parametrize("where,value", [
    (("process", "scheduler"), {"policy": "SCHED_OTHER"}),
    (("process", "ioPriority"), {"class": "IOPRIO_CLASS_BE", "priority": 4}),
    (("process", "execCPUAffinity"), {"initial": "0"}),
    (("linux", "personality"), {"domain": "LINUX32"}),
    (("linux", "memoryPolicy"), {"mode": "MPOL_BIND", "nodes": "0"}),
], ids=lambda v: "/".join(v) if isinstance(v, tuple) else "")
def test_implemented_process_attributes_are_accepted(tmp_path, where, value):
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s[where[0]][where[1]] = value
    plan.build(s, str(tmp_path), {"sync": 3, "close_from": 3}, {}, {})


def test_idmapped_mounts_refused(tmp_path):
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["mounts"].append({"destination": "/x", "type": "bind", "source": str(tmp_path),
                        "options": ["bind"], "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]})
    with pytest.raises(ConfigError) as ei:
        plan.build(s, str(tmp_path), {"sync": 3, "close_from": 3}, {}, {})
    assert ei.value.pointer.endswith("/uidMappings")
