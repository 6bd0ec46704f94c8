"""linux.seccomp -> a BPF program, compiled in the parent with libseccomp (through the cffi shim:
csrc/shim.c oci_seccomp_compile). The init only loads it (csrc/init/seccomp.c), at runc's point in
the sequence (before dropping capabilities when noNewPrivileges is false, otherwise as late as
possible).

What runc (libcontainer/seccomp, specconv) does and we do too:

* actions: SCMP_ACT_KILL is KILL_THREAD; ERRNO and TRACE return ``errnoRet`` (EPERM when absent; a
  rule never inherits ``defaultErrnoRet``, which is for the default action only);
* a rule whose action equals the default action is skipped, unknown syscall names are skipped;
* several conditions on the *same* argument index are OR-ed (one rule per condition, runc's "old
  behaviour"), conditions on distinct indexes are AND-ed (one rule);
* ``flags`` absent: SECCOMP_FILTER_FLAG_SPEC_ALLOW when the kernel has it (runc >= 1.2); ``flags``
  present (even empty): exactly those. A flag this kernel does not have is a clear error from the init.
  TSYNC is passed on (the init is single-threaded, so it changes nothing), with TSYNC_ESRCH when there
  is a notify listener (the kernel refuses TSYNC + NEW_LISTENER otherwise); WAIT_KILLABLE_RECV only
  means something with a listener and is only passed with one;
* the -ENOSYS stub (runc patchbpf) is generated in C, in front of libseccomp's program.

SCMP_ACT_NOTIFY cannot apply to ``sendmsg``: the init hands the listener fd to the runtime with it
(runc refuses ``write`` for the same reason).
"""
import os

from ociruntime.errors import ConfigError

ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
           "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
           "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000, "SCMP_ACT_NOTIFY": 0x7FC00000}
ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_NEW_LISTENER, FLAG_TSYNC_ESRCH, FLAG_WAIT_KILLABLE_RECV = \
    1, 2, 4, 8, 16, 32
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": FLAG_TSYNC, "SECCOMP_FILTER_FLAG_LOG": FLAG_LOG,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": FLAG_SPEC_ALLOW,
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": FLAG_WAIT_KILLABLE_RECV}
#: plan-only bit (stripped by the init): SPEC_ALLOW was implied, not asked for; drop it if the kernel refuses it
FLAG_SPEC_ALLOW_IMPLIED = 1 << 31
EPERM = 1
MAX_ARGS = 6
#: the syscall the init sends the listener fd with: a notify rule on it would deadlock the init
NOTIFY_FORBIDDEN = ("sendmsg",)
ARCHS = ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
         "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
         "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
         "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64"]
#: in runtime-spec but not known to libseccomp 2.5 (the error says so)
ARCHS_UNSUPPORTED = ["SCMP_ARCH_LOONGARCH64"]
FLAG_NAMES = {v: k for k, v in FLAGS.items()}


def action_value(name, errno_ret, pointer):
    """The libseccomp action for ``name``; ERRNO/TRACE carry ``errno_ret`` (EPERM when None)."""
    if name not in ACTIONS:
        raise ConfigError(pointer, f"unknown seccomp action {name!r}")
    base = ACTIONS[name]
    if name in ERRNO_ACTIONS:
        return base | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    return base


def _arch_token(name, pointer):
    if name in ARCHS:
        return name[len("SCMP_ARCH_"):].lower()
    if name in ARCHS_UNSUPPORTED:
        raise ConfigError(pointer, f"seccomp architecture {name} is not supported by this libseccomp")
    raise ConfigError(pointer, f"unknown seccomp architecture {name!r}")


def _conditions(s, ptr):
    """[(index, op, value, valueTwo)] of one syscalls[] entry, checked."""
    out = []
    for k, a in enumerate(s.get("args") or ()):
        if a.get("op") not in OPS:
            raise ConfigError(f"{ptr}/args/{k}/op", f"unknown seccomp operator {a.get('op')!r}")
        idx = a.get("index")
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < MAX_ARGS:
            raise ConfigError(f"{ptr}/args/{k}/index", f"syscall argument index must be 0..{MAX_ARGS - 1}")
        out.append((idx, OPS[a["op"]], a.get("value", 0) & 0xFFFFFFFFFFFFFFFF,
                    a.get("valueTwo", 0) & 0xFFFFFFFFFFFFFFFF))
    return out


def expand_rules(sc, default):
    """syscalls[] -> [(name, action, [conditions])], one rule per name, as runc's matchCall adds them.
    Returns (rules, uses_notify)."""
    rules = []
    notify = False
    for i, s in enumerate(sc.get("syscalls") or ()):
        ptr = f"/linux/seccomp/syscalls/{i}"
        act = action_value(s.get("action"), s.get("errnoRet"), ptr + "/action")
        conds = _conditions(s, ptr)
        names = s.get("names") or ()
        for k, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{ptr}/names/{k}", "empty string is not a valid syscall")
        if s.get("action") == "SCMP_ACT_NOTIFY" and act != default:
            notify = notify or bool(names)
            bad = [n for n in names if n in NOTIFY_FORBIDDEN]
            if bad:
                raise ConfigError(ptr, f"SCMP_ACT_NOTIFY cannot be used for the {bad[0]} syscall "
                                       "(the container init needs it to pass the listener fd)")
        counts = {}
        for c in conds:
            counts[c[0]] = counts.get(c[0], 0) + 1
        same_index = any(n > 1 for n in counts.values())
        for name in names:
            if same_index:  # runc: each condition is a rule of its own (OR)
                rules += [(name, act, [c]) for c in conds]
            else:
                rules.append((name, act, conds))
    return rules, notify


def filter_flags(sc, notify):
    """The seccomp(2) flags for the profile (plus FLAG_SPEC_ALLOW_IMPLIED when SPEC_ALLOW was implied)."""
    names = sc.get("flags")
    if names is None:
        flags = FLAG_SPEC_ALLOW | FLAG_SPEC_ALLOW_IMPLIED
    else:
        flags = 0
        for i, f in enumerate(names):
            if f not in FLAGS:
                raise ConfigError(f"/linux/seccomp/flags/{i}", f"seccomp flag {f!r} is not supported")
            flags |= FLAGS[f]
    if notify:
        flags |= FLAG_NEW_LISTENER
        if flags & FLAG_TSYNC:
            flags |= FLAG_TSYNC_ESRCH
    else:
        flags &= ~FLAG_WAIT_KILLABLE_RECV
    return flags


def compile_profile(sc):
    """-> (bpf bytes, seccomp() flags, uses NOTIFY)"""
    default = action_value(sc.get("defaultAction"), sc.get("defaultErrnoRet"), "/linux/seccomp/defaultAction")
    if sc.get("defaultAction") == "SCMP_ACT_NOTIFY":
        raise ConfigError("/linux/seccomp/defaultAction", "SCMP_ACT_NOTIFY cannot be used as the default action")
    archs = [_arch_token(a, f"/linux/seccomp/architectures/{i}")
             for i, a in enumerate(sc.get("architectures") or ())]
    rules, notify = expand_rules(sc, default)
    flags = filter_flags(sc, notify)
    from ociruntime._shim import ffi, lib
    crules = ffi.new("struct oci_sc_rule[]", max(1, len(rules)))
    keep = []
    for i, (name, act, args) in enumerate(rules):
        cname = ffi.new("char[]", name.encode())
        keep.append(cname)
        crules[i].name = cname
        crules[i].action = act
        crules[i].nargs = len(args)
        for k, (idx, op, v1, v2) in enumerate(args):
            crules[i].args[k].index = idx
            crules[i].args[k].op = op
            crules[i].args[k].value = v1
            crules[i].args[k].value2 = v2
    carchs = [ffi.new("char[]", a.encode()) for a in archs]
    archv = ffi.new("char *[]", carchs or [ffi.NULL])
    err = ffi.new("char[]", 256)
    fd = os.memfd_create("ociruntime-seccomp", os.MFD_CLOEXEC)
    try:
        if lib.oci_seccomp_compile(fd, default, len(archs), archv, len(rules), crules, err, 256) < 0:
            raise ConfigError("/linux/seccomp", ffi.string(err).decode())
        size = os.lseek(fd, 0, os.SEEK_CUR)
        bpf = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not bpf or len(bpf) % 8 or len(bpf) // 8 > 4096:
        raise ConfigError("/linux/seccomp", f"the compiled filter has {len(bpf) // 8} instructions "
                                            "(the kernel takes at most 4096)")
    return bpf, flags, notify


# --- what this kernel supports (for `features`) ------------------------------------------------

_SECCOMP_SET_MODE_FILTER, _SECCOMP_GET_ACTION_AVAIL = 1, 2
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}
_supported = None


def supported_flags():
    """The FLAGS this kernel accepts: seccomp(SET_MODE_FILTER, flag, NULL) fails with EFAULT for a
    known flag and EINVAL for an unknown one (what libseccomp does). Falls back to all FLAGS."""
    global _supported
    if _supported is None:
        nr = _SYS_SECCOMP.get(os.uname().machine)
        if nr is None:
            return sorted(FLAGS)
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        out = []
        for name, bit in sorted(FLAGS.items()):
            # WAIT_KILLABLE_RECV is only valid together with NEW_LISTENER
            probe = bit | (FLAG_NEW_LISTENER if bit == FLAG_WAIT_KILLABLE_RECV else 0)
            rc = libc.syscall(ctypes.c_long(nr), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                              ctypes.c_long(probe), ctypes.c_void_p(None))
            if rc < 0 and ctypes.get_errno() == 14:  # EFAULT: the flags were accepted
                out.append(name)
        _supported = out
    return list(_supported)


def available_actions():
    """The ACTIONS this kernel has (/proc/sys/kernel/seccomp/actions_avail); all of them if unreadable."""
    kernel = {"kill_process": ["SCMP_ACT_KILL_PROCESS"], "kill_thread": ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"],
              "trap": ["SCMP_ACT_TRAP"], "errno": ["SCMP_ACT_ERRNO"], "user_notif": ["SCMP_ACT_NOTIFY"],
              "trace": ["SCMP_ACT_TRACE"], "log": ["SCMP_ACT_LOG"], "allow": ["SCMP_ACT_ALLOW"]}
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            avail = f.read().split()
    except OSError:
        return sorted(ACTIONS)
    return sorted(a for k in avail for a in kernel.get(k, ()))
