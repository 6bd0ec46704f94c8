"""Every field of config.md / config-linux.md is applied, refused because this host cannot do it (with
the pointer and the reason), or refused because it has no meaning on Linux - never silently ignored."""
import pytest

from ociruntime import plan
from ociruntime.errors import ConfigError
from ociruntime.misc import default_spec

FDS = {"sync": 3, "close_from": 3}


def test_nothing_left_unimplemented():
    # apparmorProfile / selinuxLabel / mountLabel: applied where the LSM is enabled, refused where it is not
    # (tests/unit/test_lsm.py); intelRdt: refused by validate.py where resctrl is absent (test_lsm.py)
    assert plan.NOT_IMPLEMENTED == []


def test_empty_values_count_as_absent(tmp_path):
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["process"]["apparmorProfile"] = ""
    s["process"]["selinuxLabel"] = ""
    plan.build(s, str(tmp_path), FDS, {}, {})


def test_command_line_is_windows_only(tmp_path):
    """process.commandLine has no meaning on Linux: refused (config.md: Windows only), never ignored."""
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["process"]["commandLine"] = "cmd.exe /c echo hi"
    with pytest.raises(ConfigError) as ei:
        plan.build(s, str(tmp_path), FDS, {}, {})
    assert ei.value.pointer == "/process/commandLine"
    assert "Windows-only" in str(ei.value) and "not applicable on Linux" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        plan.build_exec(dict(s["process"]), FDS, [])
    assert ei.value.pointer == "/commandLine" and "Windows-only" in str(ei.value)


@pytest.mark.parametrize("where,value,op", [
    (("process", "scheduler"), {"policy": "SCHED_OTHER"}, "OP_SCHED"),
    (("process", "ioPriority"), {"class": "IOPRIO_CLASS_BE", "priority": 4}, "OP_IOPRIO"),
    (("process", "execCPUAffinity"), {"initial": "0"}, "OP_CPU_AFFINITY"),
    (("linux", "personality"), {"domain": "LINUX32"}, "OP_PERSONALITY"),
    (("linux", "memoryPolicy"), {"mode": "MPOL_BIND", "nodes": "0"}, "OP_MEMPOLICY"),
], ids=lambda v: "/".join(v) if isinstance(v, tuple) else "")
def test_implemented_process_attributes_are_planned(tmp_path, where, value, op):
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s[where[0]][where[1]] = value
    p = plan.build(s, str(tmp_path), FDS, {}, {})
    assert getattr(plan, op).to_bytes(4, "little") in p.data


def test_idmapped_mounts_are_planned(tmp_path):
    """mounts[].uidMappings/gidMappings are implemented: planned as an OP_MOUNT_IDMAP record."""
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["mounts"].append({"destination": "/x", "type": "bind", "source": str(tmp_path), "options": ["bind"],
                        "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
                        "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]})
    p = plan.build(s, str(tmp_path), FDS, {}, {})
    assert len(p.idmap_userns) == 1
    assert plan.OP_MOUNT_IDMAP.to_bytes(4, "little") in p.data
