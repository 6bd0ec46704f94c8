"""Fields this runtime does not apply yet are refused with the field's pointer, never ignored."""
import pytest

from ociruntime import plan
from ociruntime.errors import ConfigError
from ociruntime.misc import default_spec

CASES = [
    (("process", "scheduler"), {"policy": "SCHED_OTHER"}, "/process/scheduler"),
    (("process", "ioPriority"), {"class": "IOPRIO_CLASS_BE", "priority": 4}, "/process/ioPriority"),
    (("process", "execCPUAffinity"), {"initial": "0"}, "/process/execCPUAffinity"),
    (("linux", "personality"), {"domain": "LINUX32"}, "/linux/personality"),
    (("linux", "memoryPolicy"), {"mode": "MPOL_BIND", "nodes": "0"}, "/linux/memoryPolicy"),
]
# apparmorProfile / selinuxLabel / mountLabel are applied where the LSM is enabled (tests/unit/test_lsm.py);
# intelRdt is refused by validate.py because of the host (tests/unit/test_lsm.py, test_intel_rdt_*).


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


def test_idmapped_mounts_no_longer_refused(tmp_path):
    """mounts[].uidMappings/gidMappings are implemented: planned as an OP_MOUNT_IDMAP record."""
    s = default_spec()
    (tmp_path / "rootfs").mkdir()
    s["mounts"].append({"destination": "/x", "type": "bind", "source": str(tmp_path), "options": ["bind"],
                        "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
                        "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]})
    p = plan.build(s, str(tmp_path), {"sync": 3, "close_from": 3}, {}, {})
    assert len(p.idmap_userns) == 1
    assert plan.OP_MOUNT_IDMAP.to_bytes(4, "little") in p.data
