"""Differential tests: the same bundle under the reference runtime (runc) and the runtime under
test must give the same normalised container view (``ociruntime.testing.view``).

Run: ``pytest tests/integration/test_differential.py --oci-runtime=PATH [--oci-reference=PATH]``.
Harness self-checks: ``--oci-runtime=/usr/sbin/runc`` (runc vs runc: everything must pass) and
``--oci-runtime=/usr/bin/crun`` (runc vs crun: real differences show up as readable diffs).
"""

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import pytest

from ociruntime.testing import HOOK_KINDS, assert_views_equal, container_view
from ociruntime.testing.plugin import assert_refuses_missing_namespace, host_lacks_namespace
from ociruntime.testing.view import sysctl_proc_path


class Ctx:
    """What a case may need besides the bundle: a scratch dir, namespace holders, host files
    whose content belongs in the view (hook logs), host paths to normalise."""

    def __init__(self, tmp, ns_holder):
        self.tmp = tmp
        self.ns_holder = ns_holder
        self.files = []
        self.extra_paths = []

    def mkdir(self, name, mode=0o755, files=None):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, mode)
        for fname, text in (files or {}).items():
            with open(os.path.join(d, fname), "w") as f:
                f.write(text)
        self.extra_paths.append((d, f"<{name.upper()}>"))
        return d


@dataclass
class Case:
    name: str
    apply: Callable
    script: Optional[str] = None
    requires_ns: Tuple[str, ...] = ()
    requires_spec: Optional[str] = None
    expect_ok: bool = True
    marks: tuple = field(default_factory=tuple)
    # deliberate differences from runc: (line regex, why, regex a line of OUR view must match)
    deviations: tuple = ()


CASES = []


def case(name, script=None, requires_ns=(), requires_spec=None, expect_ok=True, deviations=()):
    def deco(fn):
        CASES.append(Case(name, fn, script, tuple(requires_ns), requires_spec, expect_ok,
                          deviations=tuple(deviations)))
        return fn
    return deco


USERNS_DEVICE_FLAGS = (r"^mountinfo: \S+ \S+ \[\w+\] devtmpfs devtmpfs .* root=/(null|zero|full|random|urandom|tty)$",
                       "in a user namespace the host's device nodes are bound nosuid,noexec (as crun; runc "
                       "1.1.5 does not); masked files are clones of that /dev/null",
                       r"^mountinfo: /dev/null rw,nosuid,noexec,")


# -- config basics ----------------------------------------------------------------------------

@case("default")
def _default(b, ctx):
    pass


@case("root-writable", script="echo x > /newfile && cat /newfile")
def _root_rw(b, ctx):
    b.set_readonly_root(False)


@case("process-env-cwd-oom", script="pwd; echo \"$FOO|$EMPTY|$HOME\"")
def _process(b, ctx):
    b.set_env("FOO=bar baz", "EMPTY=", "HOME=/srv")
    b.set_cwd("/tmp")
    b.set_oom_score_adj(300)
    b.set_no_new_privileges(False)


@case("cwd-created")
def _cwd_created(b, ctx):
    b.set_readonly_root(False)
    b.set_cwd("/does/not/exist/yet")


@case("hostname-domainname", requires_spec="1.1.0")
def _domainname(b, ctx):
    b.set_hostname("diff-host")
    b.set_domainname("diff.example")


@case("annotations")
def _annotations(b, ctx):
    b.set_annotation("org.example.key", "value")
    b.set_annotation("io.kubernetes.cri.container-type", "container")


# -- namespaces -------------------------------------------------------------------------------

MINIMAL_NS = ["mount"]


@case("ns-minimal")
def _ns_minimal(b, ctx):
    b.set_namespaces(MINIMAL_NS)


for _ns in ("pid", "network", "ipc", "uts", "cgroup"):
    def _mk(ns):
        def apply(b, ctx):
            b.set_namespaces(MINIMAL_NS + [ns])
            if ns == "uts":
                b.set_hostname("ns-uts-host")
        return apply
    case(f"ns-only-{_ns}", requires_ns=(_ns,))(_mk(_ns))


@case("ns-all", requires_ns=("cgroup",))
def _ns_all(b, ctx):
    b.set_namespaces(["pid", "network", "ipc", "uts", "mount", "cgroup"])
    b.set_hostname("ns-all-host")


@case("ns-time", requires_ns=("time",))
def _ns_time(b, ctx):
    b.add_namespace("time")
    b.linux["timeOffsets"] = {"monotonic": {"secs": 86400, "nanosecs": 0},
                              "boottime": {"secs": 3600, "nanosecs": 0}}


# /dev/mqueue: its root takes the gid stage-1 has when it unshares the ipc namespace (before the init
# becomes gid 0), as in runc: the overflow gid here, the user's group under podman --userns=keep-id
@case("ns-user", requires_ns=("user",), script="ls -ln / | sed 1d | awk '{print $1,$3,$4,$NF}'",
      deviations=[USERNS_DEVICE_FLAGS])
def _ns_user(b, ctx):
    b.set_user_namespace(host_uid=100000, host_gid=100000, size=65536)


@case("ns-user-split-maps", requires_ns=("user",), deviations=[USERNS_DEVICE_FLAGS])
def _ns_user_split(b, ctx):
    b.set_user_namespace(uid_mappings=[{"containerID": 0, "hostID": 300000, "size": 1000},
                                       {"containerID": 1000, "hostID": 400000, "size": 1000}],
                         gid_mappings=[{"containerID": 0, "hostID": 500000, "size": 2000}])
    b.set_user(1000, 1000)


@case("ns-join-path")
def _ns_join(b, ctx):
    holder = ctx.ns_holder("net", "uts", "ipc")
    for ns in ("network", "uts", "ipc"):
        b.add_namespace(ns, path=holder.path(ns))
    b.set_hostname("joined-uts-host")


# -- mounts -----------------------------------------------------------------------------------

def _data_dir(ctx):
    return ctx.mkdir("data", files={"file": "from-host\n"})


@case("mount-bind-dir", script="cat /data/file; echo new > /data/new && cat /data/new")
def _bind_dir(b, ctx):
    b.add_mount("/data", type="bind", source=_data_dir(ctx), options=["bind"])


@case("mount-rbind-ro", script="cat /data/file; touch /data/x 2>&1 | sed 's/^.*: //'")
def _rbind_ro(b, ctx):
    b.add_mount("/data", type="bind", source=_data_dir(ctx), options=["rbind", "ro"])


@case("mount-bind-file", script="cat /etc/injected")
def _bind_file(b, ctx):
    src = os.path.join(_data_dir(ctx), "file")
    b.add_mount("/etc/injected", type="none", source=src, options=["bind", "ro", "nosuid"])


@case("mount-bind-options", script="cat /data/file")
def _bind_opts(b, ctx):
    b.add_mount("/data", type="bind", source=_data_dir(ctx),
                options=["rbind", "nosuid", "nodev", "noexec", "noatime"])


for _prop in ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
              "runbindable"):
    def _mkp(prop):
        def apply(b, ctx):
            b.add_mount("/data", type="bind", source=_data_dir(ctx), options=["rbind", prop])
        return apply
    case(f"mount-bind-{_prop}")(_mkp(_prop))


for _rprop in ("private", "slave", "shared", "unbindable"):
    def _mkr(prop):
        def apply(b, ctx):
            b.set_rootfs_propagation(prop)
        return apply
    # runc cannot bind-mount an unbindable rootfs onto itself ("flags: 0x5000: invalid
    # argument"): the case documents that both runtimes refuse it the same way
    _dev = [(r"^mountinfo: ", "runc makes the rootfs' parent mount private and leaves every mount private "
             "whatever rootfsPropagation says (runtime-tools linux_rootfs_propagation fails for runc); "
             "ociruntime applies rootfsPropagation to the new root after pivot_root",
             r"^mountinfo: / .*\[shared\]")] if _rprop == "shared" else []
    case(f"rootfs-propagation-{_rprop}", expect_ok=_rprop != "unbindable", deviations=_dev)(_mkr(_rprop))


@case("mount-tmpfs", script="stat -c '%a %u:%g' /scratch",
      deviations=[(r"^script: ", "runc chmods the mountpoint back to its previous mode over the tmpfs mode= "
                   "option; ociruntime honours mode= (as crun does)", r"^script: 1770 1000:1000$")])
def _tmpfs(b, ctx):
    b.add_mount("/scratch", type="tmpfs", source="tmpfs",
                options=["nosuid", "nodev", "noexec", "size=2m", "mode=1770", "uid=1000",
                         "gid=1000"])


@case("mount-tmpfs-over-dev-shm")
def _tmpfs_shm(b, ctx):
    b.remove_mount("/dev/shm")
    b.add_mount("/dev/shm", type="tmpfs", source="shm", options=["nosuid", "size=1m"])


@case("mount-proc-extra", script="ls /proc2/self/ >/dev/null && echo ok")
def _proc2(b, ctx):
    b.add_mount("/proc2", type="proc", source="proc", options=["nosuid", "nodev", "noexec"])


@case("mount-sysfs-extra", script="ls /sys2/kernel >/dev/null && echo ok")
def _sys2(b, ctx):
    b.add_mount("/sys2", type="sysfs", source="sysfs", options=["nosuid", "nodev", "ro"])


@case("mount-devpts-extra")
def _devpts2(b, ctx):
    b.add_mount("/dev/pts2", type="devpts", source="devpts",
                options=["nosuid", "noexec", "newinstance", "ptmxmode=0600", "mode=0600"])


@case("mount-mqueue-extra")
def _mq2(b, ctx):
    b.add_mount("/mq2", type="mqueue", source="mqueue", options=["nosuid", "nodev", "noexec"])


@case("mount-cgroup-rw")
def _cgroup_rw(b, ctx):
    b.remove_mount("/sys/fs/cgroup")
    b.add_mount("/sys/fs/cgroup", type="cgroup", source="cgroup",
                options=["nosuid", "noexec", "nodev", "relatime"])


@case("mount-cgroup-with-cgroupns", requires_ns=("cgroup",))
def _cgroup_ns(b, ctx):
    b.add_namespace("cgroup")


@case("mount-no-sys-no-cgroup")
def _no_sys(b, ctx):
    b.remove_mount("/sys/fs/cgroup")
    b.remove_mount("/sys")


# -- masked / readonly paths ------------------------------------------------------------------

@case("masked-and-readonly-custom",
      script="wc -c < /proc/keys; ls -A /proc/driver | wc -l")
def _masked(b, ctx):
    b.set_masked_paths(["/proc/keys", "/proc/driver", "/proc/kcore", "/nonexistent/file",
                        "/etc/hostname"])
    b.set_readonly_paths(["/proc/sys", "/proc/bus", "/var", "/nonexistent/dir"])
    b.set_readonly_root(False)


@case("masked-none")
def _masked_none(b, ctx):
    b.set_masked_paths([])
    b.set_readonly_paths([])


# -- devices ----------------------------------------------------------------------------------

@case("devices", script="cat /dev/nodriver-denied 2>&1; cat /dev/nodriver-allowed 2>&1; "
                        "echo hi > /dev/made/up && echo wrote")
def _devices(b, ctx):
    b.add_device("/dev/fuse", "c", 10, 229, file_mode=0o640, uid=0, gid=5)
    b.add_device("/dev/made/up", "c", 1, 3, file_mode=0o666, uid=1000, gid=1000)
    b.add_device("/dev/nodriver-denied", "c", 4000, 0, allow=False)
    b.add_device("/dev/nodriver-allowed", "c", 4000, 1)
    b.add_device("/dev/blockish", "b", 4000, 2, file_mode=0o600, allow=False)


# -- rlimits ----------------------------------------------------------------------------------

@case("rlimits")
def _rlimits(b, ctx):
    b.set_rlimits([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608},
        {"type": "RLIMIT_NICE", "soft": 0, "hard": 0},
    ])


@case("rlimit-above-hard", expect_ok=False)
def _rlimit_above(b, ctx):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE is unlimited here")
    b.add_rlimit("RLIMIT_NOFILE", hard + 1, hard + 1)


@case("rlimits-none")
def _rlimits_none(b, ctx):
    b.process.pop("rlimits", None)


# -- capabilities / users ---------------------------------------------------------------------

ALL_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
            "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
            "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
            "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
            "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ"]  # no CAP_SYS_RESOURCE: this machine does not have it


@case("caps-subset")
def _caps_subset(b, ctx):
    b.set_capabilities(["CAP_CHOWN", "CAP_KILL"])


@case("caps-none")
def _caps_none(b, ctx):
    b.process["capabilities"] = {"bounding": [], "effective": [], "permitted": []}


@case("caps-absent")
def _caps_absent(b, ctx):
    b.process.pop("capabilities", None)


@case("caps-many")
def _caps_many(b, ctx):
    b.set_capabilities(ALL_CAPS)


@case("caps-bounding-only")
def _caps_bounding(b, ctx):
    b.process["capabilities"] = {"bounding": ["CAP_KILL", "CAP_CHOWN"],
                                 "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}


@case("caps-ambient-nonroot")
def _caps_ambient(b, ctx):
    b.set_user(1000, 1000)
    b.set_capabilities(["CAP_NET_BIND_SERVICE", "CAP_KILL"],
                       sets=("bounding", "effective", "permitted", "inheritable", "ambient"))


@case("caps-nonroot-no-ambient")
def _caps_nonroot(b, ctx):
    b.set_user(1000, 1000)
    b.set_capabilities(["CAP_KILL"])


@case("user-1000-groups")
def _user_1000(b, ctx):
    b.set_user(1000, 1000, additional_gids=[10, 100, 4242])


@case("user-nobody")
def _user_nobody(b, ctx):
    b.set_user(65534, 65534)


@case("user-unknown-uid")
def _user_unknown(b, ctx):
    b.set_user(4242, 4343)


@case("user-umask", script="touch /tmp/f && stat -c %a /tmp/f")
def _umask(b, ctx):
    b.set_readonly_root(False)
    b.set_user(0, 0, umask=0o027)


# -- hooks ------------------------------------------------------------------------------------

@case("hooks", deviations=[(
    r"hooks\.log: (prestart|poststart) ",
    "runc runs poststart hooks at the end of create (status created) and gives prestart 'creating'; "
    "ociruntime runs poststart after start (runtime.md; runtime-tools poststart) with status running, and "
    "gives prestart 'created' (runtime-tools hooks_stdin)",
    r'hooks\.log: poststart .*"status": "running"')])
def _hooks(b, ctx):
    d = ctx.mkdir("hooks", mode=0o777)
    log = os.path.join(d, "hooks.log")
    open(log, "w").close()
    os.chmod(log, 0o666)
    for k in HOOK_KINDS:
        b.add_logging_hook(k, log)
    b.add_bind_mount(d, d)
    ctx.files.append(log)


@case("hooks-env-args")
def _hooks_env(b, ctx):
    d = ctx.mkdir("hooks", mode=0o777)
    log = os.path.join(d, "hooks.log")
    open(log, "w").close()
    os.chmod(log, 0o666)
    b.add_hook("prestart", "/bin/sh",
               ["sh", "-c", 'echo "prestart $0 $1 $HOOK_VAR" >> ' + log + "; env | sort >> "
                + log, "zero", "one"], env=["HOOK_VAR=v", "PATH=/usr/bin:/bin"], timeout=10)
    ctx.files.append(log)


@case("hook-prestart-fails", expect_ok=False)
def _hook_fails(b, ctx):
    b.add_hook("prestart", "/bin/sh", ["sh", "-c", "exit 7"])


# -- kernel parameters, resources, seccomp ------------------------------------------------------

@case("sysctl")
def _sysctl(b, ctx):
    b.add_sysctl("kernel.msgmax", "4096")
    b.add_sysctl("net.ipv4.ip_forward", "1")
    b.add_sysctl("net.ipv4.tcp_keepalive_time", "600")


@case("resources", script="cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                          "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares "
                          "/sys/fs/cgroup/blkio/blkio.weight 2>&1; "
                          "cat /sys/fs/cgroup/devices/devices.list")
def _resources(b, ctx):
    res = b.linux.setdefault("resources", {})
    res["memory"] = {"limit": 67108864}
    res["pids"] = {"limit": 77}
    res["cpu"] = {"shares": 512}


@case("seccomp-errno", script="mkdir /tmp/x 2>&1; echo rc=$?")
def _seccomp(b, ctx):
    b.set_seccomp({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}],
    })


# ---------------------------------------------------------------------------------------------

def _supported(runtime, case):
    feats = runtime.features()
    if feats is None:
        return None
    if case.requires_spec:
        def v(s):
            m = re.match(r"^(\d+)\.(\d+)\.(\d+)", s or "")
            return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
        if v(feats.get("ociVersionMax")) < v(case.requires_spec):
            return f"{runtime.name} supports runtime-spec up to {feats.get('ociVersionMax')}"
    nss = (feats.get("linux") or {}).get("namespaces") or []
    for ns in case.requires_ns:
        if nss and ns not in nss:
            return f"{runtime.name} does not support the {ns} namespace"
    return None


def _host_sysctls(keys):
    out = {}
    for k in keys:
        try:
            with open(sysctl_proc_path(k)) as f:
                out[k] = f.read()
        except OSError:
            out[k] = None
    return out


def _restore_sysctls(values):
    for k, v in values.items():
        if v is not None:
            with open(sysctl_proc_path(k), "w") as f:
                f.write(v)


@pytest.mark.oci_root
@pytest.mark.oci_reference
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_differential(case, reference_runtime, oci_runtime, make_test_bundle, oci_tmp,
                      ns_holder, oci_diff_ignore):
    why = _supported(reference_runtime, case)
    b = make_test_bundle()
    ctx = Ctx(oci_tmp, ns_holder)
    case.apply(b, ctx)
    b.write()
    for ns in case.requires_ns:
        lacks = host_lacks_namespace(ns)
        if lacks:  # host fact (e.g. no CONFIG_TIME_NS): both refuse, ours naming the entry
            for rt in ((reference_runtime,) if not why else ()) + (oci_runtime,):
                assert_refuses_missing_namespace(rt, b, ns, lacks)
            return
    if why:
        pytest.skip(f"reference cannot run this case: {why}")
    keys = sorted(((b.config.get("linux") or {}).get("sysctl") or {}))
    host_before = _host_sysctls(keys)
    views = []
    try:
        for rt in (reference_runtime, oci_runtime):
            views.append(container_view(rt, b, script=case.script, files=ctx.files,
                                        extra_paths=ctx.extra_paths))
    finally:
        host_after = _host_sysctls(keys)
        if host_after != host_before:
            _restore_sysctls(host_before)
            pytest.fail(f"a runtime changed HOST sysctls {host_before} -> {host_after} "
                        "(restored)")
    ref, cand = views
    if case.expect_ok:
        assert ref.get("exit_code") == 0 and ref.get("complete"), \
            f"the reference runtime could not run case {case.name}: {ref.get('raw')}"
    else:
        assert ref.get("exit_code") != 0, f"case {case.name} was expected to fail"
    labels = (f"{reference_runtime.name} (reference)", f"{oci_runtime.name} (under test)")
    if not case.deviations or oci_runtime.name == reference_runtime.name:
        assert_views_equal(ref, cand, ignore=oci_diff_ignore, labels=labels)
        return
    import difflib
    from ociruntime.testing.view import flatten_view
    la, lb = flatten_view(ref, oci_diff_ignore), flatten_view(cand, oci_diff_ignore)
    for rx, why, expect in case.deviations:
        assert any(re.search(expect, line) for line in lb), \
            f"deliberate deviation ({why}): no line of our view matches {expect!r}"
        la = [line for line in la if not re.search(rx, line)]
        lb = [line for line in lb if not re.search(rx, line)]
    assert la == lb, "container views differ beyond the documented deviations:\n" + "\n".join(
        difflib.unified_diff(la, lb, fromfile=labels[0], tofile=labels[1], lineterm=""))


@pytest.mark.oci_root
@pytest.mark.oci_reference
def test_differential_detects_a_difference(reference_runtime, make_test_bundle):
    """Harness self-check: two different bundles must give different views."""
    b1 = make_test_bundle()
    b2 = make_test_bundle()
    b2.set_capabilities(["CAP_KILL"])
    b2.set_hostname("other")
    b2.write()
    v1 = container_view(reference_runtime, b1, lifecycle=False)
    v2 = container_view(reference_runtime, b2, lifecycle=False)
    from ociruntime.testing import diff_views
    d = diff_views(v1, v2)
    assert "CapBnd" in d


# -- harness self-tests (pure functions: no root, no runtime) ---------------------------------

def test_normalize_mountinfo_drops_ids_keeps_shape():
    from ociruntime.testing.view import Normalizer, normalize_mountinfo
    lines = [
        "612 611 254:0 /tmp/b/rootfs / ro,relatime shared:12 master:3 - ext4 /dev/vda rw",
        "613 612 0:99 / /proc rw,relatime - proc proc rw",
        "614 612 0:5 /null /proc/kcore rw,nosuid unbindable - tmpfs tmpfs rw,mode=755",
    ]
    n = Normalizer([("/tmp/b/rootfs", "<ROOTFS>")])
    assert normalize_mountinfo(lines, n) == [
        "/ ro,relatime [shared,master] ext4 /dev/vda rw root=<ROOTFS>",
        "/proc rw,relatime [private] proc proc rw root=/",
        "/proc/kcore rw,nosuid [unbindable] tmpfs tmpfs rw,mode=755 root=/null",
    ]


def test_normalize_ls_drops_dates():
    from ociruntime.testing.view import normalize_ls
    lines = ["/dev:", "total 0",
             "crw-rw-rw-    1 0        0           1,   3 Nov 27 21:54 null",
             "lrwxrwxrwx    1 0        0               13 Nov 27  2025 fd -> /proc/self/fd",
             "drwxrwxrwt    2 0        0               40 Jan  1 00:00 shm"]
    assert normalize_ls(lines) == ["/dev:", "crw-rw-rw- 1 0 0 1,3 null",
                                   "lrwxrwxrwx 1 0 0 13 fd -> /proc/self/fd",
                                   "drwxrwxrwt 2 0 0 40 shm"]


def test_normalize_state_text():
    from ociruntime.testing.view import Normalizer, normalize_state_text
    text = ('{\n  "ociVersion": "1.3.0",\n  "id": "t-1",\n  "pid": 42,\n  "status": "created",'
            '\n  "bundle": "/b",\n  "rootfs": "/b/rootfs",\n'
            '  "created": "2026-11-27T20:26:01.1234Z",\n  "owner": ""\n}')
    v = normalize_state_text(text, Normalizer([("/b", "<BUNDLE>")]), ids=["t-1"])
    assert v["keys"] == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                         "owner"]
    assert v["values"]["pid"] == "<PID>" and v["values"]["id"] == "<ID>"
    assert v["values"]["rootfs"] == "<BUNDLE>/rootfs"
    assert v["values"]["created"] == "<RFC3339NANO-UTC>"
    assert v["format"] == {"indent": "2 spaces", "trailing_newline": False}
    v0 = normalize_state_text(text.replace('"pid": 42', '"pid": 0'), ids=["t-1"])
    assert v0["values"]["pid"] == 0


def test_parse_sections_and_diff():
    from ociruntime.testing.view import diff_views, parse_sections
    secs = parse_sections("junk\n@@@@ a\n1\n2\n@@@@ b\n@@@@ end\n")
    assert secs == {"_preamble": ["junk"], "a": ["1", "2"], "b": [], "end": []}
    assert diff_views({"a": [1, 2], "raw": 1}, {"a": [1, 2], "raw": 2}) == ""
    d = diff_views({"a": [1, 2]}, {"a": [1, 3]}, labels=("x", "y"))
    assert "-a: 2" in d and "+a: 3" in d


def test_fs_relative_variants():
    from ociruntime.testing.view import fs_relative_variants
    mounts = [("/", "/"), ("/tmp", "/"), ("/srv/data", "/export")]
    assert fs_relative_variants("/tmp/x/rootfs", mounts)[-1] == "/x/rootfs"
    assert fs_relative_variants("/srv/data/b", mounts)[-1] == "/export/b"
