"""Config -> plan: everything resolved to numbers and checked paths, encoded for ociruntime-init.

Pure functions (no syscalls except reading host facts handed in), so they are unit-tested without
root. The binary layout mirrors csrc/plan.h.
"""
import os
from ociruntime.lean import struct

from ociruntime.errors import ConfigError

# --- csrc/plan.h ---------------------------------------------------------------------------------
MAGIC = b"OCIP"
VERSION = 1
(OP_FDS, OP_NS_JOIN, OP_NS_NEW, OP_TIMENS, OP_OOM_SCORE_ADJ, OP_ROOTFS, OP_MOUNT, OP_DEVICE, OP_SYMLINK,
 OP_MASK, OP_READONLY, OP_HOSTNAME, OP_DOMAINNAME, OP_SYSCTL, OP_RLIMIT, OP_CAPS, OP_USER, OP_PROCESS,
 OP_HOOK, OP_MKDIR, OP_CONSOLE, OP_SECCOMP) = range(1, 23)
OP_SCHED, OP_IOPRIO, OP_CPU_AFFINITY, OP_PERSONALITY, OP_MEMPOLICY = range(23, 28)
AFFINITY_RESET = 1
OP_LSM_ATTR, OP_MOUNT_LABEL = 28, 29
LSM_APPARMOR, LSM_SELINUX = 1, 2
LSM_F_FAKE_PROC = 1
OP_MOUNT_IDMAP = 30
OP_NETDEV = 32
OP_TRACE = 35
OP_CGROUP2_FALLBACK = 36
CG2_MASK_MISSING = 1
OP_EXEC_TARGET = 33
OP_TEST_REMOUNT_DELAY = 34
TEST_REMOUNT_DELAY_ENV = "OCIRUNTIME_TEST_REMOUNT_DELAY_US"  # TEST ONLY: see plan.h
ROOTFS_READONLY, ROOTFS_NO_PIVOT, ROOTFS_NO_MOUNTNS = 1, 2, 4
MOUNT_KIND_FS, MOUNT_KIND_BIND, MOUNT_KIND_RBIND = 0, 1, 2
MOUNT_COPYUP = 0x100
MOUNT_CLEARS, MOUNT_CLR_SHIFT = 0x200, 16
MOUNT_FROM_RUNTIME = 0x400
MOUNT_IDMAP_IN_ROOT = 0x800
IDMAP_RECURSIVE = 1
UMASK_UNSET = 0xFFFFFFFF
USER_SETGROUPS = 1
PROC_NNP, PROC_MKCWD, PROC_EXEC, PROC_RELAY_TTY = 1, 2, 4, 8
HOOK_CREATE_CONTAINER, HOOK_START_CONTAINER = 1, 2
HOOK_F_PROCESS_ENV = 0x100
DEVICE_HOSTNODE = 2

SYNC_GO, SYNC_USERMAP_PLS, SYNC_USERMAP_ACK, SYNC_PID, SYNC_HOOKS_PLS, SYNC_HOOKS_ACK, SYNC_READY, SYNC_RUN = \
    range(0x40, 0x48)
SYNC_SECCOMP_FD, SYNC_SECCOMP_ACK = 0x48, 0x49
SYNC_NETDEV_FD, SYNC_NETDEV_ACK = 0x4A, 0x4B
SYNC_TRACE = 0x50
SYNC_ERROR = 0x4F
SYNC_WARNING = 0x4E
SYNC_TIMENS_PLS, SYNC_TIMENS_ACK = 0x4C, 0x4D
SYNC_IDMAP_FD, SYNC_IDMAP_ACK = 0x51, 0x52

# --- kernel constants ----------------------------------------------------------------------------
CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, \
    CLONE_NEWNET = 0x80, 0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000
NAMESPACES = {"pid": CLONE_NEWPID, "network": CLONE_NEWNET, "mount": CLONE_NEWNS, "ipc": CLONE_NEWIPC,
              "uts": CLONE_NEWUTS, "user": CLONE_NEWUSER, "cgroup": CLONE_NEWCGROUP, "time": CLONE_NEWTIME}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = \
    1, 2, 4, 8, 16, 32, 64, 128
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC, MS_SILENT = \
    256, 1024, 2048, 4096, 8192, 16384, 32768
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_I_VERSION, MS_STRICTATIME, MS_LAZYTIME = 1 << 21, 1 << 23, 1 << 24, 1 << 25

MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 1, 2, 4, 8
MOUNT_ATTR__ATIME, MOUNT_ATTR_RELATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME = 0x70, 0, 0x10, 0x20
MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOSYMFOLLOW = 0x80, 0x200000

# option -> (set, clear): runc parseMountOptions
MOUNT_FLAGS = {
    "async": (0, MS_SYNCHRONOUS), "atime": (0, MS_NOATIME), "bind": (MS_BIND, 0), "defaults": (0, 0),
    "dev": (0, MS_NODEV), "diratime": (0, MS_NODIRATIME), "dirsync": (MS_DIRSYNC, 0), "exec": (0, MS_NOEXEC),
    "iversion": (MS_I_VERSION, 0), "lazytime": (MS_LAZYTIME, 0), "loud": (0, MS_SILENT),
    "mand": (MS_MANDLOCK, 0), "noatime": (MS_NOATIME, 0), "nodev": (MS_NODEV, 0),
    "nodiratime": (MS_NODIRATIME, 0), "noexec": (MS_NOEXEC, 0), "noiversion": (0, MS_I_VERSION),
    "nolazytime": (0, MS_LAZYTIME), "nomand": (0, MS_MANDLOCK), "norelatime": (0, MS_RELATIME),
    "nostrictatime": (0, MS_STRICTATIME), "nosuid": (MS_NOSUID, 0), "nosymfollow": (MS_NOSYMFOLLOW, 0),
    "rbind": (MS_BIND | MS_REC, 0), "relatime": (MS_RELATIME, 0), "remount": (MS_REMOUNT, 0),
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY), "silent": (MS_SILENT, 0), "strictatime": (MS_STRICTATIME, 0),
    "suid": (0, MS_NOSUID), "sync": (MS_SYNCHRONOUS, 0), "symfollow": (0, MS_NOSYMFOLLOW),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC, "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# recursive mount attributes (mount_setattr AT_RECURSIVE): option -> (set, clear)
RECURSIVE_ATTRS = {
    "rro": (MOUNT_ATTR_RDONLY, 0), "rrw": (0, MOUNT_ATTR_RDONLY),
    "rnosuid": (MOUNT_ATTR_NOSUID, 0), "rsuid": (0, MOUNT_ATTR_NOSUID),
    "rnodev": (MOUNT_ATTR_NODEV, 0), "rdev": (0, MOUNT_ATTR_NODEV),
    "rnoexec": (MOUNT_ATTR_NOEXEC, 0), "rexec": (0, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME), "rnorelatime": (0, MOUNT_ATTR__ATIME),
    "rnoatime": (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME), "ratime": (0, MOUNT_ATTR__ATIME),
    "rstrictatime": (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME), "rnostrictatime": (0, MOUNT_ATTR__ATIME),
    "rnosymfollow": (MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, MOUNT_ATTR_NOSYMFOLLOW),
}
# tmpcopyup (runc's extension): the tmpfs starts with a copy of the directory; idmap/ridmap (config.md):
# an idmapped bind mount (ridmap: the mapping on every mount of an rbind tree), never passed to mount(2)
EXTENSIONS = {"tmpcopyup", "idmap", "ridmap"}
MOUNT_OPTIONS = sorted(set(MOUNT_FLAGS) | set(PROPAGATION) | set(RECURSIVE_ATTRS) | EXTENSIONS)

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
        "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
        "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE"]
CAP_BITS = {name: i for i, name in enumerate(CAPS)}

RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
           "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
           "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
           "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}

# process.scheduler: sched_setattr(2) (linux/sched.h). SCHED_ISO (4) is reserved but Linux never implemented it.
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_IDLE": 5,
                  "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
# process.ioPriority: ioprio_set(2) (linux/ioprio.h)
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
# linux.personality: personality(2) (linux/personality.h PER_LINUX, PER_LINUX32)
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
# linux.memoryPolicy: set_mempolicy(2) (linux/mempolicy.h)
MPOL_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3, "MPOL_LOCAL": 4,
              "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MPOL_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14, "MPOL_F_STATIC_NODES": 1 << 15}
MAX_CPU = 65535  # highest CPU / NUMA node id accepted in a list (runc's sanity limit is 64Ki too)

S_IFCHR, S_IFBLK, S_IFIFO = 0o020000, 0o060000, 0o010000
DEFAULT_DEVICES = [("/dev/null", 1, 3), ("/dev/random", 1, 8), ("/dev/full", 1, 7), ("/dev/tty", 5, 0),
                   ("/dev/zero", 1, 5), ("/dev/urandom", 1, 9)]


# the mount flags a user namespace locks on a mount it did not make (the kernel's MNT_LOCK_*), in the
# order of the plan's MOUNT_CLR_SHIFT bits
LOCKABLE_FLAGS = (MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME)


def parse_mount_options(options):
    """-> (flags, clear, propagation list, attr_set, attr_clr, data list, extensions set)"""
    flags = clear = attr_set = attr_clr = 0
    prop, data, ext = [], [], set()
    for o in options or ():
        if o in MOUNT_FLAGS:
            s, c = MOUNT_FLAGS[o]
            flags = (flags | s) & ~c
            clear = (clear | c) & ~s
        elif o in PROPAGATION:
            prop.append(PROPAGATION[o])
        elif o in RECURSIVE_ATTRS:
            s, c = RECURSIVE_ATTRS[o]
            attr_set = (attr_set | s) & ~c if s else attr_set & ~c
            attr_clr |= c
            if c == MOUNT_ATTR__ATIME and s:
                attr_set = (attr_set & ~MOUNT_ATTR__ATIME) | s
        elif o in EXTENSIONS:
            ext.add(o)
        else:
            data.append(o)
    return flags, clear, prop, attr_set, attr_clr, data, ext


def parse_id_list(text, pointer, what="CPU"):
    """A Linux list ("0-3,7") -> sorted list of ids; "" -> []. ConfigError(pointer) on anything else."""
    if not isinstance(text, str):
        raise ConfigError(pointer, f"{what} list must be a string")
    ids = set()
    if text == "":
        return []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or not lo.isascii() or (sep and (not hi.isdigit() or not hi.isascii())):
            raise ConfigError(pointer, f"invalid {what} list {text!r}: {part!r} is not a number or a range "
                                       "N-M (want e.g. \"0-3,7\")")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a > b:
            raise ConfigError(pointer, f"invalid {what} list {text!r}: range {part!r} ends before it starts")
        if b > MAX_CPU:
            raise ConfigError(pointer, f"invalid {what} list {text!r}: {what} {b} is above {MAX_CPU}")
        ids.update(range(a, b + 1))
    return sorted(ids)


def id_mask_words(ids):
    """ids -> the kernel's bitmap as u64 words (bit n of word n // 64), as sched_setaffinity(2) and
    set_mempolicy(2) read it on a 64-bit kernel."""
    words = [0] * ((max(ids) // 64 + 1) if ids else 0)
    for i in ids:
        words[i // 64] |= 1 << (i % 64)
    return words


def caps_mask(names, pointer):
    m = 0
    for i, n in enumerate(names or ()):
        if n not in CAP_BITS:
            raise ConfigError(f"{pointer}/{i}", f"unknown capability {n!r}")
        m |= 1 << CAP_BITS[n]
    return m


# --- encoding ------------------------------------------------------------------------------------
class Encoder:
    def __init__(self):
        self.records = []

    @staticmethod
    def s(v):
        b = v.encode() if isinstance(v, str) else bytes(v)
        if b"\0" in b:
            raise ValueError("string with NUL")
        return struct.pack("=I", len(b) + 1) + b + b"\0"

    def sv(self, vs):
        return struct.pack("=I", len(vs)) + b"".join(self.s(v) for v in vs)

    def add(self, op, *parts):
        payload = b"".join(parts)
        self.records.append(struct.pack("=II", op, len(payload)) + payload)

    def bytes(self):
        return MAGIC + struct.pack("=II", VERSION, len(self.records)) + b"".join(self.records)


def _u32(*v):
    return struct.pack("=" + "I" * len(v), *v)


def _i32(*v):
    return struct.pack("=" + "i" * len(v), *v)


def _u64(*v):
    return struct.pack("=" + "Q" * len(v), *v)


def _i64(*v):
    return struct.pack("=" + "q" * len(v), *v)


def _nul_free(value, pointer):
    if isinstance(value, str) and "\0" in value:
        raise ConfigError(pointer, "contains a NUL byte")
    return value


class Plan:
    """What create needs besides the encoded bytes."""

    def __init__(self):
        self.data = b""
        self.new_ns = 0
        self.joins = []
        self.uid_map = self.gid_map = None
        self.rootfs = ""
        self.host_root_uid = self.host_root_gid = 0
        self.hooks = {}
        self.terminal = False
        self.cgroup_mounts = False
        # idmapped mounts: one user namespace per distinct mapping, in fd slots idmap_base + index;
        # each entry: (("maps", uid tuples, gid tuples) or ("path", userns path), JSON pointer of a mount)
        self.idmap_userns = []
        # idmapped binds whose source is inside the root (MOUNT_IDMAP_IN_ROOT): config index ->
        # (index into idmap_userns, recursive); the init hands their trees to the runtime (SYNC_IDMAP_FD)
        self.idmap_in_root = {}
        self.net_devices = {}  # host name -> name in the container (may be a "%d" template)


def _hostnode_maps(p, new_ns):
    """A new user namespace with its maps in the config, made by a runtime that is root in the initial
    user namespace: the config's devices are made by stage-1 outside the user namespace (DEVICE_HOSTNODE,
    crun's way) with the owner mapped to host ids. (uid map, gid map), else None: bind the host's node."""
    if not (new_ns & CLONE_NEWUSER) or os.geteuid() != 0:
        return None
    from ociruntime.state import running_in_userns
    if running_in_userns():
        return None
    return p.uid_map, p.gid_map


def _host_owner(maps, uid, gid, i):
    hu, hg = host_id(maps[0], uid), host_id(maps[1], gid)
    if hu is None:
        raise ConfigError(f"/linux/devices/{i}/uid", f"{uid} is not mapped in the user namespace")
    if hg is None:
        raise ConfigError(f"/linux/devices/{i}/gid", f"{gid} is not mapped in the user namespace")
    return hu, hg


def host_id(maps, cid):
    for m in maps or ():
        if m["containerID"] <= cid < m["containerID"] + m["size"]:
            return m["hostID"] + cid - m["containerID"]
    return None


# Fields of config.md / config-linux.md this runtime does not apply yet: refused with a clear error,
# never silently ignored (an empty value counts as absent).
NOT_IMPLEMENTED = [
]
# apparmorProfile, selinuxLabel, mountLabel: applied where the LSM is enabled, refused (with the pointer and
# "not enabled on this host") where it is not: ociruntime/lsm.py. intelRdt: refused by validate.py (resctrl).


# Fields that have no meaning on Linux: refused, never ignored.
NOT_LINUX = [
    ("/process/commandLine", ("process", "commandLine"),
     "process.commandLine is Windows-only (config.md) and not applicable on Linux: use process.args"),
]


def refuse_unimplemented(config, what="config"):
    for pointer, (sect, key), reason in NOT_LINUX:
        v = (config.get(sect) or {}).get(key) if sect != "process" or what == "config" else config.get(key)
        if v not in (None, "", {}, []):
            raise ConfigError(pointer if what == "config" else "/" + key, reason)
    for pointer, (sect, key), name in NOT_IMPLEMENTED:
        v = (config.get(sect) or {}).get(key) if sect != "process" or what == "config" else config.get(key)
        if v not in (None, "", {}, []):
            raise ConfigError(pointer if what == "config" else "/" + key,
                              f"{name} are not supported by this runtime yet" if name.endswith("s")
                              else f"{name} is not supported by this runtime yet")


def _maps_key(maps):
    return tuple((m["containerID"], m["hostID"], m["size"]) for m in maps)


def build(config, bundle, fds, opts, cgroup_paths=None):
    """config: validated dict; bundle: absolute dir; fds: dict(sync, fifo, console, close_from);
    opts: dict(no_pivot, rootless_euid, in_userns: the runtime itself runs in a non-initial user
    namespace, e.g. rootless podman's; rootless_cgroups: the rootless cgroup manager, whose container
    may have no cgroup of its own); cgroup_paths: {hierarchy dir name: host path} for cgroup mounts."""
    refuse_unimplemented(config)
    from ociruntime import lsm
    e = Encoder()
    p = Plan()
    linux = config.get("linux") or {}
    proc = config.get("process") or {}
    lsm.intel_rdt(linux)
    mlabel = lsm.mount_label(linux)
    labels = lsm.process_labels(proc)
    e.add(OP_FDS, _u32(fds["sync"]), _i32(fds.get("fifo", -1), fds.get("console", -1)), _u32(fds["close_from"]))

    # namespaces
    new = 0
    for i, ns in enumerate(linux.get("namespaces") or ()):
        flag = NAMESPACES[ns["type"]]
        if ns.get("path"):
            p.joins.append((flag, ns["path"]))
            e.add(OP_NS_JOIN, _u32(flag), e.s(_nul_free(ns["path"], f"/linux/namespaces/{i}/path")))
        else:
            new |= flag
    p.new_ns = new
    e.add(OP_NS_NEW, _u32(new))
    # runc: "running in a user namespace, or the config asks for one" (userns.RunningInUserNS()): a
    # runtime that is itself in a non-initial user namespace (rootless podman) may not mknod either
    userns = bool(new & CLONE_NEWUSER) or any(f == CLONE_NEWUSER for f, _ in p.joins) or bool(opts.get("in_userns"))
    if new & CLONE_NEWUSER:
        p.uid_map = linux.get("uidMappings") or []
        p.gid_map = linux.get("gidMappings") or []
        p.host_root_uid = host_id(p.uid_map, 0)
        p.host_root_gid = host_id(p.gid_map, 0)
        if p.host_root_uid is None:
            p.host_root_uid = 0
        if p.host_root_gid is None:
            p.host_root_gid = 0
    devs = linux.get("netDevices")
    if devs:
        # moved by the runtime (ociruntime/netdev.py) through a netlink socket stage-1 opens in the namespace
        p.net_devices = {host: (d or {}).get("name") or host for host, d in devs.items()}
        e.add(OP_NETDEV, _u32(len(devs)))
    offs = linux.get("timeOffsets")
    if offs:
        mono = offs.get("monotonic") or {}
        boot = offs.get("boottime") or {}
        e.add(OP_TIMENS, _i64(mono.get("secs", 0), mono.get("nanosecs", 0), boot.get("secs", 0),
                              boot.get("nanosecs", 0)))
    if "oomScoreAdj" in proc:
        e.add(OP_OOM_SCORE_ADJ, _i32(proc["oomScoreAdj"]))

    # rootfs
    root = config["root"]
    rootfs = root["path"]
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    rootfs = os.path.realpath(rootfs)
    p.rootfs = rootfs
    prop = linux.get("rootfsPropagation")
    rprop = PROPAGATION[prop] | MS_REC if prop else MS_SLAVE | MS_REC
    rflags = (ROOTFS_READONLY if root.get("readonly") else 0) | (ROOTFS_NO_PIVOT if opts.get("no_pivot") else 0)
    has_mountns = bool(new & CLONE_NEWNS) or any(f == CLONE_NEWNS for f, _ in p.joins)
    if not has_mountns:
        # the mounts land below the rootfs in the runtime's own namespace; delete unmounts them
        rflags |= ROOTFS_NO_MOUNTNS
    e.add(OP_ROOTFS, e.s(rootfs), _u32(rprop, rflags))
    if mlabel:
        # for what the init mounts itself: the masked-directory tmpfs and the label of the mqueue root
        e.add(OP_MOUNT_LABEL, e.s(mlabel))
    delay = os.environ.get(TEST_REMOUNT_DELAY_ENV)
    if delay and delay.isdigit():
        e.add(OP_TEST_REMOUNT_DELAY, _u32(min(int(delay), 1000000)))

    # mounts
    dev_bind = False
    root_prefixes = {rootfs, os.path.normpath(os.path.join(bundle, root["path"]))}
    for i, m in enumerate(config.get("mounts") or ()):
        ptr = f"/mounts/{i}"
        dst = _strip_root(_nul_free(m["destination"], ptr + "/destination"), root_prefixes)
        typ = m.get("type") or ""
        opts_ = m.get("options") or []
        flags, clear, props, aset, aclr, data, ext = parse_mount_options(opts_)
        src = m.get("source") or ""
        is_bind = typ == "bind" or bool(flags & MS_BIND)
        if is_bind:
            if not os.path.isabs(src):
                src = os.path.join(bundle, src)
            # a source inside the container's root may exist only once earlier mounts are made: the
            # init opens it then, in the container's mount namespace, resolved inside the root (runc)
            in_root = _strip_root(src, root_prefixes)
            if in_root != src:
                src = rootfs.rstrip("/") + (in_root if in_root != "/" else "")  # the init resolves it in the root
            elif not os.path.exists(src):
                raise ConfigError(ptr + "/source", f"bind mount source {src} does not exist")
            kind = MOUNT_KIND_RBIND if flags & MS_REC else MOUNT_KIND_BIND
            if os.path.normpath(dst) == "/dev":
                dev_bind = True
            fs = ""
        elif typ == "cgroup":
            cgns = bool(new & CLONE_NEWCGROUP) or any(f == CLONE_NEWCGROUP for f, _ in p.joins)
            if _pure_v2(cgroup_paths):
                _add_cgroup2_mount(e, src, dst, flags, data, props, cgns, cgroup_paths[""],
                                   bool(opts.get("rootless_cgroups")))
            else:
                _add_cgroup_mount(e, dst, flags, props, new, cgroup_paths, mlabel)
            continue
        else:
            kind = MOUNT_KIND_FS
            fs = typ
            if fs not in lsm.NO_CONTEXT_FS:
                data = [lsm.format_mount_label(",".join(data), mlabel)] if mlabel else data
            if "tmpcopyup" in ext:
                if typ != "tmpfs":
                    raise ConfigError(ptr + "/options", "tmpcopyup needs a tmpfs mount")
                kind |= MOUNT_COPYUP
        if is_bind and clear:
            # runc >= 1.2: a bind mount that lists any flag gets exactly those, a clearing one included
            kind |= MOUNT_CLEARS
            for bit, f in enumerate(LOCKABLE_FLAGS):
                if clear & f:
                    kind |= 1 << (MOUNT_CLR_SHIFT + bit)
        idmap = _idmap_userns(p, m, ptr, is_bind, ext, linux, new)
        if idmap is not None and src.startswith(rootfs.rstrip("/") + "/"):
            # its source may exist only once earlier mounts are made: cloned by the init in the
            # container's mount namespace, the mapping set by the runtime (runc's parent does this too)
            kind |= MOUNT_IDMAP_IN_ROOT
            p.idmap_in_root[i] = (idmap, "ridmap" in ext)
        if is_bind and idmap is None and new & CLONE_NEWUSER and not opts.get("rootless_euid") and \
                src.startswith("/") and \
                not src.startswith(rootfs.rstrip("/") + "/") and \
                not _searchable_by(src, p.host_root_uid, p.host_root_gid):
            # runc >= 1.1: a source the container's root may not look up is opened by the runtime
            kind |= MOUNT_FROM_RUNTIME
        e.add(OP_MOUNT, e.s(src), e.s(dst), e.s(fs), e.s(",".join(data)), _u32(flags & ~MS_REMOUNT, kind),
              _u64(aset, aclr), _u32(len(props), *props))
        if idmap is not None:
            base = fds.get("idmap_base") or max(v for k, v in fds.items() if k != "close_from") + 1
            e.add(OP_MOUNT_IDMAP, _i32(base + idmap),
                  _u32(IDMAP_RECURSIVE if "ridmap" in ext else 0, i))

    # devices (runc: skipped when /dev is a bind mount; and never made on the rootfs's own disk when
    # there is no mount namespace to put a /dev tmpfs in)
    if has_mountns and not dev_bind:
        devs = {}
        for path, major, minor in DEFAULT_DEVICES:
            devs[path] = (S_IFCHR | 0o666, major, minor, 0, 0)
        hostnodes = _hostnode_maps(p, new)
        made_outside = set()
        for i, d in enumerate(linux.get("devices") or ()):
            t = {"c": S_IFCHR, "u": S_IFCHR, "b": S_IFBLK, "p": S_IFIFO}[d["type"]]
            mode = d.get("fileMode", 0o666)
            uid, gid = d.get("uid", 0), d.get("gid", 0)
            if hostnodes:
                uid, gid = _host_owner(hostnodes, uid, gid, i)
                made_outside.add(d["path"])
            devs[d["path"]] = (t | (mode & 0o7777), d.get("major", 0), d.get("minor", 0), uid, gid)
        for path, (mode, major, minor, uid, gid) in devs.items():
            how = DEVICE_HOSTNODE if path in made_outside else 1 if userns else 0
            e.add(OP_DEVICE, e.s(path), _u32(mode, major, minor, uid, gid, how))
        links = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                 ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "/dev/core"))
        e.add(OP_SYMLINK, e.s("pts/ptmx"), e.s("/dev/ptmx"))
        for target, link in links:
            e.add(OP_SYMLINK, e.s(target), e.s(link))

    cwd = proc.get("cwd") or "/"
    if has_mountns:
        e.add(OP_MKDIR, e.s(cwd), _u32(0o755))
    for path in linux.get("readonlyPaths") or ():
        e.add(OP_READONLY, e.s(path))
    for path in linux.get("maskedPaths") or ():
        e.add(OP_MASK, e.s(path))
    if config.get("hostname"):
        e.add(OP_HOSTNAME, e.s(config["hostname"]))
    if config.get("domainname"):
        e.add(OP_DOMAINNAME, e.s(config["domainname"]))
    for k, v in (linux.get("sysctl") or {}).items():
        e.add(OP_SYSCTL, e.s(_nul_free(k, "/linux/sysctl")), e.s(_nul_free(v, f"/linux/sysctl/{k}")))
    # rootless (euid != 0): the runtime denies setgroups in the new user namespace (or newgidmap
    # decides), so the init never calls setgroups; asking for additionalGids is an error, as in runc's
    # setupUser (refused here, before anything is made)
    if opts.get("rootless_euid") and (proc.get("user") or {}).get("additionalGids"):
        raise ConfigError("/process/user/additionalGids", "cannot set any additional groups in a rootless container")
    _process_records(e, proc, PROC_RELAY_TTY if opts.get("relay_tty") else 0,
                     setgroups=not opts.get("rootless_euid"))
    _lsm_records(e, labels)
    # execCPUAffinity "is not applicable to the container's init process" (config.md): it is validated
    # here and applies to `exec`; the init's affinity is reset after the cgroup join, as runc does
    exec_cpu_affinity(proc.get("execCPUAffinity"))
    _affinity_record(e, None)
    _container_records(e, linux)
    hooks = config.get("hooks") or {}
    for kind, name in ((HOOK_CREATE_CONTAINER, "createContainer"), (HOOK_START_CONTAINER, "startContainer")):
        for h in hooks.get(name) or ():
            # without an env of its own a hook in the container gets the process's environment (runc);
            # an explicit one, even [], is used as it is
            flags = HOOK_F_PROCESS_ENV if h.get("env") is None else 0
            e.add(OP_HOOK, _u32(kind | flags), _i32(h.get("timeout", 0)), e.s(h["path"]), e.sv(h.get("args") or []),
                  e.sv(h.get("env") or []))
    p.hooks = hooks
    p.seccomp_notify = _seccomp_record(e, linux.get("seccomp"))
    p.seccomp = linux.get("seccomp")
    p.terminal = bool(proc.get("terminal"))
    if opts.get("trace"):
        e.add(OP_TRACE, _u32(0))  # the init reports its steps (csrc/init/trace.c)
    p.data = e.bytes()
    return p


def _searchable_by(path, uid, gid):
    """Whether uid/gid (the container's root, seen from the host) may look path up: search permission
    on every directory above it, by the owner, group or other bits (its capabilities do not reach
    files of ids outside its user namespace)."""
    cur = "/"
    for comp in os.path.normpath(path).split("/")[1:-1]:
        try:
            st = os.stat(cur)
        except OSError:
            return True  # let the mount report it
        bits = st.st_mode >> 6 if st.st_uid == uid else st.st_mode >> 3 if st.st_gid == gid else st.st_mode
        if not bits & 1:
            return False
        cur = os.path.join(cur, comp)
    try:
        st = os.stat(cur)
    except OSError:
        return True
    bits = st.st_mode >> 6 if st.st_uid == uid else st.st_mode >> 3 if st.st_gid == gid else st.st_mode
    return bool(bits & 1)


def _strip_root(path, prefixes):
    """runc (pathrs.LexicallyStripRoot): a path written with the host's root.path in front means the
    path inside the root."""
    norm = os.path.normpath(path)
    for pre in prefixes:
        if norm == pre:
            return "/"
        if norm.startswith(pre.rstrip("/") + "/"):
            return norm[len(pre.rstrip("/")):]
    return path
# the init's step names (csrc/init/*.c step()) -> the config field that led to them
_STEP_POINTERS = {
    "wait: cgroup placement (GO)": "/linux/cgroupsPath", "cpu affinity": "/process/execCPUAffinity",
    "oom_score_adj": "/process/oomScoreAdj", "idmapped mounts": "/mounts", "open namespaces": "/linux/namespaces",
    "unshare user": "/linux/namespaces", "wait: uid/gid maps": "/linux/uidMappings", "unshare": "/linux/namespaces",
    "network devices": "/linux/netDevices", "time offsets": "/linux/timeOffsets", "rootfs": "/root/path",
    "mkdir cwd": "/process/cwd", "createContainer hooks": "/hooks/createContainer", "pivot_root": "/root/path",
    "rootfs propagation": "/linux/rootfsPropagation", "read-only root": "/root/readonly",
    "console": "/process/terminal", "hostname": "/hostname", "no_new_privs": "/process/noNewPrivileges",
    "scheduler and io priority": "/process/scheduler", "personality": "/linux/personality",
    "memory policy": "/linux/memoryPolicy", "seccomp": "/linux/seccomp", "bounding set": "/process/capabilities/bounding",
    "credentials": "/process/user", "capabilities": "/process/capabilities", "cwd": "/process/cwd",
    "lookup executable": "/process/args/0", "execve": "/process/args/0", "exec fifo wait": None,
}


def step_pointer(config, name, index, detail):
    """The JSON pointer of the config field behind one of the init's steps (for the trace and errors)."""
    linux = config.get("linux") or {}
    proc = config.get("process") or {}
    if name == "mount":
        best, at = None, -1
        for i, m in enumerate(config.get("mounts") or ()):
            d = os.path.normpath(m.get("destination") or "/")
            if (detail == d or detail.startswith(d.rstrip("/") + "/")) and len(d) >= at:
                best, at = f"/mounts/{i}", len(d)
        return best
    if name == "device":
        for i, d in enumerate(linux.get("devices") or ()):
            if d.get("path") == detail:
                return f"/linux/devices/{i}"
        return None
    if name == "setns":
        for i, n in enumerate(linux.get("namespaces") or ()):
            if n.get("path") == detail:
                return f"/linux/namespaces/{i}/path"
        return "/linux/namespaces"
    if name == "rlimit" and index >= 0:
        return f"/process/rlimits/{index}"
    if name == "sysctl":
        return "/linux/sysctl/" + detail.replace("~", "~0").replace("/", "~1")
    if name == "readonly path" and index >= 0:
        return f"/linux/readonlyPaths/{index}"
    if name == "masked path" and index >= 0:
        return f"/linux/maskedPaths/{index}"
    if name == "lsm labels":
        return "/process/selinuxLabel" if proc.get("selinuxLabel") else "/process/apparmorProfile"
    return _STEP_POINTERS.get(name)


def _idmap_userns(p, m, ptr, is_bind, ext, linux, new_ns):
    """Index (into p.idmap_userns) of the user namespace an idmapped mount uses, or None. As runc: the
    mount's own uidMappings/gidMappings; with only the idmap/ridmap option, the container's user
    namespace mapping (the same mapping for a new one, the namespace itself for a joined one)."""
    uid_m, gid_m = m.get("uidMappings"), m.get("gidMappings")
    if uid_m is None and gid_m is None and not ext & {"idmap", "ridmap"}:
        return None
    where = ptr + ("/uidMappings" if uid_m is not None else "/gidMappings" if gid_m is not None else "/options")
    if not is_bind:
        raise ConfigError(where, "idmapped mounts are only supported for bind mounts (options bind or rbind)")
    if uid_m is not None or gid_m is not None:
        for k, v in (("uidMappings", uid_m), ("gidMappings", gid_m)):
            if not v:
                raise ConfigError(f"{ptr}/{k}", "an idmapped mount needs both uidMappings and gidMappings, "
                                  "each with at least one entry")
        key = ("maps", _maps_key(uid_m), _maps_key(gid_m))
    elif new_ns & CLONE_NEWUSER:
        key = ("maps", _maps_key(linux.get("uidMappings") or ()), _maps_key(linux.get("gidMappings") or ()))
    else:
        path = next((n.get("path") for n in linux.get("namespaces") or () if n["type"] == "user"), None)
        if not path:
            raise ConfigError(where, "an idmap mount without uidMappings/gidMappings needs a user namespace")
        key = ("path", path)
    for idx, (k, _) in enumerate(p.idmap_userns):
        if k == key:
            return idx
    p.idmap_userns.append((key, ptr))
    return len(p.idmap_userns) - 1


def _process_records(e, proc, extra_flags, setgroups=True):
    """rlimits, capabilities, user, console and the process itself: shared by create and exec."""
    cwd = proc.get("cwd") or "/"
    for i, r in enumerate(proc.get("rlimits") or ()):
        e.add(OP_RLIMIT, _u32(RLIMITS[r["type"]]), _u64(r["soft"], r["hard"]))
    caps = proc.get("capabilities") or {}  # absent: no capabilities at all, as runc
    e.add(OP_CAPS, _u64(*(caps_mask(caps.get(k), f"/process/capabilities/{k}")
                          for k in ("bounding", "effective", "permitted", "inheritable", "ambient"))))
    user = proc.get("user") or {}
    groups = user.get("additionalGids") or []
    umask = user.get("umask")
    e.add(OP_USER, _u32(user.get("uid", 0), user.get("gid", 0), UMASK_UNSET if umask is None else umask,
                        USER_SETGROUPS if setgroups else 0, len(groups), *groups))
    env = [_nul_free(v, f"/process/env/{i}") for i, v in enumerate(proc.get("env") or ())]
    args = [_nul_free(v, f"/process/args/{i}") for i, v in enumerate(proc.get("args") or ())]
    pflags = (PROC_NNP if proc.get("noNewPrivileges") else 0) | extra_flags
    e.add(OP_PROCESS, e.s(cwd), e.sv(args), e.sv(env), _u32(pflags))
    if proc.get("terminal"):
        size = proc.get("consoleSize") or {}
        e.add(OP_CONSOLE, _u32(size.get("height", 0), size.get("width", 0)))
    sched = proc.get("scheduler")
    if sched:
        policy = sched.get("policy")
        if policy not in SCHED_POLICIES:  # validate.py says why (SCHED_ISO); never encode a guess
            raise ConfigError("/process/scheduler/policy", f"unsupported scheduler policy {policy!r}")
        flags = 0
        for f in sched.get("flags") or ():
            flags |= SCHED_FLAGS[f]
        e.add(OP_SCHED, _u32(SCHED_POLICIES[policy]), _i32(sched.get("nice", 0)), _u32(sched.get("priority", 0)),
              _u64(flags, sched.get("runtime", 0), sched.get("deadline", 0), sched.get("period", 0)))
    io = proc.get("ioPriority")
    if io:
        e.add(OP_IOPRIO, _u32(IOPRIO_CLASSES[io["class"]], io["priority"]))


def exec_cpu_affinity(aff, pointer="/process/execCPUAffinity"):
    """execCPUAffinity -> (initial CPU list or None, final CPU list or None); "" counts as absent."""
    aff = aff or {}
    initial = parse_id_list(aff["initial"], pointer + "/initial") if aff.get("initial") else None
    final = parse_id_list(aff["final"], pointer + "/final") if aff.get("final") else None
    return initial or None, final or None


def _affinity_record(e, final):
    """final: CPU ids to set after the cgroup join, or None: reset to every CPU (runc >= 1.3.6: the
    process must not inherit the runtime's own affinity; the kernel clamps to the cgroup's cpuset)."""
    if final:
        words = id_mask_words(final)
        e.add(OP_CPU_AFFINITY, _u32(0, len(words)), _u64(*words))
    else:
        e.add(OP_CPU_AFFINITY, _u32(AFFINITY_RESET, 0))


def _container_records(e, linux):
    """linux.personality and linux.memoryPolicy: the container's, for its init and every exec."""
    pers = linux.get("personality")
    if pers:
        e.add(OP_PERSONALITY, _u32(PERSONALITY_DOMAINS[pers["domain"]]))
    mp = linux.get("memoryPolicy")
    if mp:
        flags = 0
        for f in mp.get("flags") or ():
            flags |= MPOL_FLAGS[f]
        words = id_mask_words(parse_id_list(mp.get("nodes") or "", "/linux/memoryPolicy/nodes", "node"))
        e.add(OP_MEMPOLICY, _u32(MPOL_MODES[mp["mode"]], flags, len(words)), _u64(*words))


def _lsm_records(e, labels):
    for kind, flags, procroot, subpath, value in labels:
        e.add(OP_LSM_ATTR, _u32(kind, flags), e.s(procroot), e.s(subpath), e.s(value))


def _seccomp_record(e, sc):
    if not sc:
        return False
    from ociruntime import seccomp
    bpf, flags, notify = seccomp.compile_profile(sc)
    e.add(OP_SECCOMP, _u32(flags, len(bpf)), bpf)
    return notify


def build_exec(proc, fds, joins, seccomp=None, linux=None, cpu_affinity=(None, None), labels=None,
               setgroups=True, relay_tty=False, trace=False):
    """Plan for `exec`: join the container's namespaces (user first, done by the init), no rootfs work.
    linux: the container's personality and memoryPolicy (from its state); cpu_affinity: (initial, final)
    CPU lists of exec_cpu_affinity(); the initial one is the caller's business (set on the spawning thread).
    labels: the container's apparmorProfile/selinuxLabel, used where proc sets none (as runc).
    setgroups=False: the container's user namespace denies setgroups (rootless): it is not called."""
    for pointer, (sect, key), reason in NOT_LINUX:
        if sect == "process" and proc.get(key) not in (None, "", {}, []):
            raise ConfigError("/" + key, reason, source="process")
    for pointer, (sect, key), name in NOT_IMPLEMENTED:
        if sect == "process" and proc.get(key) not in (None, "", {}, []):
            raise ConfigError("/" + key, f"{name} {'are' if name.endswith('s') else 'is'} not supported by "
                              "this runtime yet", source="process")
    e = Encoder()
    e.add(OP_FDS, _u32(fds["sync"]), _i32(fds.get("fifo", -1), fds.get("console", -1)), _u32(fds["close_from"]))
    for flag, path in joins:
        e.add(OP_NS_JOIN, _u32(flag), e.s(path))
    if fds.get("target"):
        e.add(OP_EXEC_TARGET, _i32(*fds["target"]))
    e.add(OP_NS_NEW, _u32(0))
    if "oomScoreAdj" in proc:
        e.add(OP_OOM_SCORE_ADJ, _i32(proc["oomScoreAdj"]))
    _process_records(e, proc, PROC_EXEC | (PROC_RELAY_TTY if relay_tty else 0), setgroups=setgroups)
    from ociruntime import lsm
    _lsm_records(e, lsm.process_labels(proc, "", "process.json", defaults=labels))
    initial, final = cpu_affinity
    if final or not initial:  # only an initial list: the affinity stays as the cgroup join left it (config.md)
        _affinity_record(e, final)
    _container_records(e, linux or {})
    _seccomp_record(e, seccomp)
    if trace:
        e.add(OP_TRACE, _u32(0))
    return e.bytes()


def _pure_v2(cgroup_paths):
    return bool((cgroup_paths or {}).get("")) and len(cgroup_paths) == 1


def _add_cgroup2_mount(e, src, dst, flags, data, props, cgns, cgroup2_path, rootless_cgroups):
    """runc mountCgroupV2 (pure v2): a fresh cgroup2 mount, with or without a cgroup namespace (without
    one it shows the whole hierarchy); where the kernel refuses it (EPERM: a user namespace in the host's
    cgroup namespace; EBUSY: the destination is already that cgroup2 mount, e.g. under a bound /sys) the
    init binds /sys/fs/cgroup instead, or with a cgroup namespace the container's own cgroup (the rootless
    manager's container may have none: then the destination is masked by a read-only tmpfs)."""
    e.add(OP_MOUNT, e.s(src or "cgroup"), e.s(dst), e.s("cgroup2"), e.s(",".join(data)), _u32(flags, MOUNT_KIND_FS),
          _u64(0, 0), _u32(len(props), *props))
    e.add(OP_CGROUP2_FALLBACK, e.s(cgroup2_path if cgns else "/sys/fs/cgroup"),
          _u32(CG2_MASK_MISSING if rootless_cgroups else 0))


def _add_cgroup_mount(e, dst, flags, props, new_ns, cgroup_paths, mlabel=""):
    """runc's cgroup mount on v1: with a cgroup namespace mount the hierarchies themselves; without one, a
    tmpfs with each of the container's own cgroup directories bind-mounted read-only."""
    base = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME | MS_NOATIME | MS_STRICTATIME)
    paths = cgroup_paths or {}
    from ociruntime.lsm import format_mount_label
    e.add(OP_MOUNT, e.s("tmpfs"), e.s(dst), e.s("tmpfs"), e.s(format_mount_label("mode=755", mlabel)),
          _u32(base, MOUNT_KIND_FS),
          _u64(0, 0), _u32(len(props), *props))
    for name, host in paths.items():  # in the host's mount order, as runc
        if not name:
            continue  # the unified hierarchy of a hybrid host: runc 1.1 does not mount it either
        sub = os.path.join(dst, name)
        if new_ns & CLONE_NEWCGROUP:
            # in its own cgroup namespace the container gets the hierarchies themselves (rooted at its
            # cgroup by the namespace), as runc mounts them
            ctrls = "name=systemd" if name == "systemd" else name
            source = ctrls[5:] if ctrls.startswith("name=") else "cgroup"
            e.add(OP_MOUNT, e.s(source), e.s(sub), e.s("cgroup"), e.s(ctrls), _u32(flags, MOUNT_KIND_FS),
                  _u64(0, 0), _u32(0))
            continue
        e.add(OP_MOUNT, e.s(host), e.s(sub), e.s(""), e.s(""), _u32(flags | MS_BIND, MOUNT_KIND_BIND),
              _u64(0, 0), _u32(0))
        if "," in name:
            for part in name.split(","):
                e.add(OP_SYMLINK, e.s(name), e.s(os.path.join(dst, part)))
