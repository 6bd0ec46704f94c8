"""Tests for ociruntime.validate: every semantic rule, with its exact JSON pointer and a one-line message."""

import copy
import os

import pytest

from ociruntime import validate
from ociruntime.errors import ConfigError

NS = ("pid", "network", "ipc", "uts", "mount")

BASE = {
    "ociVersion": "1.3.0",
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "h",
    "process": {
        "cwd": "/",
        "args": ["sh", "-c", "true"],
        "env": ["PATH=/usr/bin:/bin", "EMPTY="],
        "user": {"uid": 0, "gid": 0},
        "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                         "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"], "inheritable": []},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}],
        "oomScoreAdj": 0,
    },
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        {"destination": "/data", "type": "none", "source": "/srv/data", "options": ["rbind", "ro", "rw"]},
    ],
    "hooks": {"prestart": [{"path": "/usr/bin/hook"}]},
    "linux": {
        "namespaces": [{"type": t} for t in NS],
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "4096"},
    },
}


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def check(doc, bundle, for_create=False):
    validate.check_config(doc, bundle, for_create=for_create)


def rejected(doc, bundle, pointer, fragment, for_create=False):
    with pytest.raises(ConfigError) as ei:
        check(doc, bundle, for_create)
    e = ei.value
    assert e.pointer == pointer, str(e)
    assert fragment in e.reason, str(e)
    assert "\n" not in str(e)
    assert str(e) == f"config.json: {pointer or '/'}: {e.reason}"
    return e


def mutate(**changes):
    """Return a copy of BASE with changes applied: keys are paths like 'linux/namespaces', None deletes."""
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        parts = path.split("__")
        node = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            last = int(last)
        if value is _DEL:
            del node[last]
        else:
            node[last] = value
    return doc


_DEL = object()


def ns(*types, **paths):
    out = [{"type": t} for t in types]
    for t, p in paths.items():
        out.append({"type": t, "path": p})
    return out


# ------------------------------------------------------------------------------------------------ valid inputs

def test_base_is_valid(bundle):
    check(BASE, bundle)
    check(BASE, bundle, for_create=True)


def test_minimal_is_valid_without_process(bundle):
    check({"ociVersion": "1.0.2-dev", "root": {"path": "rootfs"}}, bundle)


@pytest.mark.parametrize("doc", [
    mutate(ociVersion="1.0.0"),
    mutate(ociVersion="1.99.7-rc.1+build"),
    mutate(process__oomScoreAdj=1000),
    mutate(process__oomScoreAdj=-1000),
    mutate(process__rlimits=[{"type": "RLIMIT_AS", "soft": 1, "hard": 2}]),
    mutate(process__cwd="/a/../b"),
    mutate(mounts=[{"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]}]),
    mutate(mounts=[{"destination": "/proc/", "type": "proc"}]),
    mutate(mounts=[{"destination": "/tmp", "type": "tmpfs", "options": ["ro", "rw", "weird=opt", "nosuid"]}]),
    mutate(**{"linux__namespaces": list(ns(*NS, "user")), "linux__uidMappings": [
        {"containerID": 0, "hostID": 1000, "size": 10}, {"containerID": 10, "hostID": 1010, "size": 10}],
        "linux__gidMappings": [{"containerID": 0, "hostID": 0, "size": 4294967295}]}),
    mutate(**{"linux__namespaces": list(ns(*NS, user="/proc/1/ns/user"))}),
    mutate(**{"linux__namespaces": list(ns("pid", "ipc", "uts", "mount", network="/var/run/netns/x"))}),
    mutate(linux__sysctl={"net/ipv4/conf/eno2.100/rp_filter": "1", "kernel.domainname": "x",
                          "fs.mqueue.msg_max": "10", "kernel.sem": "1 2 3 4"}),
    mutate(hostname="", linux__sysctl={"kernel.hostname": "x"}),
    mutate(linux__devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                           {"path": "/dev/pipe", "type": "p"}]),
    mutate(linux__seccomp={"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
        {"names": ["x"], "action": "SCMP_ACT_TRACE", "errnoRet": 3},
        {"names": ["y"], "action": "SCMP_ACT_NOTIFY"}], "listenerPath": "/run/agent.sock"}),
    mutate(linux__netDevices={"eth1": {"name": "eth%d"}, "veth0": {}}),
    mutate(linux__netDevices={"a": {"name": "b"}, "b": {"name": "a"}, "c": {"name": "x%d"}, "d": {"name": "x%d"}}),
    mutate(linux__netDevices={"eth0": {"name": ""}, "a" * 15: {"name": "%d" + "b" * 13}}),
    mutate(**{"linux__netDevices": {"eth0": {}},
              "linux__namespaces": list(ns("pid", "ipc", "uts", "mount", network="/var/run/netns/x"))}),
    mutate(linux__intelRdt={"closID": "/"}),
    mutate(linux__resources={"cpu": {"quota": -1, "burst": 5}}),
    mutate(linux__resources={"cpu": {"quota": 10, "burst": 10}}),
    mutate(**{"linux__namespaces": list(ns(*NS, "time")), "linux__timeOffsets": {"monotonic": {"secs": 1}}}),
    mutate(process__scheduler={"policy": "SCHED_FIFO", "priority": 10, "nice": -20}),
    mutate(process__scheduler={"policy": "SCHED_DEADLINE", "runtime": 1024, "deadline": 2048, "period": 4096}),
    mutate(process__scheduler={"policy": "SCHED_DEADLINE", "runtime": 1024, "deadline": 1024}),
    mutate(process__scheduler={"policy": "SCHED_RR", "priority": 99, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}),
    mutate(process__scheduler={"policy": "SCHED_FIFO", "flags": ["SCHED_FLAG_KEEP_PARAMS"]}),
    mutate(process__scheduler={"policy": "SCHED_IDLE", "nice": 19}),
    mutate(process__ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 7}),
    mutate(process__execCPUAffinity={"initial": "0-3,7", "final": ""}),
    mutate(process__execCPUAffinity={"initial": "", "final": "65535"}),
    mutate(linux__personality={"domain": "LINUX32"}),
    mutate(linux__personality={"domain": "LINUX", "flags": []}),
    mutate(linux__memoryPolicy={"mode": "MPOL_DEFAULT"}),
    mutate(linux__memoryPolicy={"mode": "MPOL_LOCAL", "nodes": ""}),
    mutate(linux__memoryPolicy={"mode": "MPOL_PREFERRED"}),
    mutate(linux__memoryPolicy={"mode": "MPOL_PREFERRED", "nodes": "1", "flags": ["MPOL_F_STATIC_NODES"]}),
    mutate(linux__memoryPolicy={"mode": "MPOL_BIND", "nodes": "0-1,3", "flags": ["MPOL_F_NUMA_BALANCING",
                                                                                 "MPOL_F_RELATIVE_NODES"]}),
    mutate(linux__memoryPolicy={"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}),
])
def test_valid_variants(doc, bundle):
    check(doc, bundle)


# ------------------------------------------------------------------------------------------------ rule table

CASES = [
    # id, document, pointer, fragment of the reason
    # #7 ociVersion
    ("version 2", mutate(ociVersion="2.0.0"), "/ociVersion", "supports 1.x"),
    ("version 0", mutate(ociVersion="0.1.0"), "/ociVersion", "unsupported ociVersion '0.1.0'"),
    ("version 10", mutate(ociVersion="10.0.0"), "/ociVersion", "unsupported"),
    # #22 cwd, #20 args
    ("cwd relative", mutate(process__cwd="tmp"), "/process/cwd", "must be an absolute path"),
    ("cwd empty", mutate(process__cwd=""), "/process/cwd", "must be an absolute path"),
    ("cwd missing", mutate(process__cwd=_DEL), "/process/cwd", "process.cwd is required"),
    ("args empty", mutate(process__args=[]), "/process/args", "at least one entry"),
    ("args[0] empty", mutate(process__args=[""]), "/process/args/0", "must not be empty"),
    ("args NUL", mutate(process__args=["sh", "a\x00b"]), "/process/args/1", "NUL"),
    ("env no =", mutate(process__env=["PATH=/bin", "FOO"]), "/process/env/1", "NAME=value"),
    ("env empty name", mutate(process__env=["=x"]), "/process/env/0", "NAME=value"),
    ("env NUL", mutate(process__env=["A=\x00"]), "/process/env/0", "NUL"),
    # #19 capabilities, rlimits, oomScoreAdj
    ("cap unknown", mutate(process__capabilities={"bounding": ["CAP_KILL", "CAP_FOO"]}),
     "/process/capabilities/bounding/1", "unknown capability 'CAP_FOO'"),
    ("cap ambient lower", mutate(process__capabilities={"ambient": ["cap_kill"]}),
     "/process/capabilities/ambient/0", "unknown capability"),
    ("cap beyond list", mutate(process__capabilities={"permitted": ["CAP_41"]}),
     "/process/capabilities/permitted/0", "unknown capability"),
    ("rlimit unknown", mutate(process__rlimits=[{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]),
     "/process/rlimits/0/type", "unknown rlimit type 'RLIMIT_FOO'"),
    ("rlimit soft>hard", mutate(process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
     "/process/rlimits/0/soft", "soft limit 2048 is greater than hard limit 1024"),
    ("rlimit duplicate", mutate(process__rlimits=[{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                                                  {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]),
     "/process/rlimits/1/type", "duplicate rlimit type 'RLIMIT_CORE'"),
    ("oom high", mutate(process__oomScoreAdj=1001), "/process/oomScoreAdj", "out of range [-1000, 1000]"),
    ("oom low", mutate(process__oomScoreAdj=-1001), "/process/oomScoreAdj", "out of range"),
    ("nice", mutate(process__scheduler={"policy": "SCHED_OTHER", "nice": 20}), "/process/scheduler/nice",
     "out of range [-20, 19]"),
    ("sched priority", mutate(process__scheduler={"policy": "SCHED_OTHER", "priority": 1}),
     "/process/scheduler/priority", "SCHED_FIFO or SCHED_RR"),
    ("sched runtime", mutate(process__scheduler={"policy": "SCHED_FIFO", "runtime": 1}),
     "/process/scheduler/runtime", "SCHED_DEADLINE"),
    ("ioprio", mutate(process__ioPriority={"class": "IOPRIO_CLASS_RT", "priority": 8}),
     "/process/ioPriority/priority", "out of range [0, 7]"),
    ("sched iso", mutate(process__scheduler={"policy": "SCHED_ISO"}), "/process/scheduler/policy",
     "SCHED_ISO is not implemented by Linux"),
    ("sched fifo prio 0", mutate(process__scheduler={"policy": "SCHED_FIFO"}), "/process/scheduler/priority",
     "out of range [1, 99] for SCHED_FIFO"),
    ("sched rr prio 100", mutate(process__scheduler={"policy": "SCHED_RR", "priority": 100}),
     "/process/scheduler/priority", "out of range [1, 99]"),
    ("sched keep negative prio", mutate(process__scheduler={"policy": "SCHED_RR", "priority": -1,
                                                            "flags": ["SCHED_FLAG_KEEP_POLICY"]}),
     "/process/scheduler/priority", "out of range [0, 99]"),
    ("sched dup flag", mutate(process__scheduler={"policy": "SCHED_OTHER", "flags": [
        "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RESET_ON_FORK"]}), "/process/scheduler/flags/1", "duplicate"),
    ("dl runtime", mutate(process__scheduler={"policy": "SCHED_DEADLINE", "runtime": 1000, "deadline": 5000}),
     "/process/scheduler/runtime", "below the kernel's minimum of 1024"),
    ("dl deadline<runtime", mutate(process__scheduler={"policy": "SCHED_DEADLINE", "runtime": 5000,
                                                       "deadline": 2000}),
     "/process/scheduler/deadline", "at least scheduler.runtime (5000)"),
    ("dl no deadline", mutate(process__scheduler={"policy": "SCHED_DEADLINE", "runtime": 5000}),
     "/process/scheduler/deadline", "at least scheduler.runtime"),
    ("dl period<deadline", mutate(process__scheduler={"policy": "SCHED_DEADLINE", "runtime": 5000,
                                                      "deadline": 9000, "period": 8000}),
     "/process/scheduler/period", "0 or at least scheduler.deadline (9000)"),
    ("dl bit 63", mutate(process__scheduler={"policy": "SCHED_DEADLINE", "runtime": 5000,
                                             "deadline": 1 << 63}),
     "/process/scheduler/deadline", "bit 63"),
    ("affinity letters", mutate(process__execCPUAffinity={"initial": "0-x"}), "/process/execCPUAffinity/initial",
     "invalid CPU list '0-x'"),
    ("affinity reversed", mutate(process__execCPUAffinity={"final": "3-1"}), "/process/execCPUAffinity/final",
     "ends before it starts"),
    ("affinity huge", mutate(process__execCPUAffinity={"final": "65536"}), "/process/execCPUAffinity/final",
     "CPU 65536 is above 65535"),
    ("affinity empty element", mutate(process__execCPUAffinity={"final": "1,,2"}),
     "/process/execCPUAffinity/final", "'' is not a number"),
    ("personality flag", mutate(linux__personality={"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
     "/linux/personality/flags/0", "unsupported personality flag 'ADDR_NO_RANDOMIZE'"),
    ("mpol default nodes", mutate(linux__memoryPolicy={"mode": "MPOL_DEFAULT", "nodes": "0"}),
     "/linux/memoryPolicy/nodes", "MPOL_DEFAULT takes no nodes"),
    ("mpol local nodes", mutate(linux__memoryPolicy={"mode": "MPOL_LOCAL", "nodes": "0-1"}),
     "/linux/memoryPolicy/nodes", "MPOL_LOCAL takes no nodes"),
    *[(f"mpol {m} no nodes", mutate(linux__memoryPolicy={"mode": m}), "/linux/memoryPolicy/nodes",
       f"{m} needs at least one node")
      for m in ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY")],
    ("mpol bad nodes", mutate(linux__memoryPolicy={"mode": "MPOL_BIND", "nodes": "zero"}),
     "/linux/memoryPolicy/nodes", "invalid node list 'zero'"),
    ("mpol numa balancing", mutate(linux__memoryPolicy={"mode": "MPOL_INTERLEAVE", "nodes": "0",
                                                        "flags": ["MPOL_F_NUMA_BALANCING"]}),
     "/linux/memoryPolicy/flags/0", "needs mode MPOL_BIND or MPOL_PREFERRED_MANY"),
    ("mpol static+relative", mutate(linux__memoryPolicy={"mode": "MPOL_BIND", "nodes": "0", "flags": [
        "MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}), "/linux/memoryPolicy/flags/0", "exclude each other"),
    ("mpol local static", mutate(linux__memoryPolicy={"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]}),
     "/linux/memoryPolicy/flags/0", "needs nodes"),
    ("mpol preferred relative", mutate(linux__memoryPolicy={"mode": "MPOL_PREFERRED", "flags": [
        "MPOL_F_RELATIVE_NODES"]}), "/linux/memoryPolicy/flags/0", "needs nodes"),
    ("mpol dup flag", mutate(linux__memoryPolicy={"mode": "MPOL_BIND", "nodes": "0", "flags": [
        "MPOL_F_STATIC_NODES", "MPOL_F_STATIC_NODES"]}), "/linux/memoryPolicy/flags/1", "duplicate"),
    # #32 hooks
    *[(f"hook {h}", mutate(hooks={h: [{"path": "/ok"}, {"path": "bin/hook"}]}), f"/hooks/{h}/1/path",
       "must be an absolute path") for h in validate.HOOK_NAMES],
    ("hook NUL", mutate(hooks={"poststop": [{"path": "/bin/\x00x"}]}), "/hooks/poststop/0/path", "NUL"),
    # #11 mount destinations
    ("mount relative", mutate(mounts__1__destination="dev"), "/mounts/1/destination", "must be an absolute path"),
    ("mount dotdot", mutate(mounts__2__destination="/../../etc"), "/mounts/2/destination", "'..' components"),
    ("mount dotdot inner", mutate(mounts__2__destination="/data/../../etc"), "/mounts/2/destination", "'..'"),
    ("mount dotdot end", mutate(mounts__2__destination="/data/.."), "/mounts/2/destination", "'..'"),
    ("mount source NUL", mutate(mounts__2__source="/srv/\x00"), "/mounts/2/source", "NUL"),
    # #12 /proc
    ("proc tmpfs", mutate(mounts__0__type="tmpfs"), "/mounts/0/type", "must have type 'proc'"),
    ("proc no type", mutate(mounts__0__type=_DEL), "/mounts/0/type", "must have type 'proc'"),
    ("proc normalized", mutate(mounts__1__destination="//proc/./"), "/mounts/1/type", "type 'proc'"),
    ("proc bind other", mutate(mounts=[{"destination": "/proc", "type": "bind", "source": "/tmp",
                                        "options": ["rbind"]}]), "/mounts/0/type", "type 'proc'"),
    ("proc bind no opt", mutate(mounts=[{"destination": "/proc", "type": "none", "source": "/proc"}]),
     "/mounts/0/type", "type 'proc'"),
    # idmapped mounts
    ("idmap no userns", mutate(mounts__2__options=["rbind", "idmap"]), "/mounts/2/options",
     "needs uidMappings/gidMappings or a user namespace"),
    ("mount map size 0", mutate(mounts__2__uidMappings=[{"containerID": 0, "hostID": 0, "size": 0}],
                                mounts__2__gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/mounts/2/uidMappings/0/size", "size 0"),
    ("mount maps on tmpfs", mutate(mounts__1__uidMappings=[{"containerID": 0, "hostID": 0, "size": 1}],
                                   mounts__1__gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/mounts/1/uidMappings", "only supported for bind mounts"),
    ("idmap option on tmpfs", mutate(mounts__1__options=["idmap"]), "/mounts/1/options",
     "only supported for bind mounts"),
    ("mount maps empty", mutate(mounts__2__uidMappings=[],
                                mounts__2__gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/mounts/2/uidMappings", "at least one uidMappings entry"),
    ("mount maps overlap", mutate(mounts__2__uidMappings=[{"containerID": 0, "hostID": 0, "size": 10},
                                                          {"containerID": 5, "hostID": 100, "size": 1}],
                                  mounts__2__gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/mounts/2/uidMappings/1/containerID", "overlap"),
    ("mount maps overflow", mutate(mounts__2__uidMappings=[{"containerID": 0, "hostID": 4294967000, "size": 1000}],
                                   mounts__2__gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/mounts/2/uidMappings/0/size", "overflows"),
    # #16 namespaces and id maps
    ("ns duplicate", mutate(linux__namespaces=ns(*NS, "pid")), "/linux/namespaces/5/type",
     "duplicate namespace type 'pid' (also at index 0)"),
    ("ns relative path", mutate(linux__namespaces=ns("pid", "ipc", "uts", "mount", network="netns/x")),
     "/linux/namespaces/4/path", "must be an absolute path"),
    ("userns path+maps", mutate(linux__namespaces=ns(*NS, user="/proc/1/ns/user"),
                                linux__uidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/linux/uidMappings", "cannot be combined with joining"),
    ("userns path+gidmaps", mutate(linux__namespaces=ns(*NS, user="/proc/1/ns/user"),
                                   linux__gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/linux/gidMappings", "cannot be combined with joining"),
    ("userns no maps", mutate(linux__namespaces=ns(*NS, "user")), "/linux/namespaces/5",
     "a new user namespace needs linux.uidMappings"),
    ("userns no gidmaps", mutate(linux__namespaces=ns("user", *NS),
                                 linux__uidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/linux/namespaces/0", "needs linux.gidMappings"),
    ("maps no userns", mutate(linux__uidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/linux/uidMappings", "no user namespace"),
    ("gidmaps no userns", mutate(linux__gidMappings=[{"containerID": 0, "hostID": 0, "size": 1}]),
     "/linux/gidMappings", "no user namespace"),
]


def _userns(uid, gid=None):
    return mutate(linux__namespaces=ns(*NS, "user"), linux__uidMappings=uid,
                  linux__gidMappings=gid if gid is not None else [{"containerID": 0, "hostID": 0, "size": 1}])


CASES += [
    ("map size 0", _userns([{"containerID": 0, "hostID": 0, "size": 0}]), "/linux/uidMappings/0/size", "size 0"),
    ("map host overflow", _userns([{"containerID": 0, "hostID": 4294967295, "size": 1}]),
     "/linux/uidMappings/0/size", "hostID 4294967295 + size 1 exceeds 4294967295"),
    ("map host overflow 2^32", _userns([{"containerID": 0, "hostID": 1, "size": 4294967295}]),
     "/linux/uidMappings/0/size", "overflows"),
    ("map container overflow", _userns([{"containerID": 4294967000, "hostID": 0, "size": 1000}]),
     "/linux/uidMappings/0/size", "containerID 4294967000 + size 1000"),
    ("map overlap container", _userns([{"containerID": 0, "hostID": 0, "size": 10},
                                       {"containerID": 9, "hostID": 100, "size": 10}]),
     "/linux/uidMappings/1/containerID", "entries 0 and 1 overlap in their containerID ranges"),
    ("map overlap host", _userns([{"containerID": 0, "hostID": 0, "size": 1}],
                                 [{"containerID": 100, "hostID": 50, "size": 10},
                                  {"containerID": 0, "hostID": 55, "size": 1}]),
     "/linux/gidMappings/1/hostID", "overlap in their hostID ranges"),
    ("map too many", _userns([{"containerID": i, "hostID": i, "size": 1} for i in range(341)]),
     "/linux/uidMappings", "at most 340"),
    # uts
    ("hostname no uts", mutate(linux__namespaces=ns("pid", "network", "ipc", "mount")), "/hostname",
     "without a uts namespace"),
    ("domainname no uts", mutate(hostname="", domainname="d", linux__namespaces=ns("pid", "network", "ipc", "mount")),
     "/domainname", "without a uts namespace"),
    # #18 sysctl
    ("sysctl ipc", mutate(linux__namespaces=ns("pid", "network", "uts", "mount")), "/linux/sysctl/kernel.shmmax",
     "needs an ipc namespace"),
    ("sysctl mqueue", mutate(linux__sysctl={"fs.mqueue.msg_max": "1"}, linux__namespaces=ns("uts", "mount")),
     "/linux/sysctl/fs.mqueue.msg_max", "needs an ipc namespace"),
    ("sysctl net", mutate(linux__sysctl={"net.core.somaxconn": "1"}, linux__namespaces=ns("uts", "mount")),
     "/linux/sysctl/net.core.somaxconn", "needs a network namespace"),
    ("sysctl net slash", mutate(linux__sysctl={"net/ipv4/ip_forward": "1"}, linux__namespaces=ns("uts", "mount")),
     "/linux/sysctl/net~1ipv4~1ip_forward", "sysctl 'net.ipv4.ip_forward' needs a network namespace"),
    ("sysctl uts", mutate(hostname="", linux__sysctl={"kernel.domainname": "x"},
                          linux__namespaces=ns("mount")), "/linux/sysctl/kernel.domainname", "needs a uts namespace"),
    ("sysctl hostname conflict", mutate(linux__sysctl={"kernel.hostname": "x"}), "/linux/sysctl/kernel.hostname",
     "conflicts with the hostname field"),
    ("sysctl host-wide", mutate(linux__sysctl={"vm.swappiness": "1"}), "/linux/sysctl/vm.swappiness",
     "is not namespaced"),
    ("sysctl kernel other", mutate(linux__sysctl={"kernel.core_pattern": "|/x"}),
     "/linux/sysctl/kernel.core_pattern", "is not namespaced"),
    ("sysctl traversal", mutate(linux__sysctl={"net/../../kernel/core_pattern": "|/x"}),
     "/linux/sysctl/net~1..~1..~1kernel~1core_pattern", "invalid sysctl name"),
    ("sysctl empty part", mutate(linux__sysctl={"net..core": "1"}), "/linux/sysctl/net..core", "invalid sysctl name"),
    ("sysctl value NUL", mutate(linux__sysctl={"net.core.x": "\x00"}), "/linux/sysctl/net.core.x", "NUL"),
    # devices
    ("device relative", mutate(linux__devices=[{"path": "dev/null", "type": "c", "major": 1, "minor": 3}]),
     "/linux/devices/0/path", "must be an absolute path"),
    ("device /dev itself", mutate(linux__devices=[{"path": "/dev", "type": "c", "major": 1, "minor": 3}]),
     "/linux/devices/0/path", "not the root or /dev"),
    ("device the root", mutate(linux__devices=[{"path": "/", "type": "c", "major": 1, "minor": 3}]),
     "/linux/devices/0/path", "not the root or /dev"),
    ("device dotdot", mutate(linux__devices=[{"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}]),
     "/linux/devices/0/path", "'..'"),
    ("device type", mutate(linux__devices=[{"path": "/dev/x", "type": "x", "major": 1, "minor": 3}]),
     "/linux/devices/0/type", "must be one of c, b, u, p"),
    ("device no major", mutate(linux__devices=[{"path": "/dev/p", "type": "p"},
                                               {"path": "/dev/x", "type": "u", "minor": 3}]),
     "/linux/devices/1", "needs major"),
    ("device no minor", mutate(linux__devices=[{"path": "/dev/x", "type": "b", "major": 3}]),
     "/linux/devices/0", "needs minor"),
    # masked / readonly paths
    ("masked relative", mutate(linux__maskedPaths=["/ok", "proc/kcore"]), "/linux/maskedPaths/1",
     "must be an absolute path"),
    ("readonly relative", mutate(linux__readonlyPaths=["sys"]), "/linux/readonlyPaths/0", "must be an absolute path"),
    ("masked no mntns", mutate(linux__namespaces=ns("pid", "network", "ipc", "uts")), "/linux/maskedPaths",
     "needs a mount namespace"),
    # time namespace
    ("timeOffsets no timens", mutate(linux__timeOffsets={"boottime": {"secs": 1}}), "/linux/timeOffsets",
     "needs a time namespace"),
    # seccomp
    ("errnoRet allow", mutate(linux__seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["x"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
     "/linux/seccomp/syscalls/0/errnoRet", "cannot be used with action SCMP_ACT_ALLOW"),
    ("defaultErrnoRet kill", mutate(linux__seccomp={"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1}),
     "/linux/seccomp/defaultErrnoRet", "cannot be used with defaultAction SCMP_ACT_KILL"),
    ("notify default", mutate(linux__seccomp={"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
     "/linux/seccomp/defaultAction", "cannot be the default action"),
    ("notify no listener", mutate(linux__seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["x"], "action": "SCMP_ACT_NOTIFY"}]}), "/linux/seccomp", "needs linux.seccomp.listenerPath"),
    ("listener relative", mutate(linux__seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "a.sock"}),
     "/linux/seccomp/listenerPath", "must be an absolute path"),
    # netDevices
    ("netdev no netns", mutate(linux__netDevices={"eth0": {}}, linux__sysctl={},
                               linux__namespaces=ns("pid", "ipc", "uts", "mount")),
     "/linux/netDevices", "needs a network namespace"),
    ("netdev bad name", mutate(linux__netDevices={"eth/0": {}}), "/linux/netDevices/eth~10",
     "invalid network device name 'eth/0'"),
    ("netdev long name", mutate(linux__netDevices={"a" * 16: {}}), "/linux/netDevices/" + "a" * 16,
     "invalid network device name"),
    ("netdev bad new name", mutate(linux__netDevices={"eth0": {"name": ".."}}), "/linux/netDevices/eth0/name",
     "invalid network device name '..'"),
    ("netdev template host", mutate(linux__netDevices={"eth%d": {}}), "/linux/netDevices/eth%d",
     "invalid network device name"),
    ("netdev template not %d", mutate(linux__netDevices={"eth0": {"name": "c%s"}}), "/linux/netDevices/eth0/name",
     "invalid network device name 'c%s'"),
    ("netdev template twice", mutate(linux__netDevices={"eth0": {"name": "c%d%d"}}), "/linux/netDevices/eth0/name",
     "invalid network device name"),
    ("netdev name with colon", mutate(linux__netDevices={"eth0": {"name": "c:1"}}), "/linux/netDevices/eth0/name",
     "invalid network device name"),
    ("netdev name with space", mutate(linux__netDevices={"eth 0": {}}), "/linux/netDevices/eth 0",
     "invalid network device name"),
    ("netdev same new name", mutate(linux__netDevices={"eth0": {"name": "c0"}, "eth1": {"name": "c0"}}),
     "/linux/netDevices/eth1/name", "network devices 'eth0' and 'eth1' would both be named 'c0' in the container"),
    ("netdev new name is another's", mutate(linux__netDevices={"eth0": {"name": "eth1"}, "eth1": {}}),
     "/linux/netDevices/eth1", "would both be named 'eth1'"),
    # intelRdt, cpu
    ("closID dotdot", mutate(linux__intelRdt={"closID": ".."}), "/linux/intelRdt/closID", "invalid intelRdt.closID"),
    ("closID slash", mutate(linux__intelRdt={"closID": "a/b"}), "/linux/intelRdt/closID", "invalid"),
    ("burst > quota", mutate(linux__resources={"cpu": {"quota": 10, "burst": 11}}), "/linux/resources/cpu/burst",
     "cpu.burst 11 is larger than cpu.quota 10"),
]


@pytest.mark.parametrize("name,doc,pointer,fragment", CASES, ids=[c[0] for c in CASES])
def test_rule(name, doc, pointer, fragment, bundle):
    rejected(doc, bundle, pointer, fragment)


def test_every_rule_is_exercised():
    """Each rule function in the table of rules is hit by at least one case above."""
    hit = set()
    for _, doc, _, _ in CASES:
        for rule in validate._CONFIG_RULES:
            try:
                rule(doc, validate._Context(doc, "/nonexistent-bundle", False))
            except ConfigError:
                hit.add(rule.__name__)
                break
    missing = {r.__name__ for r in validate._CONFIG_RULES} - hit - {"_check_root", "_check_process_in_config"}
    assert not missing


# ------------------------------------------------------------------------------------------------ create-time rules

def test_create_requires_process(bundle):
    doc = mutate(process=_DEL)
    check(doc, bundle)
    rejected(doc, bundle, "/process", "process is required to create a container", for_create=True)


def test_create_requires_args(bundle):
    doc = mutate(process__args=_DEL)
    check(doc, bundle)
    rejected(doc, bundle, "/process/args", "at least one entry", for_create=True)


# ------------------------------------------------------------------------------------------------ #10 root.path

def test_root_missing(tmp_path):
    rejected(BASE, str(tmp_path), "/root/path", "does not exist")


def test_root_not_a_directory(tmp_path):
    (tmp_path / "rootfs").write_text("")
    rejected(BASE, str(tmp_path), "/root/path", "is not a directory")


def test_root_is_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "rootfs")
    rejected(BASE, str(tmp_path), "/root/path", "is a symlink")


def test_root_symlink_component(tmp_path):
    (tmp_path / "real" / "rootfs").mkdir(parents=True)
    os.symlink("real", tmp_path / "link")
    rejected(mutate(root__path="link/rootfs"), str(tmp_path), "/root/path", "has a symlink in its path")


def test_root_relative_escape(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (tmp_path / "outside").mkdir()
    rejected(mutate(root__path="../outside"), str(bundle), "/root/path", "escapes the bundle directory")
    rejected(mutate(root__path="rootfs/../../outside"), str(bundle), "/root/path", "escapes the bundle")


def test_root_relative_inside_with_dotdot(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "rootfs").mkdir()
    assert validate.resolve_rootfs(mutate(root__path="a/../rootfs"), str(tmp_path)) == str(tmp_path / "rootfs")


def test_root_absolute(tmp_path):
    (tmp_path / "somewhere" / "rootfs").mkdir(parents=True)
    doc = mutate(root__path=str(tmp_path / "somewhere" / "rootfs") + "/")
    check(doc, str(tmp_path / "bundle-not-used"))
    assert validate.resolve_rootfs(doc, "/") == str(tmp_path / "somewhere" / "rootfs")


def test_root_absolute_through_symlink(tmp_path):
    (tmp_path / "real" / "rootfs").mkdir(parents=True)
    os.symlink("real", tmp_path / "link")
    rejected(mutate(root__path=str(tmp_path / "link" / "rootfs")), "/", "/root/path", "has a symlink in its path")


def test_symlinked_bundle_dir_is_fine(tmp_path):
    (tmp_path / "real" / "rootfs").mkdir(parents=True)
    os.symlink("real", tmp_path / "bundle")
    path = validate.resolve_rootfs(BASE, str(tmp_path / "bundle"))
    assert path == str(tmp_path / "real" / "rootfs")


def test_root_path_absent(bundle):
    rejected(mutate(root=_DEL), bundle, "/root", "root.path is required")
    rejected(mutate(root__path=""), bundle, "/root/path", "root.path is required")


def test_lexical_errors_come_before_filesystem_access(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(validate.os, "lstat", lambda p: calls.append(p) or os.lstat(p))
    rejected(mutate(linux__sysctl={"vm.swappiness": "1"}), str(tmp_path), "/linux/sysctl/vm.swappiness",
             "not namespaced")
    assert calls == []


# ------------------------------------------------------------------------------------------------ check_process

def process_rejected(doc, pointer, fragment):
    with pytest.raises(ConfigError) as ei:
        validate.check_process(doc)
    e = ei.value
    assert e.source == "process.json"
    assert e.pointer == pointer, str(e)
    assert fragment in e.reason
    assert "\n" not in str(e)
    assert str(e).startswith(f"process.json: {pointer}: ")


def test_check_process_valid():
    validate.check_process({"cwd": "/", "args": ["ls"], "env": ["A=b"]})


@pytest.mark.parametrize("doc,pointer,fragment", [
    ({"cwd": "/"}, "/args", "at least one entry"),
    ({"cwd": "/", "args": []}, "/args", "at least one entry"),
    ({"cwd": "rel", "args": ["ls"]}, "/cwd", "must be an absolute path"),
    ({"args": ["ls"]}, "/cwd", "process.cwd is required"),
    ({"cwd": "/", "args": ["ls"], "env": ["X"]}, "/env/0", "NAME=value"),
    ({"cwd": "/", "args": ["ls"], "capabilities": {"effective": ["CAP_NOPE"]}}, "/capabilities/effective/0",
     "unknown capability"),
    ({"cwd": "/", "args": ["ls"], "rlimits": [{"type": "RLIMIT_NPROC", "soft": 5, "hard": 4}]}, "/rlimits/0/soft",
     "greater than hard limit"),
    ({"cwd": "/", "args": ["ls"], "oomScoreAdj": 5000}, "/oomScoreAdj", "out of range"),
    ({"cwd": "/", "args": ["ls"], "scheduler": {"policy": "SCHED_ISO"}}, "/scheduler/policy", "SCHED_ISO"),
    ({"cwd": "/", "args": ["ls"], "execCPUAffinity": {"final": "1-"}}, "/execCPUAffinity/final",
     "invalid CPU list"),
])
def test_check_process_rules(doc, pointer, fragment):
    process_rejected(doc, pointer, fragment)
