"""ociruntime.seccomp + csrc/shim.c oci_seccomp_compile, without containers.

The compiled program is run by a small classic-BPF interpreter written here (independent of
libseccomp), on seccomp_data built by hand: so every decision (actions and their data, argument
comparisons on 64-bit values, architectures, x32, the -ENOSYS stub, Docker's default profile) is
checked against the numbers the kernel would see. Syscall numbers and constants are written out
(x86_64, i386, x32), not taken from the code under test.
"""

import json
import os
import struct

import pytest

from ociruntime import seccomp
from ociruntime.errors import ConfigError

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "seccomp")

AUDIT_X86_64, AUDIT_I386, AUDIT_AARCH64, AUDIT_S390X = 0xC000003E, 0x40000003, 0xC00000B7, 0x80000016
X32 = 0x40000000
ALLOW, LOG, KILL_THREAD, KILL_PROCESS, TRAP, NOTIFY = 0x7FFF0000, 0x7FFC0000, 0, 0x80000000, 0x30000, 0x7FC00000


def ERRNO(e):
    return 0x50000 | e


def TRACE(e):
    return 0x7FF00000 | e


EPERM, EACCES, ENOSYS, EXDEV = 1, 13, 38, 18
# x86_64 numbers
NR = {"read": 0, "write": 1, "getppid": 110, "mkdir": 83, "mkdirat": 258, "rmdir": 84, "personality": 135,
      "socket": 41, "clone": 56, "clone3": 435, "unshare": 272, "mount": 165, "reboot": 169, "chroot": 161,
      "keyctl": 250, "ptrace": 101, "kill": 62, "alarm": 37, "umask": 95, "getpgid": 121, "dup": 32,
      "getsid": 124, "faccessat2": 439, "process_madvise": 440, "fanotify_init": 300, "sendmsg": 46,
      "io_uring_setup": 425, "bpf": 321, "setns": 308}
# i386 numbers
NR32 = {"getppid": 64, "mkdir": 39, "getpid": 20, "unshare": 310, "personality": 136, "socketcall": 102}


# --- a classic BPF interpreter (the subset seccomp filters use) --------------------------------

def run_bpf(prog, nr, arch=AUDIT_X86_64, args=(), ip=0):
    """Run ``prog`` (bytes of struct sock_filter) on seccomp_data; returns the 32-bit verdict."""
    a = list(args) + [0] * (6 - len(args))
    data = struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, arch, ip, *[x & 0xFFFFFFFFFFFFFFFF for x in a])
    ins = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    A = X = 0
    mem = [0] * 16
    pc = 0
    for _ in range(100000):
        code, jt, jf, k = ins[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # LD
            mode = code & 0xE0
            A = struct.unpack_from("<I", data, k)[0] if mode == 0x20 else k if mode == 0x00 else mem[k]
        elif cls == 0x01:  # LDX
            mode = code & 0xE0
            X = k if mode == 0x00 else mem[k]
        elif cls == 0x02:
            mem[k] = A
        elif cls == 0x03:
            mem[k] = X
        elif cls == 0x04:  # ALU
            v = X if code & 0x08 else k
            op = code & 0xF0
            ops = {0x00: lambda: A + v, 0x10: lambda: A - v, 0x20: lambda: A * v, 0x40: lambda: A | v,
                   0x50: lambda: A & v, 0x60: lambda: A << (v & 31), 0x70: lambda: A >> (v & 31),
                   0xA0: lambda: A ^ v, 0x80: lambda: -A}
            A = ops[op]() & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            v = X if code & 0x08 else k
            cond = {0x10: A == v, 0x20: A > v, 0x30: A >= v, 0x40: (A & v) != 0}[op]
            pc += jt if cond else jf
        elif cls == 0x06:  # RET
            return A if code & 0x10 else k
        else:  # MISC: TAX / TXA
            if code & 0xF8 == 0x80:
                A = X
            else:
                X = A
    raise AssertionError("BPF program did not terminate")


def compile_(profile):
    return seccomp.compile_profile(profile)


def verdict(profile, name_or_nr, *args, arch=AUDIT_X86_64):
    bpf = compile_(profile)[0]
    nr = NR[name_or_nr] if isinstance(name_or_nr, str) else name_or_nr
    return run_bpf(bpf, nr, arch=arch, args=args)


def deny(names, action="SCMP_ACT_ERRNO", default="SCMP_ACT_ALLOW", **rule):
    return {"defaultAction": default, "syscalls": [{"names": list(names), "action": action, **rule}]}


# --- actions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("action,extra,expected", [
    ("SCMP_ACT_ERRNO", {}, ERRNO(EPERM)),
    ("SCMP_ACT_ERRNO", {"errnoRet": 38}, ERRNO(ENOSYS)),
    ("SCMP_ACT_KILL", {}, KILL_THREAD),
    ("SCMP_ACT_KILL_THREAD", {}, KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", {}, KILL_PROCESS),
    ("SCMP_ACT_TRAP", {}, TRAP),
    ("SCMP_ACT_TRACE", {}, TRACE(EPERM)),
    ("SCMP_ACT_TRACE", {"errnoRet": 13}, TRACE(EACCES)),
    ("SCMP_ACT_LOG", {}, LOG),
])
def test_rule_actions(action, extra, expected):
    p = deny(["mkdir"], action, **extra)
    assert verdict(p, "mkdir") == expected
    assert verdict(p, "rmdir") == ALLOW


def test_notify_action_sets_new_listener():
    p = deny(["mkdir"], "SCMP_ACT_NOTIFY")
    p["listenerPath"] = "/run/agent.sock"
    bpf, flags, notify = compile_(p)
    assert notify and flags & 8
    assert run_bpf(bpf, NR["mkdir"]) == NOTIFY


def test_default_errno_ret_is_for_the_default_action_only():
    """runc getAction: a rule's ERRNO without errnoRet is EPERM, whatever defaultErrnoRet says."""
    p = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [{"names": ["read", "write", "faccessat2"], "action": "SCMP_ACT_ALLOW"},
                      {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                      {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]}
    assert verdict(p, "getppid") == ERRNO(ENOSYS)
    assert verdict(p, "mkdir") == ERRNO(EPERM)
    assert verdict(p, "rmdir") == ERRNO(EXDEV)
    assert verdict(p, "read") == ALLOW


@pytest.mark.parametrize("default,expected", [
    ("SCMP_ACT_ERRNO", ERRNO(EPERM)), ("SCMP_ACT_KILL", KILL_THREAD), ("SCMP_ACT_KILL_PROCESS", KILL_PROCESS),
    ("SCMP_ACT_TRAP", TRAP), ("SCMP_ACT_LOG", LOG), ("SCMP_ACT_ALLOW", ALLOW), ("SCMP_ACT_TRACE", TRACE(EPERM)),
])
def test_default_actions(default, expected):
    p = {"defaultAction": default, "syscalls": [{"names": ["read", "write", "faccessat2"],
                                                 "action": "SCMP_ACT_ERRNO" if default == "SCMP_ACT_ALLOW"
                                                 else "SCMP_ACT_ALLOW"}]}
    assert verdict(p, "getppid") == expected


def test_rule_equal_to_default_is_skipped():
    p = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},  # == default: libseccomp would refuse it
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    assert verdict(p, "mkdir") == ERRNO(EPERM)
    assert verdict(p, "read") == ALLOW


def test_unknown_syscall_names_are_ignored():
    p = deny(["no_such_syscall", "mkdir", "also_not_a_syscall_2"], errnoRet=38)
    assert verdict(p, "mkdir") == ERRNO(ENOSYS)
    assert verdict(p, "rmdir") == ALLOW


@pytest.mark.parametrize("bad,pointer,text", [
    ({"defaultAction": "SCMP_ACT_NOPE"}, "/linux/seccomp/defaultAction", "unknown seccomp action"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}]}, "/linux/seccomp/syscalls/0/action",
     "unknown seccomp action"),
    ({"syscalls": [{"names": ["mkdir", ""], "action": "SCMP_ACT_ERRNO"}]}, "/linux/seccomp/syscalls/0/names/1",
     "empty string is not a valid syscall"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]}]},
     "/linux/seccomp/syscalls/0/args/0/op", "unknown seccomp operator"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "/linux/seccomp/syscalls/0/args/0/index", "0..5"),
    ({"architectures": ["SCMP_ARCH_FOO"]}, "/linux/seccomp/architectures/0", "unknown seccomp architecture"),
    ({"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"]}, "/linux/seccomp/architectures/1",
     "not supported by this libseccomp"),
    ({"flags": ["SECCOMP_FILTER_FLAG_FOO"]}, "/linux/seccomp/flags/0", "not supported"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}, "/linux/seccomp/defaultAction",
     "cannot be used as the default action"),
    ({"listenerPath": "/x", "syscalls": [{"names": ["mkdir", "sendmsg"], "action": "SCMP_ACT_NOTIFY"}]},
     "/linux/seccomp/syscalls/0", "cannot be used for the sendmsg syscall"),
])
def test_config_errors(bad, pointer, text):
    p = {"defaultAction": "SCMP_ACT_ALLOW", **bad}
    with pytest.raises(ConfigError) as ei:
        compile_(p)
    assert ei.value.pointer == pointer
    assert text in ei.value.reason


def test_first_unconditional_rule_for_a_syscall_wins():
    """libseccomp 2.5 keeps the first action of two unconditional rules (runc uses the same library)."""
    first = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}
    second = {"names": ["mkdir"], "action": "SCMP_ACT_KILL"}
    assert verdict({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [first, second]}, "mkdir") == ERRNO(EPERM)
    assert verdict({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [second, first]}, "mkdir") == KILL_THREAD


# --- argument filters ------------------------------------------------------------------------

def arg_rule(name, *conds, errno=EACCES):
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
        "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno,
        "args": [dict(index=i, op=op, value=v, valueTwo=v2) for i, op, v, v2 in conds]}]}


@pytest.mark.parametrize("op,value,value2,hits,misses", [
    ("SCMP_CMP_EQ", 0xFFFFFFFF, 0, [0xFFFFFFFF], [0, 8, 0x1FFFFFFFF, 0xFFFFFFFFFFFFFFFF]),
    ("SCMP_CMP_NE", 0, 0, [1, 0x100000000], [0]),
    ("SCMP_CMP_LT", 10, 0, [0, 9], [10, 11, 0x100000000]),
    ("SCMP_CMP_LE", 0o22, 0, [0, 0o22], [0o23, 0x100000000]),
    ("SCMP_CMP_GE", 1000000, 0, [1000000, 0xFFFFFFFFFFFFFFFF], [999999, 0]),
    ("SCMP_CMP_GT", 100, 0, [101, 0x100000000], [100, 0]),
    ("SCMP_CMP_MASKED_EQ", 0xF, 2, [2, 0x80802, 0x100000002], [1, 0x80801, 0]),
    # Docker's clone rule: no namespace flag in arg0
    ("SCMP_CMP_MASKED_EQ", 0x7E020000, 0, [0x11, 0x01200011], [0x10000011, 0x20000011, 0x00020011]),
])
def test_argument_operators(op, value, value2, hits, misses):
    p = arg_rule("personality", (0, op, value, value2))
    for v in hits:
        assert verdict(p, "personality", v) == ERRNO(EACCES), (op, hex(v))
    for v in misses:
        assert verdict(p, "personality", v) == ALLOW, (op, hex(v))


def test_conditions_on_distinct_args_are_anded():
    # deny socket(AF_INET6, SOCK_DGRAM | any flags, *)
    p = arg_rule("socket", (0, "SCMP_CMP_EQ", 10, 0), (1, "SCMP_CMP_MASKED_EQ", 0xF, 2))
    assert verdict(p, "socket", 10, 2, 0) == ERRNO(EACCES)
    assert verdict(p, "socket", 10, 0x80802, 0) == ERRNO(EACCES)
    assert verdict(p, "socket", 10, 1, 0) == ALLOW
    assert verdict(p, "socket", 2, 2, 0) == ALLOW
    assert verdict(p, "socket", 1, 2, 0) == ALLOW


def test_conditions_on_the_same_arg_are_ored_as_runc():
    """runc matchCall: two conditions on one argument index -> one rule per condition."""
    p = arg_rule("socket", (0, "SCMP_CMP_EQ", 2, 0), (0, "SCMP_CMP_EQ", 10, 0), (2, "SCMP_CMP_EQ", 0, 0))
    assert verdict(p, "socket", 2, 1, 6) == ERRNO(EACCES)
    assert verdict(p, "socket", 10, 1, 6) == ERRNO(EACCES)
    assert verdict(p, "socket", 1, 1, 5) == ALLOW
    assert verdict(p, "socket", 1, 1, 0) == ERRNO(EACCES)  # the third condition, alone
    rules, _ = seccomp.expand_rules(p, ALLOW)
    assert len(rules) == 3 and all(len(c) == 1 for _, _, c in rules)


def test_six_conditions_max():
    conds = [(i, "SCMP_CMP_EQ", i, 0) for i in range(6)]
    p = arg_rule("mkdir", *conds)
    assert verdict(p, "mkdir", 0, 1, 2, 3, 4, 5) == ERRNO(EACCES)
    assert verdict(p, "mkdir", 0, 1, 2, 3, 4, 6) == ALLOW


# --- architectures ---------------------------------------------------------------------------

def test_native_arch_only_kills_foreign_arch():
    p = deny(["getppid"])
    assert verdict(p, "getppid") == ERRNO(EPERM)
    # i386 and x32 syscalls: libseccomp's bad-arch action (KILL_THREAD)
    assert verdict(p, NR32["getpid"], arch=AUDIT_I386) == KILL_THREAD
    assert verdict(p, NR["read"] | X32) == KILL_THREAD


def test_multi_arch_rules_use_each_arch_numbers():
    p = deny(["getppid", "mkdir"])
    p["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert verdict(p, "getppid") == ERRNO(EPERM)
    assert verdict(p, NR32["getppid"], arch=AUDIT_I386) == ERRNO(EPERM)
    assert verdict(p, NR32["mkdir"], arch=AUDIT_I386) == ERRNO(EPERM)
    assert verdict(p, NR32["getpid"], arch=AUDIT_I386) == ALLOW
    assert verdict(p, NR["getppid"] | X32) == ERRNO(EPERM)
    assert verdict(p, NR["read"] | X32) == ALLOW
    # an architecture that is not in the filter
    assert verdict(p, 0, arch=AUDIT_AARCH64) == KILL_THREAD


def test_foreign_arch_only():
    p = deny(["getppid"])
    p["architectures"] = ["SCMP_ARCH_AARCH64"]  # native is always there too (libseccomp)
    assert verdict(p, "getppid") == ERRNO(EPERM)
    assert verdict(p, 173, arch=AUDIT_AARCH64) == ERRNO(EPERM)  # getppid on aarch64


# --- flags -----------------------------------------------------------------------------------

@pytest.mark.parametrize("flags,notify,expected", [
    (None, False, 4 | seccomp.FLAG_SPEC_ALLOW_IMPLIED),  # runc >= 1.2: SPEC_ALLOW by default
    ([], False, 0),
    (["SECCOMP_FILTER_FLAG_TSYNC"], False, 1),
    (["SECCOMP_FILTER_FLAG_LOG"], False, 2),
    (["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], False, 4),
    (["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], False, 0),  # only meaningful with a listener
    (["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], True, 8 | 32),
    (["SECCOMP_FILTER_FLAG_TSYNC"], True, 1 | 8 | 16),  # TSYNC + NEW_LISTENER needs TSYNC_ESRCH
    (["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"], False, 7),
    (None, True, 4 | 8 | seccomp.FLAG_SPEC_ALLOW_IMPLIED),
])
def test_flags(flags, notify, expected):
    p = deny(["mkdir"], "SCMP_ACT_NOTIFY" if notify else "SCMP_ACT_ERRNO")
    if notify:
        p["listenerPath"] = "/run/agent.sock"
    if flags is not None:
        p["flags"] = flags
    assert compile_(p)[1] == expected


def test_supported_flags_probe():
    sup = seccomp.supported_flags()
    assert set(sup) <= set(seccomp.FLAGS)
    if os.uname().machine == "x86_64":
        # every kernel this runtime supports has TSYNC and LOG (4.14)
        assert "SECCOMP_FILTER_FLAG_TSYNC" in sup and "SECCOMP_FILTER_FLAG_LOG" in sup


def test_available_actions():
    acts = seccomp.available_actions()
    assert "SCMP_ACT_ALLOW" in acts and "SCMP_ACT_ERRNO" in acts and set(acts) <= set(seccomp.ACTIONS)


# --- the -ENOSYS stub (runc patchbpf) --------------------------------------------------------

def allowlist(names, default="SCMP_ACT_ERRNO", archs=("SCMP_ARCH_X86_64",), **extra):
    p = {"defaultAction": default, "syscalls": [{"names": list(names), "action": "SCMP_ACT_ALLOW"}], **extra}
    if archs is not None:
        p["architectures"] = list(archs)
    return p


def test_stub_newer_syscalls_get_enosys():
    p = allowlist(["read", "write", "faccessat2"])  # largest: faccessat2 = 439
    assert verdict(p, "read") == ALLOW
    assert verdict(p, "fanotify_init") == ERRNO(EPERM)  # a hole below the largest: the default action
    assert verdict(p, "faccessat2") == ALLOW
    assert verdict(p, "process_madvise") == ERRNO(ENOSYS)  # 440 > 439
    assert verdict(p, 1000) == ERRNO(ENOSYS)
    # nr -1 (a tracer skipping the call) has bit 30 set: runc's stub leaves it to the filter too
    assert verdict(p, -1 & 0xFFFFFFFF) == ERRNO(EPERM)
    # x32 syscalls are not the x86_64 section's business: the filter decides (bad arch: kill)
    assert verdict(p, 1000 | X32) == KILL_THREAD


def test_stub_uses_native_arch_without_architectures():
    """runc >= 1.2 always includes the native architecture (runc 1.1 needed `architectures`)."""
    p = allowlist(["read", "write", "unshare"], archs=None)  # unshare = 272
    assert verdict(p, 273) == ERRNO(ENOSYS)
    assert verdict(p, 271) == ERRNO(EPERM)


@pytest.mark.parametrize("default,stub", [
    ("SCMP_ACT_ERRNO", True), ("SCMP_ACT_KILL", True), ("SCMP_ACT_KILL_PROCESS", True), ("SCMP_ACT_TRAP", True),
    ("SCMP_ACT_ALLOW", False), ("SCMP_ACT_LOG", False), ("SCMP_ACT_TRACE", False),
])
def test_stub_only_for_non_permissive_defaults(default, stub):
    rule_action = "SCMP_ACT_ERRNO" if default == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW"
    p = {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [{"names": ["read", "write"], "action": rule_action}]}
    v = verdict(p, 1000)
    if stub:
        assert v == ERRNO(ENOSYS)
    else:
        assert v == seccomp.action_value(default, None, "")


def test_stub_skipped_when_default_errno_is_enosys():
    with_stub = compile_(allowlist(["read", "write"], defaultErrnoRet=1))[0]
    without = compile_(allowlist(["read", "write"], defaultErrnoRet=38))[0]
    assert len(without) < len(with_stub)
    assert run_bpf(without, 1000) == ERRNO(ENOSYS)


def test_stub_per_arch_x86_i386_x32():
    p = allowlist(["read", "write", "unshare"], archs=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"))
    # x86_64: largest unshare 272
    assert verdict(p, 272) == ALLOW
    assert verdict(p, 273) == ERRNO(ENOSYS)
    assert verdict(p, 271) == ERRNO(EPERM)
    # i386: unshare = 310
    assert verdict(p, 310, arch=AUDIT_I386) == ALLOW
    assert verdict(p, 311, arch=AUDIT_I386) == ERRNO(ENOSYS)
    assert verdict(p, 309, arch=AUDIT_I386) == ERRNO(EPERM)
    # x32: the x86_64 numbers with bit 30
    assert verdict(p, 272 | X32) == ALLOW
    assert verdict(p, 273 | X32) == ERRNO(ENOSYS)
    assert verdict(p, 271 | X32) == ERRNO(EPERM)


def test_stub_x32_only():
    p = allowlist(["read", "write", "unshare"], archs=("SCMP_ARCH_X32",))
    # native x86_64 is still there (and gets the stub); x32 too
    assert verdict(p, 1 | X32) == ALLOW
    assert verdict(p, 5 | X32) == ERRNO(EPERM)
    assert verdict(p, 2000 | X32) == ERRNO(ENOSYS)
    assert verdict(p, 2000) == ERRNO(ENOSYS)


def test_other_endianness_arch_is_a_clear_error():
    """libseccomp cannot put big-endian s390x next to native x86_64 (runc fails the same way)."""
    with pytest.raises(ConfigError) as ei:
        compile_(allowlist(["read", "write"], archs=("SCMP_ARCH_S390X",)))
    assert "s390x" in ei.value.reason


def test_program_fits_the_kernel_limit():
    bpf = compile_(docker_profile())[0]
    assert 0 < len(bpf) // 8 <= 4096


# --- Docker's default profile ----------------------------------------------------------------

def docker_profile():
    with open(os.path.join(DATA, "docker-default.json")) as f:
        return json.load(f)


def test_docker_profile_is_generated_from_upstream():
    """tests/data/seccomp/docker-default.json == gen_docker_default.py(moby-default.upstream.json)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_docker_default", os.path.join(DATA, "gen_docker_default.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    with open(os.path.join(DATA, "moby-default.upstream.json")) as f:
        upstream = json.load(f)
    assert gen.resolve(upstream) == docker_profile()


@pytest.mark.parametrize("call,args,expected", [
    ("read", (), ALLOW),
    ("mkdir", (), ALLOW),
    ("chroot", (), ALLOW),                   # CAP_SYS_CHROOT is in Docker's default set
    ("ptrace", (), ALLOW),                   # minKernel 4.8
    ("unshare", (0x10000000,), ERRNO(EPERM)),
    ("mount", (), ERRNO(EPERM)),
    ("reboot", (), ERRNO(EPERM)),
    ("keyctl", (), ERRNO(EPERM)),
    ("bpf", (), ERRNO(EPERM)),
    ("setns", (), ERRNO(EPERM)),
    ("io_uring_setup", (), ERRNO(EPERM)),
    ("clone3", (), ERRNO(ENOSYS)),           # errnoRet 38 without CAP_SYS_ADMIN
    ("clone", (0x01200011,), ALLOW),         # fork-like
    ("clone", (0x10000011,), ERRNO(EPERM)),  # CLONE_NEWUSER
    ("personality", (0,), ALLOW),
    ("personality", (8,), ALLOW),
    ("personality", (0xFFFFFFFF,), ALLOW),
    ("personality", (1,), ERRNO(EPERM)),
    ("socket", (2, 1, 0), ALLOW),
    ("socket", (39, 1, 0), ALLOW),
    ("socket", (40, 1, 0), ERRNO(EPERM)),    # AF_VSOCK
    ("socket", (38, 5, 0), ERRNO(EPERM)),    # AF_ALG
    (1000, (), ERRNO(ENOSYS)),               # the stub
])
def test_docker_profile_decisions(call, args, expected):
    assert verdict(docker_profile(), call, *args) == expected


def test_docker_profile_compat_arches():
    p = docker_profile()
    assert verdict(p, NR32["getpid"], arch=AUDIT_I386) == ALLOW
    assert verdict(p, NR32["unshare"], 0x10000000, arch=AUDIT_I386) == ERRNO(EPERM)
    assert verdict(p, NR32["personality"], 0xFFFFFFFF, arch=AUDIT_I386) == ALLOW
    assert verdict(p, 2000, arch=AUDIT_I386) == ERRNO(ENOSYS)
    assert verdict(p, NR["read"] | X32) == ALLOW
    assert verdict(p, NR["unshare"] | X32) == ERRNO(EPERM)
    assert verdict(p, 0, arch=AUDIT_AARCH64) == KILL_THREAD
