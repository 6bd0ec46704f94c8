"""Device access rules: the rule-set emulator shared by both hierarchies, the v1 writer
(devices.allow / devices.deny) and the v2 eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE).

Semantics follow runc (opencontainers/cgroups devices/): the rules are folded into a model of a
devices cgroup (default allow or deny, plus exceptions); v1 is moved from its current state to the
target with the fewest disruptive writes (a "deny all" first when the mode must change), and v2
gets a program whose blocks are the target's exceptions in (major, minor, type) order.
"""
import os
from ociruntime.lean import struct

from ociruntime.cgroups import files
from ociruntime.cgroups.resources import WILDCARD
from ociruntime.errors import OciError

R, W, M = 1, 2, 4
_PERM_BITS = {"r": R, "w": W, "m": M}


def perms_to_set(s):
    v = 0
    for ch in s:
        v |= _PERM_BITS.get(ch, 0)
    return v


def set_to_perms(v):
    return ("r" if v & R else "") + ("w" if v & W else "") + ("m" if v & M else "")


def _fmt(n):
    return "*" if n == WILDCARD else str(n)


def rule_string(t, major, minor, perms):
    """The devices.allow/deny line (runc Rule.CgroupString)."""
    return f"{t} {_fmt(major)}:{_fmt(minor)} {perms}"


def _sort_key(meta):
    t, major, minor = meta
    return (major, minor, t)


class Emulator:
    """A devices cgroup: default_allow (black-list mode) or not (white-list), and exceptions
    {(type, major, minor): permission bits}."""

    def __init__(self, default_allow=False, rules=None):
        self.default_allow = default_allow
        self.rules = dict(rules or {})

    def __eq__(self, other):
        return (isinstance(other, Emulator) and self.default_allow == other.default_allow
                and self.rules == other.rules)

    def __repr__(self):
        return f"Emulator(default_allow={self.default_allow}, rules={self.rules})"

    def _add(self, meta, perms):
        self.rules[meta] = self.rules.get(meta, 0) | perms

    def _rm(self, meta, perms):
        t, major, minor = meta
        # cgroup v1 silently ignores a request to punch a hole into a wildcard exception; runc
        # refuses it instead, so that nobody believes in a restriction that is not there.
        for partial in ((t, WILDCARD, minor), (t, major, WILDCARD), (t, WILDCARD, WILDCARD)):
            if partial == meta:
                continue
            have = self.rules.get(partial, 0)
            if have & perms:
                raise OciError(
                    f"requested rule [{rule_string(t, major, minor, set_to_perms(perms))}] not supported by "
                    f"devices cgroupv1 (cannot punch hole in existing wildcard rule "
                    f"[{rule_string(*partial, set_to_perms(have))}])")
        left = self.rules.get(meta, 0) & ~perms
        if left:
            self.rules[meta] = left
        else:
            self.rules.pop(meta, None)

    def apply(self, t, major, minor, access, allow):
        if t == "a":
            self.default_allow = bool(allow)
            self.rules = {}
            return
        if t not in ("b", "c"):
            raise OciError(f"cannot add rule with non-cgroup type {t!r}")
        meta = (t, major, minor)
        perms = perms_to_set(access)
        if allow == self.default_allow:
            # allow in allow-all mode / deny in deny-all mode: remove an exception
            self._rm(meta, perms)
        else:
            self._add(meta, perms)

    @classmethod
    def from_rules(cls, rules):
        emu = cls(default_allow=False)
        for t, major, minor, access, allow in rules:
            emu.apply(t, major, minor, access, allow)
        return emu

    @classmethod
    def from_list(cls, text):
        """From devices.list: "a *:* rwm" means allow-all (its exceptions cannot be read back)."""
        emu = cls(default_allow=False)
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            fields = line.replace(":", " ").split()
            if len(fields) != 4:
                raise OciError(f"malformed devices.list rule {line}")
            t, major, minor, perms = fields
            if t == "a":
                emu.default_allow = True
                emu.rules = {}
                continue
            if t not in ("b", "c"):
                raise OciError(f"unknown device type {t!r}")
            major = WILDCARD if major == "*" else int(major)
            minor = WILDCARD if minor == "*" else int(minor)
            if emu.default_allow:
                continue
            emu._add((t, major, minor), perms_to_set(perms))
        return emu

    def transition(self, target):
        """The writes [(type, major, minor, perms, allow)] that take this cgroup to ``target``."""
        out = []
        old = self.rules
        if self.default_allow or self.default_allow != target.default_allow:
            out.append(("a", WILDCARD, WILDCARD, "rwm", target.default_allow))
            old = {}
        for meta in sorted(old, key=_sort_key):
            dropped = old[meta] & ~target.rules.get(meta, 0)
            if dropped:
                out.append((*meta, set_to_perms(dropped), target.default_allow))
        for meta in sorted(target.rules, key=_sort_key):
            gained = target.rules[meta] & ~old.get(meta, 0)
            if gained:
                out.append((*meta, set_to_perms(gained), not target.default_allow))
        return out

    def clean_rules(self):
        """The rules that build this state from a deny-all cgroup (runc Emulator.Rules)."""
        return Emulator(default_allow=False).transition(self)


# --- cgroup v1 ----------------------------------------------------------------------------------

def set_v1(path, rules):
    current = Emulator.from_list(files.read(path, "devices.list"))
    target = Emulator.from_rules(rules)
    for t, major, minor, perms, allow in current.transition(target):
        files.write(path, "devices.allow" if allow else "devices.deny", rule_string(t, major, minor, perms))
    after = Emulator.from_list(files.read(path, "devices.list"))
    if not target.default_allow and after != target:
        raise OciError("resulting devices cgroup doesn't precisely match target")
    if target.default_allow != after.default_allow:
        raise OciError("resulting devices cgroup doesn't match target mode")


# --- cgroup v2: the eBPF program ------------------------------------------------------------------

# struct bpf_cgroup_dev_ctx { u32 access_type (type | access << 16); u32 major; u32 minor; }
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2

# opcodes
_LDXW = 0x61         # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54      # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74      # BPF_ALU | BPF_RSH | BPF_K
_MOV32_K = 0xb4      # BPF_ALU | BPF_MOV | BPF_K
_MOV32_X = 0xbc      # BPF_ALU | BPF_MOV | BPF_X
_JNE_K = 0x55        # BPF_JMP | BPF_JNE | BPF_K
_JNE_X = 0x5d        # BPF_JMP | BPF_JNE | BPF_X
_EXIT = 0x95         # BPF_JMP | BPF_EXIT


def _insn(code, dst=0, src=0, off=0, imm=0):
    return [code, dst, src, off, imm]


def _s32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def device_filter(rules):
    """The program for ``rules`` as a list of [code, dst, src, off, imm]; offsets resolved."""
    emu = Emulator.from_rules(rules)
    clean = emu.clean_rules()
    default_allow = emu.default_allow
    prog = [
        _insn(_LDXW, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),   # r2 = type
        _insn(_LDXW, 3, 1, 0), _insn(_RSH32_K, 3, imm=16),       # r3 = access
        _insn(_LDXW, 4, 1, 4),                                     # r4 = major
        _insn(_LDXW, 5, 1, 8),                                     # r5 = minor
    ]
    for idx, (t, major, minor, perms, allow) in enumerate(clean):
        if t == "a":
            if idx != 0 or allow != default_allow:
                raise OciError(f"[internal error] bad wildcard device rule at {idx}")
            continue
        if allow == default_allow:
            raise OciError(f"[internal error] no-op device rule at {idx}")
        block = []
        btype = BPF_DEVCG_DEV_CHAR if t == "c" else BPF_DEVCG_DEV_BLOCK
        acc = 0
        for ch in perms:
            acc |= {"r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE, "m": BPF_DEVCG_ACC_MKNOD}[ch]
        if major > 0xFFFFFFFF or minor > 0xFFFFFFFF:
            raise OciError(f"invalid device number {major}:{minor}")
        block.append(_insn(_JNE_K, 2, imm=btype))
        if acc != (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD):
            block += [_insn(_MOV32_X, 1, 3), _insn(_AND32_K, 1, imm=acc), _insn(_JNE_X, 1, 3)]
        if major != WILDCARD:
            block.append(_insn(_JNE_K, 4, imm=_s32(major)))
        if minor != WILDCARD:
            block.append(_insn(_JNE_K, 5, imm=_s32(minor)))
        block += [_insn(_MOV32_K, 0, imm=1 if allow else 0), _insn(_EXIT)]
        # every conditional jump of the block goes to the next block
        n = len(block)
        for i, ins in enumerate(block):
            if ins[0] in (_JNE_K, _JNE_X):
                ins[3] = n - i - 1
        prog += block
    prog += [_insn(_MOV32_K, 0, imm=1 if default_allow else 0), _insn(_EXIT)]
    return prog


def encode(prog):
    return b"".join(struct.pack("<BBhi", c, (d & 0xF) | ((s & 0xF) << 4), off, _s32(imm))
                    for c, d, s, off, imm in prog)


def _can_skip_bpf_error(rules):
    """runc canSkipEBPFError: in a user namespace, or when every rule allows rwm."""
    try:
        with open("/proc/self/uid_map") as f:
            if f.read().split() != ["0", "0", "4294967295"]:
                return True
    except OSError:
        pass
    return all(allow and perms_to_set(access) == R | W | M for _, _, _, access, allow in rules)


def set_v2(path, rules):
    """Load the program and attach it to the cgroup (BPF_F_ALLOW_MULTI), replacing the program(s)
    attached earlier (update)."""
    data = encode(device_filter(rules))
    from ociruntime._shim import ffi, lib
    import resource
    old_memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (OSError, ValueError):
        old_memlock = None  # kernels >= 5.11 charge BPF memory to the memory cgroup instead
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        log = ffi.new("char[]", 65536)
        buf = ffi.from_buffer(data)
        pfd = lib.oci_bpf_dev_prog_load(buf, len(data) // 8, log, 65536)
        if pfd < 0:
            if _can_skip_bpf_error(rules):
                return
            detail = ffi.string(log).decode(errors="replace").strip()
            raise OciError(f"failed to call BPF_PROG_LOAD: {files.strerror(-pfd)}" + (f": {detail}" if detail else ""))
        try:
            rc = lib.oci_bpf_dev_prog_attach(pfd, dfd, 1)
        finally:
            os.close(pfd)
        if rc < 0:
            if _can_skip_bpf_error(rules):
                return
            raise OciError(f"failed to call BPF_PROG_ATTACH: {files.strerror(-rc)}")
    finally:
        os.close(dfd)
        if old_memlock is not None:
            # back as it was: the init (spawned after this at create) must not inherit an unlimited
            # RLIMIT_MEMLOCK the container never asked for (runc raises it in its own process only)
            resource.setrlimit(resource.RLIMIT_MEMLOCK, old_memlock)
