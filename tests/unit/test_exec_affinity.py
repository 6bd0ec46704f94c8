"""exec's execCPUAffinity.initial: the spawning thread runs on the initial CPUs while the process is
started (so the child inherits them) and gets its own affinity back afterwards."""
import os

import pytest

from ociruntime.errors import ConfigError
from ociruntime.lifecycle.exec import _cpu_text, spawn_with_affinity

WHERE = ("process.json", "/execCPUAffinity/initial")


@pytest.mark.parametrize("ids,text", [([], ""), ([3], "3"), ([0, 1, 2, 3, 7], "0-3,7"),
                                      ([1, 3, 4, 9, 10, 11], "1,3-4,9-11")])
def test_cpu_text(ids, text):
    assert _cpu_text(ids) == text


def test_initial_is_set_while_spawning_then_restored():
    before = os.sched_getaffinity(0)
    cpu = min(before)
    seen = []
    assert spawn_with_affinity(lambda *a: seen.append(os.sched_getaffinity(0)) or 42, b"", [], 3, [cpu], WHERE) == 42
    assert seen == [{cpu}]
    assert os.sched_getaffinity(0) == before


def test_restored_when_spawn_fails():
    before = os.sched_getaffinity(0)

    def boom(*a):
        raise OSError(12, "no memory")
    with pytest.raises(OSError):
        spawn_with_affinity(boom, b"", [], 3, [min(before)], WHERE)
    assert os.sched_getaffinity(0) == before


def test_no_initial_leaves_the_affinity_alone():
    before = os.sched_getaffinity(0)
    seen = []
    spawn_with_affinity(lambda *a: seen.append(os.sched_getaffinity(0)), b"", [], 3, None, WHERE)
    assert seen == [before]


def test_unusable_cpus_name_the_field():
    with pytest.raises(ConfigError) as ei:
        spawn_with_affinity(lambda *a: pytest.fail("spawned"), b"", [], 3, [65535], WHERE)
    assert ei.value.pointer == "/execCPUAffinity/initial" and ei.value.source == "process.json"
    assert "cannot run on CPUs 65535" in ei.value.reason
