"""Tests for ociruntime.schema and the project's own schemas in schemas/.

(a) On every document of a corpus of valid configs and their systematic mutations, the built-in fast validator and
    jsonschema (Draft4Validator over OUR schemas) give identical verdicts.
(b) On the same corpus, our schemas and the official runtime-spec v1.3.0 schemas (../shared/oci-schemas/v1.3.0,
    reference data only) agree, except for the deliberate, documented disagreements in DELIBERATE below.
(d) Import hygiene: importing schema/validate/config, and validating a valid config, never import jsonschema.
"""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

from ociruntime import schema  # noqa: E402
from ociruntime.errors import ConfigError  # noqa: E402

OFFICIAL = REPO / ".." / "shared" / "oci-schemas" / "v1.3.0"
RUNC = "/usr/sbin/runc"

jsonschema = pytest.importorskip("jsonschema")


# ------------------------------------------------------------------------------------------------ corpus

MINIMAL = {"ociVersion": "1.3.0", "root": {"path": "rootfs"}}

# Every field of config.md and config-linux.md (Linux), with valid values.
FULL = {
    "ociVersion": "1.3.0",
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "full",
    "domainname": "example.test",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/data", "type": "none", "source": "/volumes/testing", "options": ["rbind", "rw", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
         "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
    ],
    "process": {
        "terminal": True,
        "consoleSize": {"height": 25, "width": 80},
        "user": {"uid": 1, "gid": 1, "umask": 18, "additionalGids": [5, 6]},
        "args": ["sh", "-c", "true"],
        "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
        "cwd": "/root",
        "capabilities": {
            "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_AUDIT_WRITE"],
            "effective": ["CAP_AUDIT_WRITE", "CAP_KILL"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        },
        "rlimits": [{"type": "RLIMIT_CORE", "hard": 1024, "soft": 1024},
                    {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
        "apparmorProfile": "acme_secure_profile",
        "oomScoreAdj": 100,
        "selinuxLabel": "system_u:system_r:svirt_lxc_net_t:s0:c124,c675",
        "noNewPrivileges": True,
        "scheduler": {"policy": "SCHED_DEADLINE", "nice": 0, "priority": 0,
                      "flags": ["SCHED_FLAG_RESET_ON_FORK"], "runtime": 10000, "deadline": 20000, "period": 30000},
        "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4},
        "execCPUAffinity": {"initial": "7", "final": "0-3,7"},
    },
    "hooks": {
        "prestart": [{"path": "/usr/bin/fix-mounts", "args": ["fix-mounts", "arg1"], "env": ["key1=value1"]}],
        "createRuntime": [{"path": "/usr/bin/setup-network"}],
        "createContainer": [{"path": "/usr/bin/mount-hook", "args": ["-mount"]}],
        "startContainer": [{"path": "/usr/bin/refresh-ldcache"}],
        "poststart": [{"path": "/usr/bin/notify-start", "timeout": 5}],
        "poststop": [{"path": "/usr/sbin/cleanup.sh", "args": ["cleanup.sh", "-f"]}],
    },
    "annotations": {"com.example.key1": "value1", "org.opencontainers.image.os": "linux"},
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user", "cgroup", "time")],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "timeOffsets": {"monotonic": {"secs": 172800, "nanosecs": 0}, "boottime": {"secs": -5, "nanosecs": 1}},
        "devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0},
            {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
            {"path": "/dev/myfifo", "type": "p"},
        ],
        "netDevices": {"eth1": {"name": "ctr_eth1"}, "eth2": {}},
        "cgroupsPath": "/myRuntime/myContainer",
        "resources": {
            "devices": [{"allow": False, "access": "rwm"},
                        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}],
            "memory": {"limit": 536870912, "reservation": 536870912, "swap": 536870912, "kernel": -1,
                       "kernelTCP": -1, "swappiness": 0, "disableOOMKiller": False, "useHierarchy": True,
                       "checkBeforeUpdate": True},
            "cpu": {"shares": 1024, "quota": 1000000, "burst": 1000000, "period": 500000,
                    "realtimeRuntime": 950000, "realtimePeriod": 1000000, "cpus": "2-3", "mems": "0-7", "idle": 1},
            "blockIO": {
                "weight": 10, "leafWeight": 10,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
                                 {"major": 8, "minor": 16, "weight": 500}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 700}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 800}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}, {"pageSize": "64KB", "limit": 1000000}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
            "pids": {"limit": 32771},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaObjects": 1000}},
            "unified": {"io.max": "259:0 rbps=2097152 wiops=120", "hugetlb.1GB.max": "1073741824"},
        },
        "intelRdt": {"closID": "guaranteed_group", "l3CacheSchema": "L3:0=7f0;1=1f", "memBwSchema": "MB:0=20;1=70",
                     "schemata": ["L2:0=f;1=f"], "enableMonitoring": True},
        "memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "2-3", "flags": ["MPOL_F_STATIC_NODES"]},
        "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "4096"},
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "listenerPath": "/run/seccomp-agent.socket",
            "listenerMetadata": "MKNOD=/dev/null",
            "syscalls": [
                {"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                 "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
            ],
        },
        "rootfsPropagation": "slave",
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "system_u:object_r:svirt_sandbox_file_t:s0:c715,c811",
        "personality": {"domain": "LINUX", "flags": []},
    },
    "solaris": {"milestone": "svc:/milestone/container:default"},
    "windows": {"layerFolders": ["C:\\layers"]},
    "vm": {"hypervisor": {"path": "/usr/bin/qemu"}, "kernel": {"path": "/vmlinuz"}},
    "zos": {},
    "freebsd": {},
}

STATES = [
    {"ociVersion": "1.3.0", "id": "c1", "status": "created", "pid": 4422, "bundle": "/containers/redis"},
    {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 1, "bundle": "/b",
     "annotations": {"myKey": "myValue"}},
    {"ociVersion": "1.3.0", "id": "c1", "status": "stopped", "pid": 0, "bundle": "/b"},
    {"ociVersion": "1.3.0", "id": "c1", "status": "stopped", "bundle": "/b"},
    {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "bundle": "/b"},
]

FEATURES = {
    "ociVersionMin": "1.0.0",
    "ociVersionMax": "1.3.0",
    "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
    "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "idmap"],
    "linux": {
        "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
        "capabilities": ["CAP_CHOWN", "CAP_KILL", "CAP_CHECKPOINT_RESTORE"],
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
        "seccomp": {"enabled": True, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"],
                    "operators": ["SCMP_CMP_EQ"], "archs": ["SCMP_ARCH_X86_64"],
                    "knownFlags": ["SECCOMP_FILTER_FLAG_LOG"], "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG"]},
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
        "memoryPolicy": {"modes": ["MPOL_DEFAULT"], "flags": ["MPOL_F_STATIC_NODES"]},
        "intelRdt": {"enabled": False, "schemata": False, "monitoring": False},
        "mountExtensions": {"idmap": {"enabled": True}},
        "netDevices": {"enabled": True},
    },
    "annotations": {"org.opencontainers.runc.version": "ociruntime"},
    "potentiallyUnsafeConfigAnnotations": ["org.systemd.property."],
}


def _runc_spec(tmp_path_factory, *flags):
    if not os.access(RUNC, os.X_OK):
        pytest.skip(f"{RUNC} is not installed")
    d = tmp_path_factory.mktemp("runcspec")
    subprocess.run([RUNC, "spec", *flags], cwd=d, check=True, capture_output=True)
    return json.loads((d / "config.json").read_text())


@pytest.fixture(scope="session")
def runc_default(tmp_path_factory):
    return _runc_spec(tmp_path_factory)


@pytest.fixture(scope="session")
def runc_rootless(tmp_path_factory):
    return _runc_spec(tmp_path_factory, "--rootless")


# ------------------------------------------------------------------------------------------------ mutations

_INT_ALTS = [-1, 65536, 2**31, 2**32, 2**63, 2**64, -(2**31) - 1, -(2**63) - 1, 1.5, 1.0, "1", True, None]
_STR_ALTS = [1, None, "", "x", [], True]
_BOOL_ALTS = ["true", 0, 1, None]
_LIST_ALTS = [{}, "x", [], [None], [1], ["x"]]
_DICT_ALTS = [[], "x", {}, None, {"": "x"}]


def _alternatives(v):
    if isinstance(v, bool):
        return _BOOL_ALTS
    if isinstance(v, int):
        return _INT_ALTS
    if isinstance(v, str):
        return _STR_ALTS
    if isinstance(v, list):
        return _LIST_ALTS
    if isinstance(v, dict):
        return _DICT_ALTS
    return [1, "x"]


def _nodes(doc, path=()):
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(doc, list):
        # Objects in a list differ in shape (a c device and a p device), so visit all of them; scalars in a list
        # (capability names, mount options) are alike, so visiting the first two is enough.
        for i, v in enumerate(doc):
            if i < 2 or isinstance(v, (dict, list)):
                yield from _nodes(v, path + (i,))


def _same(a, b):
    return type(a) is type(b) and a == b


def mutations(doc, under=()):
    """Yield (label, mutated document): every node at or below the path ``under`` replaced by values of other
    types, out-of-range and boundary numbers, empty and bad strings; and every object member deleted."""
    for path, value in _nodes(doc):
        if path[:len(under)] != under:
            continue
        if path:
            yield f"del {'/'.join(map(str, path))}", _apply(doc, path, None, delete=True)
        for alt in _alternatives(value):
            if not _same(alt, value):
                yield f"set {'/'.join(map(str, path))}={alt!r}", _apply(doc, path, alt)


def is_leaf_set(label):
    """A mutation that replaces a scalar (its verdict hardly depends on the rest of the document)."""
    return label.startswith("set ") and not label.partition("=")[0].endswith(tuple(SKELETON))


SKELETON = ("ociVersion", "root")
SPLIT = {("linux",), ("linux", "resources")}


def slices(doc):
    """Split a config into small documents: the skeleton (ociVersion, root) plus one section each, going one level
    deeper for linux and linux.resources. jsonschema's cost grows with document size; any document is a fair
    test case for comparing verdicts, and each path of the original is mutated exactly once, in its own slice."""
    skeleton = {k: doc[k] for k in SKELETON if k in doc}
    yield (), skeleton

    def walk(prefix, section):
        for k, v in section.items():
            path = prefix + (k,)
            if path in SPLIT and isinstance(v, dict):
                yield from walk(path, v)
            else:
                sliced = copy.deepcopy(skeleton)
                node = sliced
                for p in path[:-1]:
                    node = node.setdefault(p, {})
                node[k] = v
                yield path, sliced

    yield from walk((), {k: v for k, v in doc.items() if k not in SKELETON})


def _slice_mutations(doc):
    for under, sliced in slices(doc):
        if under == ():
            yield from mutations(sliced)
        else:
            yield from mutations(sliced, under)


def _apply(doc, path, value, delete=False):
    if not path:
        return copy.deepcopy(value)
    out = copy.deepcopy(doc)
    parent = out
    for p in path[:-1]:
        parent = parent[p]
    if delete:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def _is_scalar_path(doc, label):
    node = doc
    for p in label[4:].partition("=")[0].split("/"):
        if isinstance(node, list):
            node = node[int(p)]
        elif isinstance(node, dict) and p in node:
            node = node[p]
        else:
            return False
    return not isinstance(node, (dict, list))


def config_corpus(extra=()):
    docs = [("minimal", MINIMAL), ("full", FULL), *extra]
    seen = set()
    for name, d in docs:
        yield f"{name}: valid", d
        # Replacing a scalar at a place (list indexes ignored) where an earlier document already had it replaced is
        # skipped: runc's configs share most of their shape with FULL, and jsonschema is slow (~2 ms a document).
        # Deletions and replacements of objects and arrays are always kept: their verdict depends on context.
        mine = set()
        for label, m in _slice_mutations(d):
            shape = re.sub(r"/[0-9]+(?=[/=]|$)", "/#", label)
            mine.add(shape)
            if shape in seen and is_leaf_set(label) and _is_scalar_path(d, label):
                continue
            yield f"{name}: {label}", m
        seen |= mine
    # Hand-picked invalid documents.
    yield "bad ociVersion", {**MINIMAL, "ociVersion": "1.0"}
    yield "ociVersion trailing newline", {**MINIMAL, "ociVersion": "1.0.0\n"}
    yield "prerelease ociVersion", {**MINIMAL, "ociVersion": "1.0.2-dev"}
    yield "build ociVersion", {**MINIMAL, "ociVersion": "1.3.0+ociruntime.1"}
    yield "unknown ns", _apply(FULL, ("linux", "namespaces", 0, "type"), "pidx")
    yield "bad seccomp action", _apply(FULL, ("linux", "seccomp", "defaultAction"), "SCMP_ACT_ALLOWX")
    yield "bad seccomp arch", _apply(FULL, ("linux", "seccomp", "architectures", 0), "SCMP_ARCH_Z80")
    yield "bad seccomp op", _apply(FULL, ("linux", "seccomp", "syscalls", 2, "args", 0, "op"), "SCMP_CMP_XX")
    yield "empty syscall names", _apply(FULL, ("linux", "seccomp", "syscalls", 0, "names"), [])
    yield "uid 2^32", _apply(FULL, ("process", "user", "uid"), 2**32)
    yield "hook timeout 0", _apply(FULL, ("hooks", "poststart", 0, "timeout"), 0)
    yield "device p w/o numbers", _apply(FULL, ("linux", "devices", 2), {"path": "/dev/p", "type": "p"})
    yield "device c w/o numbers", _apply(FULL, ("linux", "devices", 2), {"path": "/dev/c", "type": "c"})
    yield "memBwSchema newline", _apply(FULL, ("linux", "intelRdt", "memBwSchema"), "MB:0=20\n")
    yield "memBwSchema prefix", _apply(FULL, ("linux", "intelRdt", "memBwSchema"), "L3:0=20")
    yield "mount uid without gid", _apply(FULL, ("mounts", 2), {"destination": "/x", "uidMappings": []})
    yield "listenerMetadata alone", _apply(FULL, ("linux", "seccomp"),
                                          {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"})
    yield "annotation empty key", _apply(FULL, ("annotations",), {"": "v"})
    yield "pageSize", _apply(FULL, ("linux", "resources", "hugepageLimits", 0, "pageSize"), "2M")
    yield "access", _apply(FULL, ("linux", "resources", "devices", 0, "access"), "rwx")
    yield "weightDevice no weight", _apply(FULL, ("linux", "resources", "blockIO", "weightDevice", 1),
                                           {"major": 8, "minor": 16})
    yield "rdma empty", _apply(FULL, ("linux", "resources", "rdma", "mlx4_0"), {})
    yield "timeOffsets unknown clock", _apply(FULL, ("linux", "timeOffsets", "realtime"), {"secs": 1})
    yield "rootfsPropagation rslave", _apply(FULL, ("linux", "rootfsPropagation"), "rslave")
    yield "rootfsPropagation bad", _apply(FULL, ("linux", "rootfsPropagation"), "sharedx")
    yield "cpu list", _apply(FULL, ("process", "execCPUAffinity", "final"), "0-3,,7")
    yield "personality domain", _apply(FULL, ("linux", "personality", "domain"), "LINUX64")
    yield "scheduler policy", _apply(FULL, ("process", "scheduler", "policy"), "SCHED_NOPE")
    yield "ioPriority class", _apply(FULL, ("process", "ioPriority", "class"), "IOPRIO_CLASS_NONE")
    yield "memoryPolicy mode", _apply(FULL, ("linux", "memoryPolicy", "mode"), "MPOL_NONE")


def state_corpus():
    for i, d in enumerate(STATES):
        yield f"state{i}: valid", d
        for label, m in mutations(d):
            yield f"state{i}: {label}", m
    yield "state: paused", {**STATES[0], "status": "paused"}
    yield "state: created without pid", {k: v for k, v in STATES[0].items() if k != "pid"}
    yield "state: running pid 0", {**STATES[1], "pid": 0}
    yield "state: relative bundle", {**STATES[0], "bundle": "containers/redis"}
    yield "state: extra property", {**STATES[0], "x-extra": 1}


def features_corpus():
    yield "features: valid", FEATURES
    yield "features: minimal", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0"}
    yield "features: nulls", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": None,
                              "mountOptions": None, "linux": {"namespaces": None, "cgroup": None,
                                                              "seccomp": {"enabled": None, "actions": None}},
                              "annotations": None, "potentiallyUnsafeConfigAnnotations": None}
    for label, m in mutations(FEATURES):
        yield f"features: {label}", m
    yield "features: unknown top-level", {**FEATURES, "extra": True}
    yield "features: unknown hook", _apply(FEATURES, ("hooks", 0), "prestartx")


def process_corpus(runc_default):
    for name, p in (("full", FULL["process"]), ("runc", runc_default["process"])):
        yield f"process {name}: valid", p
        for label, m in mutations(p):
            yield f"process {name}: {label}", m


# ------------------------------------------------------------------------------------------------ helpers

def _ours_builtin(name, doc, fragment=""):
    return schema.first_error(name, doc, fragment) is None


def _ours_jsonschema(name, doc, fragment=""):
    return schema.reference_validator(name, fragment).is_valid(doc)


_official_validators = {}


def official(uri_path):
    """A Draft4Validator over the official v1.3.0 schema files, from a local registry."""
    v = _official_validators.get(uri_path)
    if v is None:
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4
        base = "https://official.invalid/v1.3.0/"
        resources = []
        for f in OFFICIAL.iterdir():
            if f.suffix == ".json":
                resources.append((base + f.name, Resource(contents=json.loads(f.read_text()),
                                                           specification=DRAFT4)))
        v = jsonschema.Draft4Validator({"$ref": base + uri_path}, registry=Registry().with_resources(resources))
        _official_validators[uri_path] = v
    return v


needs_official = pytest.mark.skipif(not OFFICIAL.is_dir(),
                                    reason=f"official schemas not present at {OFFICIAL}")


# ----------------------------------------------------------------------------------------------- (a) fast == jsonschema

def test_schema_files_are_valid_draft4():
    for name in schema.SCHEMA_FILES:
        doc = schema.schema_document(name)
        assert doc["$schema"] == "http://json-schema.org/draft-04/schema#"
        jsonschema.Draft4Validator.check_schema(doc)


def test_schema_files_are_our_own():
    """Our schema files must not be copies of the official ones (which are reference data for tests only)."""
    if not OFFICIAL.is_dir():
        pytest.skip("official schemas not present")
    official_docs = [json.loads(f.read_text()) for f in OFFICIAL.glob("*.json")]
    official_texts = [f.read_bytes() for f in OFFICIAL.glob("*.json")]
    for f in (REPO / "schemas").glob("*.json"):
        assert f.read_bytes() not in official_texts
        assert json.loads(f.read_text()) not in official_docs
        assert "defs.json" not in f.read_text()


@pytest.mark.parametrize("corpus", ["config", "state", "features"])
def test_builtin_matches_jsonschema(corpus, runc_default, runc_rootless):
    cases = {
        "config": lambda: config_corpus((("runc", runc_default), ("runc-rootless", runc_rootless))),
        "state": state_corpus,
        "features": features_corpus,
    }[corpus]()
    n = 0
    mismatches = []
    for label, doc in cases:
        n += 1
        a, b = _ours_builtin(corpus, doc), _ours_jsonschema(corpus, doc)
        if a != b:
            mismatches.append((label, a, b))
    assert not mismatches, mismatches[:20]
    assert n > 100


def test_builtin_matches_jsonschema_process(runc_default):
    mismatches = []
    for label, doc in process_corpus(runc_default):
        a = _ours_builtin("config", doc, "/definitions/Process")
        b = _ours_jsonschema("config", doc, "/definitions/Process")
        if a != b:
            mismatches.append((label, a, b))
    assert not mismatches, mismatches[:20]


def test_valid_corpus_is_valid(runc_default, runc_rootless):
    for doc in (MINIMAL, FULL, runc_default, runc_rootless):
        schema.validate_config(doc)
    for doc in STATES:
        schema.validate_state(doc)
    schema.validate_features(FEATURES)
    schema.validate_process(FULL["process"])
    schema.validate_process(runc_default["process"])


def test_semantic_checks_never_crash_on_schema_valid_documents(tmp_path, runc_default, runc_rootless):
    """The pipeline invariant: on any document the schema accepts, validate raises ConfigError or nothing."""
    from ociruntime import validate
    (tmp_path / "rootfs").mkdir()
    n = 0
    for label, doc in config_corpus((("runc", runc_default), ("runc-rootless", runc_rootless))):
        if not isinstance(doc, dict) or not _ours_builtin("config", doc):
            continue
        n += 1
        for for_create in (False, True):
            try:
                validate.check_config(doc, str(tmp_path), for_create=for_create)
            except ConfigError as e:
                assert "\n" not in str(e), label
    for label, doc in process_corpus(runc_default):
        if _ours_builtin("config", doc, "/definitions/Process"):
            try:
                validate.check_process(doc)
            except ConfigError as e:
                assert "\n" not in str(e), label
    assert n > 500


# Synthetic schemas for keywords our own schemas do not (yet) use, to keep the built-in validator honest.
KEYWORD_CASES = [
    ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 3, 1.5, "x", 2]),
    ({"uniqueItems": True}, [[1, 2], [1, 1], [1, True], [1, 1.0], [{"a": 1}, {"a": 1}], [[1], [True]], "x"]),
    ({"items": [{"type": "string"}, {"type": "integer"}], "additionalItems": False},
     [["a", 1], ["a", 1, 2], [1], [], "x"]),
    ({"items": [{"type": "string"}], "additionalItems": {"type": "integer"}}, [["a", 1, 2], ["a", "b"]]),
    ({"minimum": 0, "exclusiveMinimum": True, "maximum": 10, "exclusiveMaximum": True},
     [0, 0.5, 10, 9.99, -1, "x", True]),
    ({"maxItems": 1, "minItems": 1}, [[], [1], [1, 2], {}]),
    ({"maxLength": 2, "minLength": 2}, ["", "ab", "abc", "é€", 3]),
    ({"enum": [1, "a", None, [1], {"a": 1}]}, [1, 1.0, True, "a", None, [1], [True], {"a": 1}, {"a": True}, 2]),
    ({"enum": [True]}, [True, 1, 1.0, False]),
    ({"type": ["integer", "null"]}, [1, None, 1.0, True, "x"]),
    ({"type": "number"}, [1, 1.5, True, "1"]),
    ({"not": {"type": "string"}}, ["x", 1]),
    ({"dependencies": {"a": {"required": ["b"]}}}, [{"a": 1}, {"a": 1, "b": 2}, {"b": 1}, 3]),
    ({"patternProperties": {"^x": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
     [{"x1": 1, "y": "s"}, {"x1": "s"}, {"y": 1}, {}]),
    ({"properties": {"a": {"type": "integer"}}, "additionalProperties": False}, [{"a": 1}, {"b": 1}, {}, []]),
    ({"allOf": [{"minimum": 1}, {"maximum": 3}]}, [0, 2, 4]),
    ({"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, [{"a": 1}, {"c": 1}, "x"]),
    ({"definitions": {"n": {"type": "object", "properties": {"next": {"$ref": "#/definitions/n"}}}},
      "$ref": "#/definitions/n"},
     [{"next": {"next": {}}}, {"next": {"next": 1}}]),
]


@pytest.mark.parametrize("sch,instances", KEYWORD_CASES)
def test_builtin_keywords_match_jsonschema(sch, instances):
    check = schema._Compiler(sch).compile(sch)
    ref = jsonschema.Draft4Validator(sch)
    for x in instances:
        assert (check(x) is None) == ref.is_valid(x), (sch, x)


def test_unsupported_keyword_is_refused():
    s = {"format": "uri"}
    with pytest.raises(ValueError, match="format"):
        schema._Compiler(s).compile(s)


def test_unsupported_keyword_in_a_property_is_refused_when_reached():
    """A property's schema is compiled lazily (when a document has that property)."""
    s = {"properties": {"a": {"format": "uri"}}}
    check = schema._Compiler(s).compile(s)
    assert check({"b": 1}) is None
    with pytest.raises(ValueError, match="format"):
        check({"a": "x"})


def _subschemas(node):
    """Every schema object inside a schema (draft-04 keywords whose values are schemas)."""
    yield node
    for kw in ("properties", "patternProperties", "definitions"):
        for sub in (node.get(kw) or {}).values():
            yield from _subschemas(sub)
    for kw in ("items", "additionalItems", "additionalProperties", "not"):
        v = node.get(kw)
        for sub in (v if isinstance(v, list) else [v]):
            if isinstance(sub, dict):
                yield from _subschemas(sub)
    for kw in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(kw) or ():
            yield from _subschemas(sub)
    for v in (node.get("dependencies") or {}).values():
        if isinstance(v, dict):
            yield from _subschemas(v)


@pytest.mark.parametrize("name", sorted(schema.SCHEMA_FILES))
def test_every_subschema_of_our_schemas_compiles(name):
    """Lazy compilation must not hide an unsupported keyword anywhere in the shipped schemas."""
    doc = schema._schema(name)
    c = schema._Compiler(doc)
    n = 0
    for sub in _subschemas(doc):
        c.compile(sub)
        n += 1
    assert n > 10


# ------------------------------------------------------------------------------------------------ error reporting

@pytest.mark.parametrize("path,value,pointer,fragment", [
    (("process", "user", "uid"), 2**32, "/process/user/uid", "maximum"),
    (("process", "user", "gid"), -1, "/process/user/gid", "minimum"),
    (("linux", "namespaces", 3, "type"), "utsx", "/linux/namespaces/3/type", "is not one of"),
    (("ociVersion",), 1, "/ociVersion", "is not of type 'string'"),
    (("process", "args"), [], "/process/args", ""),
    (("linux", "seccomp", "syscalls", 2, "args", 0, "op"), "EQ", "/linux/seccomp/syscalls/2/args/0/op", "one of"),
    (("mounts", 1, "destination"), 5, "/mounts/1/destination", "string"),
    (("hooks", "poststart", 0, "timeout"), 0, "/hooks/poststart/0/timeout", "minimum"),
])
def test_validate_config_reports_pointer(path, value, pointer, fragment):
    doc = _apply(FULL, path, value)
    with pytest.raises(ConfigError) as ei:
        schema.validate_config(doc)
    e = ei.value
    assert e.pointer == pointer
    assert fragment in e.reason
    assert str(e).startswith(f"config.json: {pointer}: ")
    assert "\n" not in str(e)


def test_missing_required_reports_parent_pointer():
    doc = copy.deepcopy(FULL)
    del doc["process"]["cwd"]
    with pytest.raises(ConfigError) as ei:
        schema.validate_config(doc)
    assert ei.value.pointer == "/process"
    assert "'cwd' is a required property" in ei.value.reason
    doc = copy.deepcopy(MINIMAL)
    del doc["root"]
    with pytest.raises(ConfigError) as ei:
        schema.validate_config(doc)
    assert ei.value.pointer == ""
    assert str(ei.value) == "config.json: /: 'root' is a required property"


def test_pointer_escaping():
    doc = _apply(FULL, ("linux", "sysctl"), {"net/ipv4~x": 1})
    with pytest.raises(ConfigError) as ei:
        schema.validate_config(doc)
    assert ei.value.pointer == "/linux/sysctl/net~1ipv4~0x"


def test_other_sources():
    with pytest.raises(ConfigError) as ei:
        schema.validate_process({"cwd": 1})
    assert str(ei.value).startswith("process.json: /cwd: ")
    with pytest.raises(ConfigError) as ei:
        schema.validate_state({**STATES[0], "pid": -1})
    assert str(ei.value).startswith("state.json: /pid: ")
    with pytest.raises(ConfigError) as ei:
        schema.validate_features({"ociVersionMin": "1.0.0"})
    assert str(ei.value) == "features.json: /: 'ociVersionMax' is a required property"


def test_long_message_is_one_short_line():
    doc = _apply(FULL, ("linux", "resources", "rdma", "x" * 5000), {"a\nb": 1})
    with pytest.raises(ConfigError) as ei:
        schema.validate_config(doc)
    assert "\n" not in str(ei.value)
    assert len(ei.value.reason) <= 300


def test_fallback_without_jsonschema(monkeypatch):
    def no_jsonschema(*a, **k):
        raise ImportError("no jsonschema")
    monkeypatch.setattr(schema, "reference_validator", no_jsonschema)
    doc = _apply(FULL, ("process", "user", "uid"), 2**32)
    with pytest.raises(ConfigError) as ei:
        schema.validate_config(doc)
    assert ei.value.pointer == "/process/user/uid"
    assert ei.value.reason == "4294967296 is greater than the maximum of 4294967295"


def test_builtin_pointer_matches_for_simple_errors():
    for path, value in ((("process", "user", "uid"), "0"), (("linux", "devices", 0, "major"), 1.5),
                        (("mounts", 2, "uidMappings", 0, "size"), 2**32)):
        doc = _apply(FULL, path, value)
        ptr, msg = schema.first_error("config", doc)
        assert ptr == "/" + "/".join(map(str, path))


# ------------------------------------------------------------------------------------------------ (b) ours vs official

# Where our schemas deliberately disagree with the official v1.3.0 schemas: (corpus, regex on the mutation label
# without its "document: " prefix, our verdict, justification from the spec text). Every disagreement found on the
# corpus must match an entry; the test also fails if an entry never matches (it would be stale).
_INT64_OVER = r"(9223372036854775808|18446744073709551616|-9223372036854775809)"
DELIBERATE = [
    # --- config.json: we are stricter, as the spec text says
    ("config", r"^(del root|set root/path='')$", False,
     "config.md: root is REQUIRED except on Windows, and path names a directory that MUST exist"),
    ("config", r"^(set ociVersion='x?'|bad ociVersion|ociVersion trailing newline)$", False,
     "config.md: ociVersion MUST be in SemVer v2.0.0 format"),
    ("config", r"^(del process/user/(uid|gid)|set process/user=\{.*\})$", False,
     "config.md POSIX user: uid and gid are REQUIRED"),
    ("config", r"^(set process/args=\[\]|del process/args/0)$", False,
     "config.md: at least one entry of args is REQUIRED (non-Windows)"),
    ("config", r"^set mounts/\d+/destination=''$", False, "an empty mount destination is no path"),
    ("config", r"^(del mounts/\d+/(uid|gid)Mappings|mount uid without gid)$", False,
     "config.md: uidMappings MUST be specified along with gidMappings, and vice versa"),
    ("config", r"^(del linux/devices/\d+/(major|minor)|device c w/o numbers)$", False,
     "config-linux.md: major and minor are REQUIRED unless type is p"),
    ("config", r"^(del linux/seccomp/listenerPath|listenerMetadata alone)$", False,
     "config-linux.md: listenerMetadata MUST NOT be set if listenerPath is not set"),
    ("config", r"^set hooks/\w+/\d+/timeout=" + _INT64_OVER + "$", False, "hook timeout is an int (int64)"),
    ("config", r"^set process/oomScoreAdj=" + _INT64_OVER + "$", False, "oomScoreAdj is an int (int64)"),
    ("config", r"^(set annotations=\{'': 'x'\}|annotation empty key)$", False,
     "config.md: annotation keys MUST NOT be an empty string"),
    ("config", r"^(del linux/resources/blockIO/weightDevice/\d+/weight|weightDevice no weight)$", False,
     "config-linux.md: at least one of weight or leafWeight MUST be given"),
    ("config", r"^del linux/resources/blockIO/throttle\w+/\d+/rate$", False, "config-linux.md: rate is REQUIRED"),
    ("config", r"^(del linux/resources/rdma/mlx4_0/hcaObjects|set linux/resources/rdma/\w+=\{.*\}|rdma empty)$",
     False, "config-linux.md: at least one of hcaHandles or hcaObjects MUST be given"),
    ("config", r"^(set linux/timeOffsets=\{'': 'x'\}|timeOffsets unknown clock)$", False,
     "time_namespaces(7) offsets exist only for the monotonic and boottime clocks"),
    ("config", r"^(del linux/memoryPolicy/mode|set linux/memoryPolicy=\{.*\})$", False,
     "config-linux.md: memoryPolicy.mode is REQUIRED"),
    ("config", r"^(del linux/personality/domain|set linux/personality=\{.*\})$", False,
     "config-linux.md: personality.domain is REQUIRED"),
    ("config", r"^(set linux/resources/devices/\d+/access='x'|access)$", False,
     "config-linux.md: access is a composition of r, w and m"),
    ("config", r"^set linux/resources/devices/\d+/type='x?'$", False,
     "config-linux.md: the cgroup device type is a, c or b"),
    ("config", r"^(del process/ioPriority/priority|set process/ioPriority/priority=(-1|65536))$", False,
     "config.md: ioPriority.priority is REQUIRED and ranges from 0 to 7"),
    ("config", r"^memBwSchema newline$", False,
     "config-linux.md: memBwSchema MUST NOT contain newlines (the official ^MB:[^\\n]*$ misses a final newline "
     "because Python's $ matches before it)"),
    ("config", r"^cpu list$", False, "config.md: execCPUAffinity is a comma-separated list with dash ranges"),
    # --- config.json: we are more lenient
    ("config", r"^(set|del) (vm|windows|solaris|zos|freebsd)[/=]", True,
     "a Linux runtime does not validate the bodies of other platforms' sections (only that they are objects)"),
    ("config", r"^rootfsPropagation rslave$", True,
     "runc accepts the recursive r* propagation values, and containerd's CRI plugin sends rslave/rshared"),
    ("config", r"^set linux/devices/\d+/fileMode=(65536|2147483648)$", True, "config-linux.md: fileMode is uint32"),
    ("config", r"^(del linux/resources/pids/limit|set linux/resources/pids=\{.*\})$", True,
     "config-linux.md v1.3: pids.limit is OPTIONAL"),
    # --- state
    ("state", r"^set ociVersion='x?'$", False, "the state's ociVersion is a SemVer version"),
    ("state", r"^set (id|status)=''$", False, "id and status are non-empty strings"),
    ("state", r"^(del pid|created without pid|running pid 0)$", False,
     "runtime.md: pid is REQUIRED when status is created or running (Linux)"),
    ("state", r"^set pid=(2147483648|4294967296|9223372036854775808|18446744073709551616)$", False,
     "a Linux pid is a pid_t (int32)"),
    ("state", r"^(set bundle='x?'|relative bundle)$", False,
     "runtime.md: bundle is the absolute path to the bundle directory"),
    ("state", r"^set annotations=\{'': 'x'\}$", False, "config.md: annotation keys MUST NOT be empty"),
    ("state", r"^(set status='x'|paused)$", True,
     "runtime.md: a runtime MAY define additional status values (runc reports paused)"),
    # --- features
    ("features", r"^set ociVersionM(in|ax)='x?'$", False, "features.md: ociVersionMin/Max are spec versions"),
    ("features", r"^(set hooks(/\d+)?=(''|'x'|\['x'\])|unknown hook)$", False,
     "features.md: hooks are names of config.md hooks"),
    ("features", r"=\{'': 'x'\}$|^unknown top-level$", False,
     "features.md: the structure MUST NOT contain properties not defined in this spec version"),
    ("features", r"^set linux/memoryPolicy", False,
     "features-linux.md v1.3 defines memoryPolicy (the official features schema lacks it)"),
    ("features", r"^set linux/intelRdt/(schemata|monitoring)=", False,
     "features-linux.md v1.3 defines intelRdt.schemata and .monitoring as bool (the official schema lacks them)"),
    ("features", r"(=None|^nulls)$", True,
     "features.md: every property except ociVersionMin/Max MAY be absent or null"),
]


def _classify(corpus, label, ours, used):
    short = label.split(": ", 1)[1] if ": " in label else label
    for i, (name, rx, verdict, why) in enumerate(DELIBERATE):
        if name == corpus and verdict == ours and re.search(rx, short):
            used.add(i)
            return why
    return None


def _disagreements(corpus, cases, our, their, used):
    unexplained = []
    for label, doc in cases:
        a, b = our(doc), their(doc)
        if a != b and _classify(corpus, label, a, used) is None:
            unexplained.append((label, "ours valid, official invalid" if a else "ours invalid, official valid"))
    return unexplained


_used_rules = set()
_ran_corpora = set()


@needs_official
def test_official_agrees_on_config_corpus(runc_default, runc_rootless):
    off = official("config-schema.json")
    cases = config_corpus((("runc", runc_default), ("runc-rootless", runc_rootless)))
    unexplained = _disagreements("config", cases, lambda d: _ours_builtin("config", d), off.is_valid,
                                 _used_rules)
    assert not unexplained, unexplained[:40]
    _ran_corpora.add("config")


@needs_official
def test_official_agrees_on_valid_configs(runc_default, runc_rootless):
    off = official("config-schema.json")
    for doc in (MINIMAL, FULL, runc_default, runc_rootless):
        assert off.is_valid(doc)
        assert _ours_builtin("config", doc)


@needs_official
def test_official_agrees_on_state_corpus():
    off = official("state-schema.json")
    unexplained = _disagreements("state", state_corpus(), lambda d: _ours_builtin("state", d), off.is_valid,
                                 _used_rules)
    assert not unexplained, unexplained[:40]
    _ran_corpora.add("state")


@needs_official
def test_official_agrees_on_features_corpus():
    off = official("features-schema.json")
    unexplained = _disagreements("features", features_corpus(), lambda d: _ours_builtin("features", d),
                                 off.is_valid, _used_rules)
    assert not unexplained, unexplained[:40]
    _ran_corpora.add("features")


@needs_official
def test_every_deliberate_disagreement_is_exercised():
    """Runs after the corpus tests (file order). A rule that explains nothing is stale and must go."""
    if not _ran_corpora:
        pytest.skip("the corpus comparisons did not run in this session")
    stale = [rx for i, (corpus, rx, _, _) in enumerate(DELIBERATE) if corpus in _ran_corpora and i not in _used_rules]
    assert not stale


# ------------------------------------------------------------------------------------------------ (d) import hygiene

def _python(code):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(REPO))


def test_import_does_not_load_jsonschema():
    r = _python("import ociruntime.schema, ociruntime.validate, ociruntime.config; import sys; "
                "assert 'jsonschema' not in sys.modules, 'jsonschema imported'")
    assert r.returncode == 0, r.stderr


def test_import_schema_does_not_read_schema_files():
    r = _python("import ociruntime.schema as s, sys; assert not s._docs and not s._compiled; "
                "assert 'json' not in sys.modules, 'json imported at import time'")
    assert r.returncode == 0, r.stderr


def test_valid_config_validates_without_jsonschema(tmp_path, runc_default):
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(runc_default))
    full = tmp_path / "full"
    (full / "rootfs").mkdir(parents=True)
    (full / "config.json").write_text(json.dumps(FULL))
    code = f"""
import sys
from ociruntime import config, schema, validate
for b in ({str(bundle)!r}, {str(full)!r}):
    doc = config.load(b + '/config.json')
    schema.validate_config(doc)
    validate.check_config(doc, b, for_create=True)
schema.validate_process(doc['process'])
schema.validate_state({{'ociVersion': '1.3.0', 'id': 'x', 'status': 'created', 'pid': 1, 'bundle': '/b'}})
assert 'jsonschema' not in sys.modules, 'jsonschema imported'
"""
    r = _python(code)
    assert r.returncode == 0, r.stderr


def test_invalid_config_uses_jsonschema_for_the_explanation():
    r = _python("import sys\nfrom ociruntime import schema\nfrom ociruntime.errors import ConfigError\n"
                "try:\n    schema.validate_config({'ociVersion': '1.0.0', 'root': {'path': 1}})\n"
                "except ConfigError as e:\n    print(e)\nprint('jsonschema' in sys.modules)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["config.json: /root/path: 1 is not of type 'string'", "True"]


def test_schemas_found_relative_to_the_package():
    """The package's own ociruntime/schemas (an installed package), else the source tree's schemas/;
    never a prefix-dependent place."""
    pkg = os.path.dirname(os.path.abspath(schema.__file__))
    assert schema.SCHEMA_DIRS == (os.path.join(pkg, "schemas"), os.path.join(os.path.dirname(pkg), "schemas"))
    for name, f in schema.SCHEMA_FILES.items():
        assert any(os.path.isfile(os.path.join(d, f)) for d in schema.SCHEMA_DIRS), f
        assert isinstance(schema.schema_document(name), dict)


@pytest.mark.parametrize("value", ["0-", "1,,2", " 1", "0-3,x"])
def test_cpu_list_errors_say_what_is_expected(value):
    """A CPU list that does not parse: the error names the expected form, not the regex (both the
    built-in validator and the jsonschema explanation)."""
    doc = {"cwd": "/", "args": ["x"], "execCPUAffinity": {"final": value}}
    ptr, msg = schema.first_error("config", doc, "/definitions/Process")
    assert ptr == "/execCPUAffinity/final" and 'is not a list of numbers and ranges such as "0-3,7"' in msg
    with pytest.raises(ConfigError) as ei:
        schema.validate_process(doc)
    assert ei.value.pointer == "/execCPUAffinity/final"
    assert 'is not a list of numbers and ranges such as "0-3,7"' in ei.value.reason
