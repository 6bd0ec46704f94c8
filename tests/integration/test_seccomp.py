"""linux.seccomp observed from inside the container, against runc where runc can run the profile.

* every action (ERRNO with errnoRet / defaultErrnoRet, KILL*, TRAP, TRACE without a tracer, LOG,
  ALLOW), argument filters (every operator, several args, runc's OR for one arg), ``flags``,
  ``architectures`` (i386 syscalls through ``int $0x80``), unknown syscall names, the -ENOSYS stub,
  ``exec``'d processes;
* SCMP_ACT_NOTIFY with a real seccomp agent (``SeccompAgent``: AF_UNIX listener at ``listenerPath``,
  the container process state + the fd by SCM_RIGHTS, SECCOMP_IOCTL_NOTIF_RECV/SEND through ioctl);
* Docker's default profile (tests/data/seccomp/docker-default.json, resolved from moby's
  default.json) under runc and under ociruntime: the whole container view must be equal.

Busybox cannot pass arbitrary syscall arguments, so a tiny static ``sysprobe`` (tests/data/seccomp/
sysprobe.c, built with ``gcc -static`` once per session) is copied into each rootfs:
``sysprobe NR ARGS…`` prints ``ok RET`` or ``err ERRNO TEXT``; ``sysprobe -32 …`` uses ``int $0x80``.

The reference is runc 1.1.5 here: it rejects any ``flags`` ("not yet supported"), so flag tests run
ociruntime only; and it builds its -ENOSYS stub only for the ``architectures`` listed (runc >= 1.2
always adds the native one, as we do), so the differential profiles list theirs.
"""

import errno
import fcntl
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest

from ociruntime.testing import assert_views_equal, container_view

pytestmark = [pytest.mark.oci_root, pytest.mark.timeout(120)]

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "seccomp")
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
SIGSYS_EXIT = 128 + 31


def load(name):
    with open(os.path.join(DATA, name)) as f:
        return json.load(f)


def deny(names, action="SCMP_ACT_ERRNO", default="SCMP_ACT_ALLOW", **rule):
    return {"defaultAction": default, "syscalls": [{"names": list(names), "action": action, **rule}]}


@pytest.fixture(scope="session")
def sysprobe_bin(oci_session_dir):
    gcc = shutil.which("gcc")
    if not gcc:
        pytest.skip("no gcc on this host's PATH (it builds the static sysprobe helper)")
    out = os.path.join(oci_session_dir, "sysprobe")
    r = subprocess.run([gcc, "-static", "-O2", "-o", out, os.path.join(DATA, "sysprobe.c")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"cannot build a static sysprobe: {r.stderr.strip()[:300]}")
    return out


@pytest.fixture
def sc_bundle(make_test_bundle, sysprobe_bin):
    """Factory: a writable busybox bundle with /bin/sysprobe, running ``sh -c 'exec 2>&1; SCRIPT'``
    under ``profile``."""

    def factory(profile, script, nnp=True, caps=None, args=None):
        b = make_test_bundle(args=args or ("/bin/sh", "-c", "exec 2>&1; " + script))
        b.set_readonly_root(False)
        shutil.copy2(sysprobe_bin, b.rootfs_path("/bin/sysprobe"))
        b.set_no_new_privileges(nnp)
        if caps is not None:
            b.set_capabilities(caps)
        if profile is not None:
            b.set_seccomp(profile)
        b.write()
        return b

    return factory


@pytest.fixture
def reference(request):
    """runc (the plugin's reference runtime), or None when it is not installed: the differential tests
    then check ociruntime alone."""
    try:
        return request.getfixturevalue("reference_runtime")
    except pytest.skip.Exception:
        return None


def run(rt, b, rc=0):
    r = rt.run(None, b)
    if rc is not None:
        assert r.rc == rc, r.describe()
    return r


def both(oci_runtime, reference, b, rc=0):
    """Run ``b`` under runc (on a copy) and ociruntime; their outputs must be equal. Returns our Result."""
    ours = run(oci_runtime, b, rc)
    if reference is None:
        return ours
    ref = run(reference, b.clone(b.path + "-ref"), rc)
    assert ours.rc == ref.rc
    assert ours.output == ref.output, f"runc:\n{ref.output}\nociruntime:\n{ours.output}"
    return ours


def status_lines(out):
    return re.findall(r"^(?:Seccomp|Seccomp_filters|NoNewPrivs):\s*\S+$", out, re.M)


# --- audit records (SCMP_ACT_LOG, SECCOMP_FILTER_FLAG_LOG) ------------------------------------

NETLINK_AUDIT, AUDIT_NLGRP_READLOG, AUDIT_SECCOMP = 9, 1, 1326


class AuditLog:
    """The kernel's audit records from now on: the NETLINK_AUDIT read-only multicast group (every
    record, whether or not auditd runs, not rate-limited like printk), else /dev/kmsg (only when no
    auditd takes the records; printk is rate-limited, so a miss there is not conclusive).
    ``source`` is None when neither is available. Only listens; changes no audit setting."""

    def __init__(self):
        self.source = self._nl = self._kmsg = None
        try:
            self._nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_AUDIT)
            self._nl.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
            self._nl.setblocking(False)
            self.source = "netlink"
            return
        except OSError:
            if self._nl:
                self._nl.close()
            self._nl = None
        if any(_comm(p) == "auditd" for p in os.listdir("/proc") if p.isdigit()):
            return
        try:
            self._kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._kmsg, 0, os.SEEK_END)
            self.source = "kmsg"
        except OSError:
            self.close()

    def _records(self):
        while True:
            try:
                if self._nl:
                    data = self._nl.recv(65536)
                    while len(data) >= 16:
                        length, typ = struct.unpack_from("=IH", data)
                        if typ == AUDIT_SECCOMP:
                            yield data[16:length].decode(errors="replace")
                        data = data[(length + 3) & ~3:]
                else:
                    yield os.read(self._kmsg, 8192).decode(errors="replace").split(";", 1)[-1]
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.EPIPE:  # kmsg: records overwritten meanwhile
                    raise

    def find(self, *needles, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            for rec in self._records():
                if all(n in rec for n in needles):
                    return rec.strip()
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def close(self):
        if self._nl:
            self._nl.close()
        if self._kmsg is not None:
            os.close(self._kmsg)
        self._nl = self._kmsg = self.source = None


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


@pytest.fixture
def audit():
    a = AuditLog()
    yield a
    a.close()


def check_audit(audit, comm, *needles):
    if audit.source is None:
        return  # no audit records to read here: the test has shown the call's outcome, that is all
    rec = audit.find(f'comm="{comm}"')
    if rec is None and audit.source == "kmsg":
        pytest.skip("no audit record in /dev/kmsg (printk rate limit?) and no audit netlink socket")
    assert rec, f"no audit record (type 1326) for comm={comm} from {audit.source}"
    for n in needles:
        assert n in rec, rec


def unique_comm():
    return "sc" + uuid.uuid4().hex[:12]


# --- ERRNO -----------------------------------------------------------------------------------

def test_errno_with_errno_ret(oci_runtime, reference, sc_bundle):
    p = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    b = sc_bundle(p, "mkdir /tmp/a; rmdir /tmp; cd /tmp; echo pwd=$(pwd); grep -E '^Seccomp' /proc/self/status")
    out = both(oci_runtime, reference, b).output
    assert "can't create directory '/tmp/a': Function not implemented" in out
    assert "rmdir: '/tmp': Operation not permitted" in out
    assert "can't cd to /tmp: Permission denied" in out and "pwd=/\n" in out
    assert status_lines(out) == ["Seccomp:\t2", "Seccomp_filters:\t1"]


@pytest.mark.parametrize("default_errno,text", [(None, "Operation not permitted"),
                                                (38, "Function not implemented"),
                                                (95, "Operation not supported")])
def test_default_errno_ret_with_an_allow_list(oci_runtime, reference, sc_bundle, default_errno, text):
    """defaultAction ERRNO + an allow list (the reverse of the deny-list tests). defaultErrnoRet only
    concerns the default action: the rmdir rule without errnoRet stays EPERM (runc)."""
    p = load("busybox-allowlist.json")
    p["syscalls"].append({"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"})
    if default_errno is not None:
        p["defaultErrnoRet"] = default_errno
    b = sc_bundle(p, "echo hello; cat /etc/hostname >/dev/null && echo cat-ok; mkdir /tmp/a; rmdir /tmp; "
                     "sysprobe 300; ls /tmp")
    out = both(oci_runtime, reference, b).output
    assert "hello\ncat-ok\n" in out
    assert f"can't create directory '/tmp/a': {text}" in out
    assert "rmdir: '/tmp': Operation not permitted" in out
    errno_ = default_errno or 1
    assert f"err {errno_} {text}" in out  # fanotify_init: a hole below the largest allowed syscall


# --- KILL / TRAP -----------------------------------------------------------------------------

SIG_SCRIPT = "trap 'echo caught-SIGSYS' SYS; mkdir /tmp/y; echo mkdir-rc=$?; cd /tmp; echo after-cd"


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS"])
def test_kill_actions(oci_runtime, sc_bundle, action):
    """The forked mkdir dies of SIGSYS (159 for the shell); the shell's own chdir kills the shell even
    with a SIGSYS handler: the container exits with 159."""
    b = sc_bundle(deny(["mkdir", "chdir"], action), SIG_SCRIPT)
    r = run(oci_runtime, b, rc=SIGSYS_EXIT)
    assert "mkdir-rc=159" in r.output
    assert "caught-SIGSYS" not in r.output and "after-cd" not in r.output


def test_trap(oci_runtime, reference, sc_bundle):
    """TRAP sends a catchable SIGSYS: the shell's handler runs and the shell goes on; a process
    without a handler (the forked mkdir) dies of it."""
    b = sc_bundle(deny(["mkdir", "chdir"], "SCMP_ACT_TRAP"), SIG_SCRIPT)
    r = both(oci_runtime, reference, b, rc=0)
    assert "mkdir-rc=159" in r.output
    assert "caught-SIGSYS" in r.output and "after-cd" in r.output


def test_trace_without_tracer_is_enosys(oci_runtime, reference, sc_bundle):
    p = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_TRACE", "errnoRet": 13},
        {"names": ["rmdir"], "action": "SCMP_ACT_TRACE"}]}
    out = both(oci_runtime, reference, sc_bundle(p, "mkdir /tmp/a; rmdir /tmp; true")).output
    assert "can't create directory '/tmp/a': Function not implemented" in out
    assert "rmdir: '/tmp': Function not implemented" in out


# --- LOG -------------------------------------------------------------------------------------

def test_log_action(oci_runtime, sc_bundle, audit):
    """SCMP_ACT_LOG: allowed, and audited (type=1326 ... code=0x7ffc0000)."""
    comm = unique_comm()
    p = deny(["mkdir", "getppid"], "SCMP_ACT_LOG")
    b = sc_bundle(p, f"mkdir /tmp/logged && ls -d /tmp/logged; cp /bin/sysprobe /bin/{comm}; {comm} 110")
    out = run(oci_runtime, b).output
    assert "/tmp/logged\n" in out and re.search(r"^ok \d+$", out, re.M), out
    check_audit(audit, comm, "syscall=110", "code=0x7ffc0000")


# --- argument filters ------------------------------------------------------------------------

ARG_PROFILE = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},
    {"names": ["alarm"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LT"}]},
    {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 0o22, "op": "SCMP_CMP_LE"}]},
    {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 1000000, "op": "SCMP_CMP_GE"}]},
    {"names": ["dup"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 100, "op": "SCMP_CMP_GT"}]},
    {"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
    # AF_INET: denied; AF_INET6 + SOCK_DGRAM (whatever the flags): denied (two args: AND)
    {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
    {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
     "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"},
              {"index": 1, "value": 0xF, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]},
    # two conditions on the same argument: runc ORs them
    {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
]}

#: (probe, expected output line)
ARG_PROBES = [
    ("sysprobe 135 0xffffffff", "err 13 Permission denied"),  # EQ
    ("sysprobe 135 0x1ffffffff", "ok 0"),                      # EQ compares all 64 bits
    ("sysprobe 135 8", "ok 0"),
    ("sysprobe 37 9", "err 13 Permission denied"),             # LT
    ("sysprobe 37 10", "ok 0"),
    ("sysprobe 95 18", "err 13 Permission denied"),            # LE (0o22)
    ("sysprobe 95 19", "ok 18"),
    ("sysprobe 121 1000000", "err 13 Permission denied"),      # GE
    ("sysprobe 121 999999", "err 3 No such process"),
    ("sysprobe 32 101", "err 13 Permission denied"),           # GT
    ("sysprobe 32 100", "err 9 Bad file descriptor"),
    ("sysprobe 124 1", "err 13 Permission denied"),            # NE
    ("sysprobe 124 0", "ok 1"),
    ("sysprobe 41 2 1 0", "err 13 Permission denied"),         # socket(AF_INET, SOCK_STREAM)
    ("sysprobe 41 1 1 0", "ok 3"),                             # AF_UNIX works
    ("sysprobe 41 10 2 0", "err 97 Address family not supported by protocol"),
    ("sysprobe 41 10 0x80802 0", "err 97 Address family not supported by protocol"),  # MASKED_EQ
    ("sysprobe 41 10 1 0", "ok 3"),                            # AF_INET6 stream: second arg differs
    ("sysprobe 140 1 0", "err 13 Permission denied"),          # OR on one arg
    ("sysprobe 140 2 0", "err 13 Permission denied"),
    ("sysprobe 140 0 0", "ok 20"),                             # raw getpriority: 20 - nice
]


def test_argument_filters(oci_runtime, reference, sc_bundle):
    script = "; ".join(p for p, _ in ARG_PROBES) + "; linux32 true && echo linux32-ok; ifconfig lo; true"
    out = both(oci_runtime, reference, sc_bundle(ARG_PROFILE, script)).output
    lines = out.splitlines()
    for (probe, expected), got in zip(ARG_PROBES, lines):
        assert got == expected, f"{probe}: {got!r} != {expected!r}\n{out}"
    assert "linux32-ok" in out  # busybox linux32: personality(PER_LINUX32) passes the EQ rule
    assert "ifconfig: socket: Permission denied" in out  # busybox's own AF_INET socket


def test_unknown_syscall_names_are_ignored(oci_runtime, reference, sc_bundle):
    p = deny(["no_such_syscall", "mkdir", "mkdirat", "also_not_one"], errnoRet=38)
    out = both(oci_runtime, reference, sc_bundle(p, "mkdir /tmp/a; echo done")).output
    assert "Function not implemented" in out and "done" in out


# --- architectures ---------------------------------------------------------------------------

@pytest.mark.parametrize("archs", [None, ["SCMP_ARCH_X86_64"]])
def test_i386_syscall_without_x86_arch_is_killed(oci_runtime, reference, sc_bundle, archs):
    """A filter without SCMP_ARCH_X86: an i386 syscall (int $0x80) gets libseccomp's bad-arch action
    (SIGSYS)."""
    p = deny(["getppid"])
    if archs:
        p["architectures"] = archs
    out = both(oci_runtime, reference,
               sc_bundle(p, "sysprobe 110; sysprobe -32 20; echo rc=$?")).output
    assert out.splitlines()[:1] == ["err 1 Operation not permitted"]
    assert "rc=159" in out


def test_x86_arch_rules_apply_to_i386_syscalls(oci_runtime, reference, sc_bundle):
    p = deny(["getppid", "unshare"])
    p["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    out = both(oci_runtime, reference, sc_bundle(
        p, "sysprobe 110; sysprobe -32 64; sysprobe -32 310 0; sysprobe -32 20 >/dev/null; echo rc=$?")).output
    assert out.splitlines() == ["err 1 Operation not permitted"] * 3 + ["rc=0"]


def test_unknown_architecture_is_a_config_error(oci_runtime, sc_bundle):
    p = deny(["mkdir"])
    p["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"]
    r = oci_runtime.run(None, sc_bundle(p, "true"))
    assert r.rc != 0
    assert "/linux/seccomp/architectures/1" in r.stderr and "not supported by this libseccomp" in r.stderr


# --- flags (runc 1.1.5 refuses every flag: ociruntime only) -----------------------------------

@pytest.mark.parametrize("flags", [
    ["SECCOMP_FILTER_FLAG_TSYNC"], ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], [],
    ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
], ids=lambda f: "+".join(x.rsplit("_", 2)[-2] + "_" + x.rsplit("_", 1)[-1] for x in f) or "none")
def test_flags(oci_runtime, sc_bundle, flags):
    p = deny(["mkdir", "mkdirat"], errnoRet=38)
    p["flags"] = flags
    out = run(oci_runtime, sc_bundle(p, "mkdir /tmp/a; grep -E '^Seccomp' /proc/self/status")).output
    assert "Function not implemented" in out
    assert status_lines(out) == ["Seccomp:\t2", "Seccomp_filters:\t1"]


def test_flag_log_logs_errno_actions(oci_runtime, sc_bundle, audit):
    """SECCOMP_FILTER_FLAG_LOG: actions other than ALLOW are audited too (ERRNO here; the record
    carries the action without its data)."""
    comm = unique_comm()
    p = deny(["getppid"])
    p["flags"] = ["SECCOMP_FILTER_FLAG_LOG"]
    out = run(oci_runtime, sc_bundle(p, f"cp /bin/sysprobe /bin/{comm}; {comm} 110")).output
    assert "err 1 Operation not permitted" in out
    check_audit(audit, comm, "syscall=110", "code=0x50000")


def test_unknown_flag_is_a_config_error(oci_runtime, sc_bundle):
    p = deny(["mkdir"])
    p["flags"] = ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]
    r = oci_runtime.run(None, sc_bundle(p, "true"))
    assert r.rc != 0 and "/linux/seccomp/flags/0" in r.stderr, r.describe()


# --- the -ENOSYS stub --------------------------------------------------------------------------

def test_enosys_stub(oci_runtime, reference, sc_bundle):
    """Default ERRNO: syscalls above the largest one the profile names get ENOSYS (runc patchbpf),
    so a libc falls back from a syscall newer than the profile; holes below it keep the default."""
    p = load("busybox-allowlist.json")  # largest: faccessat2 (439)
    out = both(oci_runtime, reference, sc_bundle(p, "sysprobe 440; sysprobe 1000; sysprobe 300")).output
    assert out.splitlines() == ["err 38 Function not implemented"] * 2 + ["err 1 Operation not permitted"]


@pytest.mark.parametrize("default", ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL"])
def test_enosys_stub_without_architectures(oci_runtime, sc_bundle, default):
    """No ``architectures``: the native one is implied (runc >= 1.2; runc 1.1.5 has no stub then and
    answers EPERM / kills). With default KILL the newer syscall is ENOSYS, not a kill."""
    p = load("busybox-allowlist.json")
    del p["architectures"]
    p["defaultAction"] = default
    out = run(oci_runtime, sc_bundle(p, "sysprobe 440; sysprobe 1000")).output
    assert out.splitlines() == ["err 38 Function not implemented"] * 2


# --- exec --------------------------------------------------------------------------------------

def test_exec_gets_the_container_filter(oci_runtime, reference, sc_bundle):
    outs = []
    for rt in (oci_runtime, reference):
        if rt is None:
            continue
        b = sc_bundle(deny(["mkdir", "mkdirat"], errnoRet=38), None, args=("sleep", "30"))
        cid = rt.new_id()
        rt.run(cid, b, detach=True).check("run --detach")
        r = rt.exec(cid, "/bin/sh", "-c", "exec 2>&1; mkdir /tmp/e; grep -E '^Seccomp' /proc/self/status")
        outs.append(r.output)
        rt.delete(cid, force=True).check("delete --force")
    assert "can't create directory '/tmp/e': Function not implemented" in outs[0]
    assert status_lines(outs[0]) == ["Seccomp:\t2", "Seccomp_filters:\t1"]
    assert outs[-1] == outs[0], "runc and ociruntime differ"


# --- known difference: the init's own sync messages after the filter --------------------------

def test_profile_denying_socket_io_syscalls(oci_runtime, reference, sc_bundle):
    p = deny(["sendto", "recvfrom", "sendmsg", "recvmsg"])
    both(oci_runtime, reference, sc_bundle(p, "echo hi"))


# --- SCMP_ACT_NOTIFY -------------------------------------------------------------------------

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100   # _IOWR('!', 0, struct seccomp_notif)       (80 bytes)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101   # _IOWR('!', 1, struct seccomp_notif_resp)  (24 bytes)
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
# struct seccomp_notif { u64 id; u32 pid; u32 flags; struct seccomp_data { int nr; u32 arch;
#                        u64 instruction_pointer; u64 args[6]; } data; }
NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp { u64 id; s64 val; s32 error; u32 flags; }
RESP = struct.Struct("=QqiI")
assert NOTIF.size == 80 and RESP.size == 24


class SeccompAgent:
    """A seccomp agent: listens on ``path``; for each connection receives the container process state
    (JSON) and the notify fd (SCM_RIGHTS), then answers that fd's notifications with
    ``handler(notification) -> (val, error, flags)`` (error: a negative errno). One thread, poll(2)
    on everything; ``stop()`` closes all of it and removes the socket."""

    def __init__(self, path, handler):
        self.path = path
        self.handler = handler
        self.states = []         # the JSON documents received, in order
        self.notifications = []  # dicts: id, pid, nr, arch, args, answer, listener
        self.errors = []
        self._listeners = {}     # fd -> index in states
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.bind(path)
        self._sock.listen(16)
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="seccomp-agent", daemon=True)
        self._thread.start()

    def _run(self):
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        poller.register(self._sock.fileno(), select.POLLIN)
        try:
            while True:
                for fd, ev in poller.poll(1000):
                    if fd == self._stop_r:
                        return
                    if fd == self._sock.fileno():
                        lfd = self._accept()
                        if lfd is not None:
                            poller.register(lfd, select.POLLIN)
                    elif fd in self._listeners:
                        if ev & select.POLLIN:
                            self._answer(fd)
                        elif ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                            poller.unregister(fd)  # every process using the filter is gone
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))

    def _accept(self):
        conn, _ = self._sock.accept()
        with conn:
            conn.settimeout(10)
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            # one JSON document; runc 1.1 keeps the connection open a while: stop at the document's end
            while True:
                try:
                    state = json.loads(msg)
                    break
                except ValueError:
                    more = conn.recv(65536)
                    if not more:
                        raise
                    msg += more
        for extra in fds[1:]:
            os.close(extra)
        self.states.append(state)
        if not fds:
            self.errors.append("no fd with the container process state")
            return None
        self._listeners[fds[0]] = len(self.states) - 1
        return fds[0]

    def _answer(self, fd):
        buf = bytearray(NOTIF.size)  # must be zeroed for NOTIF_RECV
        try:
            fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINTR):  # the caller went away meanwhile
                return
            raise
        nid, pid, _flags, nr, arch, _ip, *args = NOTIF.unpack(buf)
        n = {"id": nid, "pid": pid, "nr": nr, "arch": arch, "args": args, "listener": self._listeners[fd]}
        val, error, flags = self.handler(n)
        n["answer"] = (val, error, flags)
        self.notifications.append(n)
        try:
            fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, bytearray(RESP.pack(nid, val, error, flags)), True)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise

    def stop(self):
        os.write(self._stop_w, b"x")
        self._thread.join(10)
        for fd in list(self._listeners):
            os.close(fd)
        self._listeners.clear()
        self._sock.close()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


NR_GETPPID, NR_MKDIR, NR_MKDIRAT = 110, 83, 258
FAKE_PPID = 4242


def fake_answers():
    """getppid -> 4242 (a made-up return value); the 1st mkdir -> EREMOTEIO, the 2nd -> 'success'
    (nothing is created); anything else notified continues."""
    mkdirs = []

    def handler(n):
        if n["nr"] == NR_GETPPID:
            return FAKE_PPID, 0, 0
        if n["nr"] in (NR_MKDIR, NR_MKDIRAT):
            mkdirs.append(n)
            return (0, -errno.EREMOTEIO, 0) if len(mkdirs) % 2 == 1 else (0, 0, 0)
        return 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE

    return handler


@pytest.fixture
def agent(oci_tmp):
    agents = []

    def start(handler=None):
        a = SeccompAgent(os.path.join(oci_tmp, f"agent-{len(agents)}.sock"), handler or fake_answers())
        agents.append(a)
        return a

    yield start
    for a in agents:
        a.stop()
    for a in agents:
        assert not a.errors, a.errors


NOTIFY_SCRIPT = ("echo ppid=$PPID; mkdir /tmp/n1; echo rc1=$?; mkdir /tmp/n2; echo rc2=$?; "
                 "ls -d /tmp/n2 >/dev/null 2>&1 || echo n2-absent; grep -E '^Seccomp' /proc/self/status")


def notify_profile(agent, flags=None, **extra):
    p = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent.path,
         "listenerMetadata": "seccomp-test metadata: ∂ \"quoted\"",
         "syscalls": [{"names": ["getppid", "mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}], **extra}
    if flags is not None:
        p["flags"] = flags
    return p


def check_notify_run(r, a, bundle):
    out = r.output
    assert f"ppid={FAKE_PPID}\n" in out
    assert "mkdir: can't create directory '/tmp/n1': Remote I/O error\nrc1=1\n" in out
    assert "rc2=0\nn2-absent\n" in out
    assert [x for x in status_lines(out) if x.startswith("Seccomp")] == ["Seccomp:\t2", "Seccomp_filters:\t1"]
    assert not os.path.exists(bundle.rootfs_path("/tmp/n2"))
    assert len(a.states) == 1
    st = a.states[0]
    assert st["fds"] == ["seccompFd"]
    assert st["metadata"] == "seccomp-test metadata: ∂ \"quoted\""
    assert isinstance(st["pid"], int) and st["pid"] > 0
    assert st["state"]["id"] == r.id
    assert st["state"]["status"] == "creating"
    assert st["state"]["pid"] == st["pid"]
    assert os.path.realpath(st["state"]["bundle"]) == os.path.realpath(bundle.path)
    assert re.match(r"^1\.\d+\.\d+", st["ociVersion"]) and st["state"]["ociVersion"] == st["ociVersion"]
    nrs = [n["nr"] for n in a.notifications]
    assert NR_GETPPID in nrs and nrs.count(NR_MKDIR) + nrs.count(NR_MKDIRAT) == 2
    # the notifications come from the container process the state names (host pid)
    assert {n["pid"] for n in a.notifications if n["nr"] == NR_GETPPID} == {st["pid"]}
    return st


def test_notify_agent(oci_runtime, reference, sc_bundle, agent):
    """A real agent answers the container's syscalls; the container sees its answers. The same under
    runc; the documents they send are the same but for the runtime-spec version."""
    docs = []
    for rt in (oci_runtime, reference):
        if rt is None:
            continue
        a = agent()
        b = sc_bundle(notify_profile(a), NOTIFY_SCRIPT)
        st = check_notify_run(run(rt, b), a, b)
        docs.append(st)
    for d in docs:
        d.pop("ociVersion")
        d["state"].pop("ociVersion")
        d["state"].pop("id")
        d["state"].pop("bundle")
        d["state"].pop("pid")
        d.pop("pid")
        d["state"].pop("annotations", None)
    assert docs[-1] == docs[0], "runc and ociruntime sent different container process states"


@pytest.mark.parametrize("flags", [["SECCOMP_FILTER_FLAG_TSYNC"],
                                   ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]],
                         ids=["tsync", "wait_killable_recv"])
def test_notify_with_flags(oci_runtime, sc_bundle, agent, flags):
    """TSYNC + a listener needs TSYNC_ESRCH (the kernel refuses TSYNC + NEW_LISTENER otherwise)."""
    a = agent()
    b = sc_bundle(notify_profile(a, flags=flags), NOTIFY_SCRIPT)
    st = check_notify_run(run(oci_runtime, b), a, b)
    assert st["state"]["status"] == "creating"


def test_notify_with_nnp_false(oci_runtime, sc_bundle, agent):
    """noNewPrivileges false: the filter (and the listener) come before the capabilities are dropped."""
    a = agent()
    b = sc_bundle(notify_profile(a), NOTIFY_SCRIPT + "; grep NoNewPrivs /proc/self/status", nnp=False)
    r = run(oci_runtime, b)
    check_notify_run(r, a, b)
    assert "NoNewPrivs:\t0" in r.output


def _exec_notify(rt, sc_bundle, a):
    b = sc_bundle(notify_profile(a, syscalls=[{"names": ["getppid", "mkdir", "mkdirat"],
                                               "action": "SCMP_ACT_NOTIFY"}]), None, args=("sleep", "30"))
    cid = rt.new_id()
    rt.run(cid, b, detach=True).check("run --detach")
    init_pid = rt.state(cid)["pid"]
    r = rt.exec(cid, "/bin/sh", "-c", "exec 2>&1; echo ppid=$PPID; mkdir /tmp/x1; echo rc1=$?")
    rt.delete(cid, force=True).check("delete --force")
    return r, init_pid, cid


def test_notify_exec(oci_runtime, reference, sc_bundle, agent):
    """An exec'd process gets the container's filter with a listener of its own, sent to the agent
    with the exec'd process's pid."""
    for rt in (oci_runtime, reference):
        if rt is None:
            continue
        a = agent()
        r, init_pid, cid = _exec_notify(rt, sc_bundle, a)
        assert r.rc == 0, r.describe()
        assert r.output == f"ppid={FAKE_PPID}\nmkdir: can't create directory '/tmp/x1': Remote I/O error\nrc1=1\n"
        assert len(a.states) == 2, a.states  # the container's init, then the exec'd process
        first, second = a.states
        assert first["pid"] == init_pid
        assert second["pid"] != init_pid and second["fds"] == ["seccompFd"]
        assert second["metadata"] == first["metadata"] and second["state"]["id"] == cid
        # getppid comes from the exec'd shell itself (mkdir from its forked child, same filter)
        assert {n["pid"] for n in a.notifications if n["listener"] == 1 and n["nr"] == NR_GETPPID} \
            == {second["pid"]}


def test_notify_exec_state_is_the_containers(oci_runtime, sc_bundle, agent):
    a = agent()
    r, init_pid, cid = _exec_notify(oci_runtime, sc_bundle, a)
    assert r.rc == 0, r.describe()
    second = a.states[1]
    assert second["state"]["status"] == "running"
    assert second["state"]["pid"] == init_pid


def test_notify_without_agent_fails_cleanly(oci_runtime, sc_bundle, oci_tmp):
    p = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": os.path.join(oci_tmp, "nobody-listens.sock"),
         "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    b = sc_bundle(p, "echo should-not-run")
    r = oci_runtime.run(None, b)
    assert r.rc != 0 and "should-not-run" not in r.stdout
    assert "nobody-listens.sock" in r.stderr, r.describe()


# --- Docker's default profile: the whole container view, runc vs ociruntime ------------------

DOCKER_PROBES = r"""
p() { n=$1; shift; o=$("$@" 2>&1); rc=$?; echo "$n: rc=$rc $(echo "$o" | head -2 | tr '\n' ' ' | sed -E 's/ +$//')"; }
p mkdir mkdir /tmp/d
p ls ls -d /tmp/d
p chroot chroot / true
p unshare-user unshare -U true
p unshare-mnt unshare -m true
p unshare-net unshare -n true
p mount mount -t tmpfs t /mnt
p umount umount /proc
p nsenter nsenter -t 1 -n true
p sethostname hostname foo
p syslog dmesg
p linux32 linux32 true
p swapon swapon /tmp/d
p ionice ionice -c 3 true
p sched_getaffinity taskset -p 1
p ping ping -c1 -W2 -q 127.0.0.1
p keyctl sysprobe 250 0 0
p add_key sysprobe 248
p bpf sysprobe 321 0 0 0
p perf_event_open sysprobe 298 0 0 0 0 0
p userfaultfd sysprobe 323 0
p io_uring_setup sysprobe 425 1 0
p clone3 sysprobe 435 0 0
p clone-newuser sysprobe 56 0x10000011
p clone-fork sh -c 'sysprobe 56 0x11 | sed -E "s/ok [0-9]+/ok PID/"'
p personality-query sysprobe 135 0xffffffff
p personality-1 sysprobe 135 1
p socket-inet sysprobe 41 2 1 0
p socket-alg sysprobe 41 38 5 0
p socket-vsock sysprobe 41 40 1 0
p reboot-bad-magic sysprobe 169 0 0 0 0
p kexec_load sysprobe 246 0 0 0 0
p setns sysprobe 308 0 0
p acct sysprobe 163 0
p ptrace-traceme sysprobe 101 0 0 0 0
p new-syscall-1000 sysprobe 1000
p i386-getpid sh -c 'sysprobe -32 20 | sed -E "s/ok [0-9]+/ok PID/"'
p i386-unshare sysprobe -32 310 0x10000000
"""


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_docker_default_profile_differential(reference, oci_runtime, sc_bundle, oci_diff_ignore, nnp):
    """Docker's default profile with Docker's default capabilities: the probes give the expected
    answers, and runc's view of the container (status, mounts, caps, the probes, …) equals ours."""
    def view(rt):
        b = sc_bundle(load("docker-default.json"), "true", nnp=nnp, caps=DOCKER_CAPS)
        return container_view(rt, b, script=DOCKER_PROBES, lifecycle=False)

    ours = view(oci_runtime)
    assert ours.get("exit_code") == 0 and ours.get("complete"), ours.get("raw")
    if reference is not None:
        ref = view(reference)
        assert ref.get("exit_code") == 0 and ref.get("complete"), ref.get("raw")
        assert_views_equal(ref, ours, ignore=oci_diff_ignore,
                           labels=(f"{reference.name} (reference)", f"{oci_runtime.name} (under test)"))
    script = ours["script"]
    for expected in ("mkdir: rc=0", "chroot: rc=0",
                     "unshare-user: rc=1 unshare: unshare(0x10000000): Operation not permitted",
                     "mount: rc=1 mount: permission denied (are you root?)",
                     "keyctl: rc=0 err 1 Operation not permitted", "clone3: rc=0 err 38 Function not implemented",
                     "clone-newuser: rc=0 err 1 Operation not permitted", "clone-fork: rc=0 ok PID",
                     "personality-query: rc=0 ok 0", "personality-1: rc=0 err 1 Operation not permitted",
                     "socket-inet: rc=0 ok 3", "socket-vsock: rc=0 err 1 Operation not permitted",
                     "new-syscall-1000: rc=0 err 38 Function not implemented", "i386-getpid: rc=0 ok PID",
                     "i386-unshare: rc=0 err 1 Operation not permitted"):
        assert expected in script, (expected, script)
    assert "Seccomp: 2" in ours["status"] and "Seccomp_filters: 1" in ours["status"]
    assert f"NoNewPrivs: {int(nnp)}" in ours["status"]
