"""`ociruntime features` is truthful: valid against the official v1.3.0 features schema and against ours,
and every claim it makes is proven here against the real CLI (root).

Data-driven: ``PROVERS`` maps each claim (a path in the features document) to a proof; ``test_every_claim_
has_a_proof`` fails for a claim nobody proves, so a field another change adds (netDevices, memoryPolicy,
mountExtensions.idmap, ...) must come with a row here. The generic ``enabled`` proof: true means a config
using the feature is never refused as "not supported by this runtime" (it runs, or is refused because this
host lacks something, saying so); false means such a config is refused with the field's pointer.
"""
import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from ociruntime import plan, seccomp
from _util import RUNTIME, env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(180)]

OFFICIAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "oci-schemas" / "v1.3.0"
NOT_OURS = "not supported by this runtime"
HOST_LACKS = ("not enabled on this host", "not available on this host", "no such controller",
              "does not support", "not running on this host", "could not join or create cgroup",
              "this host has no", "this kernel has no")


@pytest.fixture(scope="module")
def features():
    r = subprocess.run([RUNTIME, "features"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stderr, r
    return json.loads(r.stdout)


# ------------------------------------------------------------------------------------------ schemas

@pytest.mark.skipif(not OFFICIAL.is_dir(), reason=f"official schemas not present at {OFFICIAL}")
def test_valid_against_the_official_schema(features):
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4
    base = "https://official.invalid/v1.3.0/"
    reg = Registry().with_resources(
        (base + f.name, Resource(contents=json.loads(f.read_text()), specification=DRAFT4))
        for f in OFFICIAL.iterdir() if f.suffix == ".json")
    v = jsonschema.Draft4Validator({"$ref": base + "features-schema.json"}, registry=reg)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(features)]
    assert not errors


def test_valid_against_our_schema(features):
    from ociruntime import schema
    schema.validate_features(features)                 # the built-in validator
    jsonschema = pytest.importorskip("jsonschema")      # and jsonschema over schemas/features.json
    assert schema.reference_validator("features", "").is_valid(features)


# ------------------------------------------------------------------------------------------ proofs

def _create(env, mutate, args=("true",), extra=(), rt_env=None):
    """create with the mutated config; returns (ok, one-line error or ''); deletes what it made."""
    b = env.bundle(args=args, mutate=mutate)
    cid = env.new_id()
    r = env.rt("create", "--bundle", b.path, *extra, cid, env=rt_env)
    if r.ok:
        pid = env.rt.init_pid(cid)
        env.rt("delete", "--force", cid).check()
        return True, "", pid
    assert "Traceback" not in r.stderr, r
    return False, r.error_msg(), None


def _accepted(env, mutate, what, **kw):
    ok, msg, _ = _create(env, mutate, **kw)
    assert ok, f"{what}: create refused it: {msg}"


def _implemented(env, mutate, pointer, what):
    """Claimed: either it works, or the refusal is about this host, never 'not supported by this runtime'.
    pointer None: the refusal is runc's own wording, which names no field."""
    ok, msg, _ = _create(env, mutate)
    if not ok:
        assert NOT_OURS not in msg, f"{what} is claimed but refused as unsupported: {msg}"
        assert (pointer is None or pointer in msg) and any(h in msg for h in HOST_LACKS), \
            f"{what}: unexpected refusal: {msg}"


def _refused(env, mutate, pointer, what):
    ok, msg, _ = _create(env, mutate)
    assert not ok, f"{what} is not claimed, but create accepted it"
    assert pointer in msg, msg


def _set(path, value):
    def mut(s):
        node = s
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return mut


def _seccomp(profile):
    return _set(("linux", "seccomp"), profile)


class Listener:
    """A seccomp agent that accepts the notify fd at listenerPath (and closes it: the syscall then fails)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.got = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                msg, fds, _, _ = socket.recv_fds(c, 65536, 4)
                self.got.append(msg)
                for fd in fds:
                    os.close(fd)

    def close(self):
        self.sock.close()


def prove_seccomp_enabled(env, claim):
    if claim:
        _accepted(env, _seccomp({"defaultAction": "SCMP_ACT_ALLOW"}), "seccomp")


def prove_seccomp_actions(env, actions):
    for a in actions:
        rule = {"names": ["getppid"], "action": a}
        prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}
        if a == "SCMP_ACT_NOTIFY":
            path = os.path.join(env.tmp, "agent.sock")
            lis = Listener(path)
            prof["listenerPath"] = path
            try:
                _accepted(env, _seccomp(prof), a)
            finally:
                lis.close()
            assert lis.got, "SCMP_ACT_NOTIFY: nothing reached listenerPath"
        else:
            _accepted(env, _seccomp(prof), a)


def prove_seccomp_operators(env, ops):
    args = [{"index": 0, "value": 3 + i, "valueTwo": 3 + i if op == "SCMP_CMP_MASKED_EQ" else 0, "op": op}
            for i, op in enumerate(ops)]
    rules = [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [a]} for a in args]
    _accepted(env, _seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}), "operators")


BIG_ENDIAN = {"SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
              "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_M68K",
              "SCMP_ARCH_SHEB"}


def prove_seccomp_archs(env, archs):
    """Recognized (features.md: "the recognized names"): each is accepted by create, except that libseccomp
    (as under runc) cannot put an arch of the other byte order into this host's filter (EDOM)."""
    import sys
    other_order = BIG_ENDIAN if sys.byteorder == "little" else set(archs) - BIG_ENDIAN
    for a in archs:
        ok, msg, _ = _create(env, _seccomp({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [a],
                                            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO"}]}))
        if a in other_order:
            assert ok or "Numerical argument out of domain" in msg, f"{a}: {msg}"
        else:
            assert ok, f"{a}: create refused it: {msg}"


def prove_seccomp_known_flags(env, flags):
    assert set(flags) <= set(seccomp.FLAGS), "a known flag the compiler does not map"


def prove_seccomp_supported_flags(env, flags):
    for f in flags:
        _accepted(env, _seccomp({"defaultAction": "SCMP_ACT_ALLOW", "flags": [f]}), f)


def prove_namespaces(env, names):
    specs = [{"type": n} for n in names]
    mut = _set(("linux", "namespaces"), specs)

    def mutate(s):
        mut(s)
        if "user" in names:
            s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            s["mounts"] = [m for m in s["mounts"] if m["type"] not in ("cgroup", "sysfs")]
            s["linux"].pop("resources", None)
    b = env.bundle(args=("sleep", "30"), mutate=mutate)
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    kernel = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
              "cgroup": "cgroup", "time": "time"}
    for n in names:
        mine = os.readlink(f"/proc/self/ns/{kernel[n]}")
        theirs = os.readlink(f"/proc/{pid}/ns/{kernel[n]}")
        assert mine != theirs, f"namespace {n} listed but not created"
    env.rt("delete", "--force", cid).check()


def prove_capabilities(env, caps):
    assert caps == list(plan.CAPS)
    # every capability this (test) process may hand on: the host's bounding set can lack some
    bnd = int([ln for ln in open("/proc/self/status") if ln.startswith("CapBnd:")][0].split()[1], 16)
    known = [c for c in caps if bnd >> plan.CAP_BITS[c] & 1]
    _accepted(env, _set(("process", "capabilities"), {k: known for k in ("bounding", "effective", "permitted")}),
              "capabilities")


def prove_mount_options(env, options):
    for o in options:
        flags, clear, prop, aset, aclr, data, ext = plan.parse_mount_options([o])
        assert data == [], f"mount option {o!r} listed but passed to the filesystem as data"
        assert o == "defaults" or flags or clear or prop or aset or aclr or ext, f"{o!r} has no effect"
    # and a mount using a sample of them is created
    _accepted(env, lambda s: s["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                                                 "options": ["nosuid", "nodev", "noexec", "rprivate", "rro",
                                                             "strictatime", "tmpcopyup"]}), "mount options")


def prove_hooks(env, hooks):
    assert set(hooks) == {"prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                          "poststop"}, hooks   # each is run by tests/conformance/test_hooks.py; here: accepted
    h = {"path": "/bin/sh", "args": ["sh", "-c", "cat >/dev/null"]}
    _accepted(env, _set(("hooks",), {k: [h] for k in hooks}), "hooks")


def _cgroup_mounts():
    with open("/proc/self/mountinfo") as f:
        return [line.split(" - ")[1].split()[0] for line in f if " - " in line]


def prove_cgroup_v1(env, claim):
    if not claim:
        return
    if "cgroup" not in _cgroup_mounts():
        pytest.skip("cgroup v1 claim: this host has no v1 hierarchy (tests/vm is pure v2)")
    b = env.bundle(mutate=_set(("linux", "resources"), {"pids": {"limit": 42}}))
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    rel = [ln.split(":", 2)[2] for ln in open(f"/proc/{pid}/cgroup").read().splitlines() if ":pids:" in ln][0]
    assert open(f"/sys/fs/cgroup/pids{rel}/pids.max").read().strip() == "42"
    env.rt("delete", "--force", cid).check()


def prove_cgroup_v2(env, claim):
    if not claim:
        return
    if "cgroup2" not in _cgroup_mounts():
        pytest.skip("cgroup v2 claim: no cgroup2 mount on this host")
    b = env.bundle()
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    rel = [ln[3:] for ln in open(f"/proc/{pid}/cgroup").read().splitlines() if ln.startswith("0::")][0]
    assert rel.rstrip("/").endswith(cid), "not placed in its own v2 (unified) cgroup"
    env.rt("delete", "--force", cid).check()


def prove_systemd(env, claim):
    """The driver itself is proven against a real systemd in tests/systemd (a qemu guest whose PID 1 is
    systemd, v2 and v1); here, on a host without systemd, it must refuse clearly and leave nothing."""
    assert claim, "the systemd cgroup driver is implemented (tests/systemd): features must say so"
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs on this host: the refusal of --systemd-cgroup is for hosts without it")
    b = env.bundle(args=("true",))
    r = env.rt("--systemd-cgroup", "create", "--bundle", b.path, env.new_id())
    assert not r.ok and "systemd is not running on this host" in r.error_msg(), r


def prove_rdma(env, claim):
    if claim:   # this host has no rdma controller: runc's "cannot set rdma limit: ... could not join or create"
        _implemented(env, _set(("linux", "resources"), {"rdma": {"mlx5_1": {"hcaHandles": 3}}}), None, "rdma")


def prove_enabled(mutate, pointer, what):
    def prove(env, claim):
        (_implemented if claim else _refused)(env, mutate, pointer, what)
    return prove


def prove_net_devices(env, claim):
    """A veth made in a network namespace this test holds (the runtime runs there: the host network is never
    touched) is moved into the container under a new name."""
    mutate = _set(("linux", "netDevices"), {"ocitnd0": {"name": "ctr0"}})
    if not claim:
        return _refused(env, mutate, "/linux/netDevices", "netDevices")
    from _util import wait_for
    holder = subprocess.Popen(["unshare", "--net", "sleep", "600"], stdin=subprocess.DEVNULL)
    env.helper_pids.append(holder.pid)
    path = f"/proc/{holder.pid}/ns/net"
    assert wait_for(lambda: os.readlink(path) != os.readlink("/proc/self/ns/net"), timeout=5)
    subprocess.run(["nsenter", f"--net={path}", "--", "ip", "link", "add", "ocitnd0", "type", "veth", "peer",
                    "name", "ocitnp0"], check=True, timeout=20)
    b = env.bundle(args=("sh", "-c", "test -e /sys/class/net/ctr0"), mutate=mutate)
    cid = env.new_id()
    r = subprocess.run(["nsenter", f"--net={path}", "--", RUNTIME, "--root", env.root, "run", "--bundle", b.path,
                        cid], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"netDevices claimed, but the move failed: {r.stderr}"


def prove_intel_rdt_sub(env, claim):
    assert claim is False or claim is None, "intelRdt schemata/monitoring claimed without intelRdt"


def prove_memory_policy_modes(env, modes):
    for m in modes:
        pol = {"mode": m} if m in ("MPOL_DEFAULT", "MPOL_LOCAL") else {"mode": m, "nodes": "0"}
        _implemented(env, _set(("linux", "memoryPolicy"), pol), "/linux/memoryPolicy", m)


def prove_memory_policy_flags(env, flags):
    for fl in flags:
        _implemented(env, _set(("linux", "memoryPolicy"), {"mode": "MPOL_BIND", "nodes": "0", "flags": [fl]}),
                     "/linux/memoryPolicy", fl)


def prove_annotations(env, ann):
    assert set(ann) <= {"org.opencontainers.runc.version", "io.github.ociruntime.version",
                        "org.opencontainers.runc.checkpoint.enabled", "io.github.ociruntime.criu.minVersion"}
    if ann.get("org.opencontainers.runc.checkpoint.enabled") == "true":
        # the commands exist (tests/integration/test_checkpoint.py proves them with a real CRIU), and the
        # version named is the one a too-old CRIU is refused with
        from ociruntime import cli, criu
        assert "checkpoint" in cli.COMMANDS and "restore" in cli.COMMANDS
        assert ann["io.github.ociruntime.criu.minVersion"] == criu._fmt(criu._min_version())


def prove_versions(env, v):
    from ociruntime import OCI_VERSION
    assert v in ("1.0.0", OCI_VERSION)


IDMAP_MOUNT = {"destination": "/idm", "type": "bind", "source": "/tmp", "options": ["rbind"],
               "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
               "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}

PROVERS = {
    "ociVersionMin": prove_versions,
    "ociVersionMax": prove_versions,
    "hooks": prove_hooks,
    "mountOptions": prove_mount_options,
    "annotations": prove_annotations,
    "potentiallyUnsafeConfigAnnotations": lambda env, v: None if not v else pytest.fail("add a proof"),
    "linux/namespaces": prove_namespaces,
    "linux/capabilities": prove_capabilities,
    "linux/cgroup/v1": prove_cgroup_v1,
    "linux/cgroup/v2": prove_cgroup_v2,
    "linux/cgroup/systemd": prove_systemd,
    "linux/cgroup/systemdUser": prove_systemd,
    "linux/cgroup/rdma": prove_rdma,
    "linux/seccomp/enabled": prove_seccomp_enabled,
    "linux/seccomp/actions": prove_seccomp_actions,
    "linux/seccomp/operators": prove_seccomp_operators,
    "linux/seccomp/archs": prove_seccomp_archs,
    "linux/seccomp/knownFlags": prove_seccomp_known_flags,
    "linux/seccomp/supportedFlags": prove_seccomp_supported_flags,
    "linux/apparmor/enabled": prove_enabled(_set(("process", "apparmorProfile"), "acme"),
                                            "/process/apparmorProfile", "AppArmor"),
    "linux/selinux/enabled": prove_enabled(_set(("process", "selinuxLabel"), "system_u:system_r:container_t:s0"),
                                           "/process/selinuxLabel", "SELinux"),
    "linux/intelRdt/enabled": prove_enabled(_set(("linux", "intelRdt"), {"closID": "g"}), "/linux/intelRdt",
                                            "Intel RDT"),
    "linux/intelRdt/schemata": prove_intel_rdt_sub,
    "linux/intelRdt/monitoring": prove_intel_rdt_sub,
    "linux/mountExtensions/idmap/enabled": prove_enabled(lambda s: s["mounts"].append(dict(IDMAP_MOUNT)),
                                                         "/mounts/", "idmapped mounts"),
    "linux/netDevices/enabled": prove_net_devices,
    "linux/memoryPolicy/modes": prove_memory_policy_modes,
    "linux/memoryPolicy/flags": prove_memory_policy_flags,
}


def claims(doc, prefix=""):
    """(path, value) of every leaf claim; lists are one claim."""
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path != "annotations":
            yield from claims(v, path + "/")
        else:
            yield path, v


def test_every_claim_has_a_proof(features):
    missing = [p for p, _ in claims(features) if p not in PROVERS]
    assert not missing, f"features claims without a proof in {__file__}: {missing}"


def _this_builds_claims():
    from ociruntime.misc import features
    return sorted(p for p, _ in claims(features()))


@pytest.mark.parametrize("path", _this_builds_claims())
def test_claim(env, features, path):
    found = dict(claims(features))
    assert path in found, f"{path}: in misc.features() but not in the CLI's output"
    assert path in PROVERS, f"{path}: no proof (see test_every_claim_has_a_proof)"
    PROVERS[path](env, found[path])
