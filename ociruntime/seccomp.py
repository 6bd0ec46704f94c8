"""linux.seccomp -> a BPF program, compiled in the parent with libseccomp (through the cffi shim).
The init only loads it (SECCOMP_SET_MODE_FILTER), at runc's point in the sequence."""
import os

from ociruntime.errors import ConfigError

ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
           "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
           "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000, "SCMP_ACT_NOTIFY": 0x7FC00000}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}
FLAG_NEW_LISTENER = 8
EPERM = 1
ARCHS = ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
         "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
         "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
         "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64"]


def action_value(name, errno_ret, default_errno, pointer):
    if name not in ACTIONS:
        raise ConfigError(pointer, f"unknown seccomp action {name!r}")
    base = ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        return base | ((errno_ret if errno_ret is not None else default_errno) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return base | ((errno_ret if errno_ret is not None else default_errno) & 0xFFFF)
    return base


def compile_profile(sc):
    """-> (bpf bytes, seccomp() flags, uses NOTIFY)"""
    default_errno = sc.get("defaultErrnoRet", EPERM)
    default = action_value(sc["defaultAction"], sc.get("defaultErrnoRet"), EPERM, "/linux/seccomp/defaultAction")
    flags = 0
    for i, f in enumerate(sc.get("flags") or ()):
        if f not in FLAGS:
            raise ConfigError(f"/linux/seccomp/flags/{i}", f"seccomp flag {f!r} is not supported")
        flags |= FLAGS[f]
    archs = []
    for i, a in enumerate(sc.get("architectures") or ()):
        if a not in ARCHS:
            raise ConfigError(f"/linux/seccomp/architectures/{i}", f"unknown seccomp architecture {a!r}")
        archs.append(a[len("SCMP_ARCH_"):].lower())
    rules = []
    notify = sc["defaultAction"] == "SCMP_ACT_NOTIFY"
    for i, s in enumerate(sc.get("syscalls") or ()):
        ptr = f"/linux/seccomp/syscalls/{i}"
        act = action_value(s["action"], s.get("errnoRet"), default_errno, ptr + "/action")
        notify |= s["action"] == "SCMP_ACT_NOTIFY"
        args = []
        for k, a in enumerate(s.get("args") or ()):
            if a["op"] not in OPS:
                raise ConfigError(f"{ptr}/args/{k}/op", f"unknown seccomp operator {a['op']!r}")
            args.append((a["index"], OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0)))
        if len(args) > 6:
            raise ConfigError(f"{ptr}/args", "at most 6 argument conditions")
        for name in s.get("names") or ():
            rules.append((name, act, args))
    if notify:
        flags |= FLAG_NEW_LISTENER
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
        os.lseek(fd, 0, os.SEEK_SET)
        bpf = os.read(fd, size)
    finally:
        os.close(fd)
    return bpf, flags, notify
