"""Semantic checks of config.json (and of exec's process.json) that run after the schema has passed.

Each rule is a small function that raises ConfigError(pointer, reason). The pointer names the offending field and
the reason is one line. The rules come from security.md §3 (#7, #10, #11, #12 lexical part, #15, #16, #18, #19,
#20, #22, #32), from runc's libcontainer/configs/validate, and from MUST statements in the runtime-spec.

Only check_config's root.path rule (#10) touches the filesystem. It uses lstat and realpath and runs after every
lexical rule. All other checks are pure.

Decisions (see also the module constants):
* Mount options: an option we do not know is passed to the filesystem as mount data, as runc and the spec
  (config.md "Linux mount options") say. Contradictory options such as ro followed by rw are accepted: the last
  one wins, as in runc's parseMountOptions. So no option is rejected here.
* Relative mount destinations are rejected. runc only warns about them, and the spec deprecates them.
* A mount destination, device path or root.path may not contain a '..' component. Symlinks in mount
  destinations are resolved inside the rootfs at mount time, by the C init.
* A mount on /proc must be of type "proc", or be a bind mount whose source is "/proc". The C init must still
  check with fstatfs that the source is procfs (runc checkProcMount). Below /proc only the files lxcfs
  emulates (PROC_MOUNT_ALLOWED, runc's list) may be mount targets.
* linux.devices paths may be anywhere in the container (config-linux.md "MAY be anywhere in the container
  filesystem, notably outside of /dev"; runc creates them where asked), but not the root or /dev itself. The
  node is made through fds resolved inside the root (a symlink in the image cannot redirect it).
* Unknown capability names and unknown rlimit types are errors (runc 1.1 behaviour, crun).
* kernel.hostname as a sysctl is allowed with a uts namespace, except when the "hostname" field is also set.
  runc rejects it always, because it conflicts with that field.
"""

import os
import stat

from ociruntime.errors import ConfigError

CAPABILITIES = frozenset((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
))

RLIMITS = frozenset((
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS", "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
))

CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000
NICE_MIN, NICE_MAX = -20, 19
IOPRIO_MIN, IOPRIO_MAX = 0, 7
RT_PRIO_MIN, RT_PRIO_MAX = 1, 99       # sched_get_priority_min/max(SCHED_FIFO / SCHED_RR)
DL_RUNTIME_MIN = 1 << 10               # the kernel's SCHED_DEADLINE minimum runtime (DL_SCALE), in ns

ID_MAX = 0xFFFFFFFF          # a mapping must satisfy start + size <= ID_MAX (the kernel's u32 overflow rule)
ID_MAP_MAX_EXTENTS = 340     # the kernel's UID_GID_MAP_MAX_EXTENTS
IFNAMSIZ = 16

DEVICES_DIR = "/dev/"

# sysctls namespaced by the ipc namespace (runc validator.go), plus the fs.mqueue. prefix.
IPC_SYSCTLS = frozenset((
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
    "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
))
IPC_SYSCTL_PREFIXES = ("fs.mqueue.",)
NET_SYSCTL_PREFIXES = ("net.",)
UTS_SYSCTLS = frozenset(("kernel.hostname", "kernel.domainname"))

SECCOMP_ERRNO_ACTIONS = frozenset(("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"))

# runc checkProcMount: the only mount destinations allowed below /proc (files lxcfs emulates)
PROC_MOUNT_ALLOWED = frozenset((
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime",
    "/proc/loadavg", "/proc/slabinfo", "/proc/pressure/cpu", "/proc/pressure/io", "/proc/pressure/memory",
    "/proc/sys/kernel/ns_last_pid",
))


# --------------------------------------------------------------------------------------------- public API

def runc_leniency(doc, where="/process", quiet=False):
    """What runc accepts at run time though the spec (and our schema) would not, made explicit in place
    with one warning each (the strict view is the `check` command's): a missing process.user uid or gid
    is 0, an ioPriority without a priority has priority 0 (Go's zero values), and the letters of a
    device rule's access other than r, w, m are ignored (runc's Permissions.toSet). ``doc`` is a
    config (``where`` "/process") or a process.json (``where`` "")."""
    from ociruntime.log import log
    warn = (lambda msg: None) if quiet else log.warning
    proc = doc.get("process") if where else doc
    if isinstance(proc, dict):
        user = proc.get("user")
        if isinstance(user, dict):
            for k in ("uid", "gid"):
                if k not in user:
                    user[k] = 0
                    warn(f"{where}/user/{k} is missing: using 0, as runc does")
        io = proc.get("ioPriority")
        if isinstance(io, dict) and "class" in io and "priority" not in io:
            io["priority"] = 0
            warn(f"{where}/ioPriority/priority is missing: using 0, as runc does")
    if not where:
        return doc
    res = (doc.get("linux") or {}).get("resources") if isinstance(doc.get("linux"), dict) else None
    devs = res.get("devices") if isinstance(res, dict) else None
    for i, d in enumerate(devs if isinstance(devs, list) else ()):
        acc = d.get("access") if isinstance(d, dict) else None
        if isinstance(acc, str) and acc.strip("rwm"):
            kept = "".join(c for c in "rwm" if c in acc)
            warn(f"/linux/resources/devices/{i}/access {acc!r}: runc ignores the letters other than "
                        f"r, w, m, so does ociruntime ({kept!r})")
            d["access"] = kept
    return doc


def check_config(doc, bundle_dir, for_create=False):
    """Run every semantic rule on a schema-valid config. Raise ConfigError on the first violation.

    for_create=True also requires a process with non-empty args (runtime.md: start MUST fail without one).
    Only the root.path rule looks at the filesystem (below bundle_dir), and it runs last.
    """
    ctx = _Context(doc, bundle_dir, for_create)
    for rule in _CONFIG_RULES:
        rule(doc, ctx)


_collecting = None  # a list while collect_config runs


def collect_config(doc, bundle_dir, for_create=False, rootless=False):
    """The collect-all mode (the `check` command): every violation check_config (and check_rootless)
    would raise, in rule order, as a list of ConfigError. Same rules, same pointers and reasons: a
    rule goes on after a violation; a rule that cannot go on (the document is not schema-valid there)
    stops at what it found."""
    global _collecting
    found = []
    ctx = None
    _collecting = found
    try:
        try:
            ctx = _Context(doc, bundle_dir, for_create)
        except Exception:
            return found
        steps = []
        for rule in _CONFIG_RULES:
            if rule is _check_process_in_config and isinstance(doc.get("process"), dict):
                proc = doc["process"]
                steps += [(lambda r=r: r(proc, ("process",))) for r in _PROCESS_RULES]
                if for_create:
                    steps.append(lambda: proc.get("args") is None and
                                 _fail("process.args must contain at least one entry", "process", "args"))
                continue
            steps.append(lambda r=rule: r(doc, ctx))
        if rootless:
            steps.append(lambda: check_rootless(doc))
        for step in steps:
            try:
                step()
            except ConfigError as e:
                found.append(e)
            except Exception:
                pass  # a shape the schema rejects: reported there
    finally:
        _collecting = None
    seen, out = set(), []
    for e in found:
        if (e.pointer, e.reason) not in seen:
            seen.add((e.pointer, e.reason))
            out.append(e)
    return out


def check_process(doc):
    """Semantic rules for the process object of `exec --process` (errors name process.json)."""
    try:
        _check_process(doc, (), require_args=True)
    except ConfigError as e:
        raise ConfigError(e.pointer, e.reason, source="process.json") from None


def resolve_rootfs(doc, bundle_dir):
    """Return the absolute, symlink-free path of root.path, or raise ConfigError (security.md #10).

    A relative root.path is resolved against the bundle directory (with its own symlinks resolved, as runc
    does with chdir and getcwd) and must stay inside it. No component of the path may be a symlink, and the
    path must name a directory.
    """
    root = doc.get("root")
    path = root.get("path") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path:
        raise ConfigError("/root/path" if isinstance(root, dict) else "/root", "root.path is required")
    _no_nul(path, "/root/path", "root.path")
    if path.startswith("/"):
        full = path
    else:
        bundle = os.path.realpath(bundle_dir)
        full = os.path.join(bundle, path)
        norm = os.path.normpath(full)
        if norm != bundle and not norm.startswith(bundle.rstrip("/") + "/"):
            raise ConfigError("/root/path", f"relative root path {path!r} escapes the bundle directory {bundle!r}")
    norm = os.path.normpath(full)
    try:
        st = os.lstat(norm)
    except FileNotFoundError:
        raise ConfigError("/root/path", f"root filesystem {norm!r} does not exist") from None
    except OSError as e:
        raise ConfigError("/root/path", f"root filesystem {norm!r}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError("/root/path", f"root filesystem {norm!r} is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError("/root/path", f"root filesystem {norm!r} is not a directory")
    real = os.path.realpath(full)
    if real != norm:
        raise ConfigError("/root/path",
                          f"root filesystem {norm!r} has a symlink in its path (it resolves to {real!r})")
    return norm


# --------------------------------------------------------------------------------------------- helpers

class _Context:
    __slots__ = ("bundle_dir", "for_create", "linux", "ns")

    def __init__(self, doc, bundle_dir, for_create):
        self.bundle_dir = bundle_dir
        self.for_create = for_create
        linux = doc.get("linux")
        self.linux = linux if isinstance(linux, dict) else {}
        # namespace type -> (index, entry). Duplicates are reported by _check_namespaces.
        self.ns = {}
        for i, n in enumerate(self.linux.get("namespaces") or ()):
            if isinstance(n, dict):
                self.ns.setdefault(n.get("type"), (i, n))


def _ptr(*parts):
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _fail(reason, *parts):
    err = ConfigError(_ptr(*parts), reason)
    if _collecting is not None:
        _collecting.append(err)  # collect_config: note it and go on with the rule
        return
    raise err


def _no_nul(s, pointer, what):
    if "\x00" in s:
        raise ConfigError(pointer, f"{what} must not contain a NUL character")


def _components(path):
    return path.split("/")


def _check_abs(path, what, parts, allow_dotdot=False):
    """path must be an absolute path with no NUL and, unless allowed, no '..' component."""
    if "\x00" in path:
        _fail(f"{what} must not contain a NUL character", *parts)
    if not path.startswith("/"):
        _fail(f"{what} {path!r} must be an absolute path", *parts)
    if not allow_dotdot and ".." in _components(path):
        _fail(f"{what} {path!r} must not contain '..' components", *parts)


def _normalize(path):
    """Lexically clean an absolute path that has no '..' components: drop empty and '.' components."""
    return "/" + "/".join(c for c in path.split("/") if c not in ("", "."))


def _has_path(ns_entry):
    path = ns_entry.get("path")
    return isinstance(path, str) and path != ""


# --------------------------------------------------------------------------------------------- rules

def _check_version(doc, ctx):
    v = doc.get("ociVersion")
    if not isinstance(v, str) or v.split(".", 1)[0] != "1":
        _fail(f"unsupported ociVersion {v!r}: this runtime supports 1.x", "ociVersion")


def _check_process_in_config(doc, ctx):
    proc = doc.get("process")
    if proc is None:
        if ctx.for_create:
            _fail("process is required to create a container", "process")
        return
    _check_process(proc, ("process",), require_args=ctx.for_create)


def _check_process(proc, base, require_args):
    for rule in _PROCESS_RULES:
        rule(proc, base)
    if require_args:
        args = proc.get("args")
        if not isinstance(args, list) or not args:
            _fail("process.args must contain at least one entry", *base, "args")


def _proc_cwd(proc, base):
    cwd = proc.get("cwd")
    if not isinstance(cwd, str):
        _fail("process.cwd is required", *base, "cwd")
    _check_abs(cwd, "process.cwd", (*base, "cwd"), allow_dotdot=True)


def _proc_args(proc, base):
    args = proc.get("args")
    if args is None:
        return
    if not args:
        _fail("process.args must contain at least one entry", *base, "args")
    for i, a in enumerate(args):
        if "\x00" in a:
            _fail("process argument must not contain a NUL character", *base, "args", i)
    if args[0] == "":
        _fail("process.args[0] must not be empty", *base, "args", 0)


def _proc_env(proc, base):
    for i, e in enumerate(proc.get("env") or ()):
        name, sep, _ = e.partition("=")
        if not sep or not name:
            _fail(f"environment variable {e!r} must have the form NAME=value", *base, "env", i)
        if "\x00" in e:
            _fail("environment variable must not contain a NUL character", *base, "env", i)


def _proc_rlimits(proc, base):
    seen = {}
    for i, r in enumerate(proc.get("rlimits") or ()):
        t = r.get("type")
        if t not in RLIMITS:
            _fail(f"unknown rlimit type {t!r}", *base, "rlimits", i, "type")
        if t in seen:
            _fail(f"duplicate rlimit type {t!r} (also at index {seen[t]})", *base, "rlimits", i, "type")
        seen[t] = i
        soft, hard = r.get("soft"), r.get("hard")
        if isinstance(soft, int) and isinstance(hard, int) and soft > hard:
            _fail(f"rlimit {t}: soft limit {soft} is greater than hard limit {hard}", *base, "rlimits", i, "soft")


def _proc_capabilities(proc, base):
    caps = proc.get("capabilities")
    if not isinstance(caps, dict):
        return
    for name in CAPABILITY_SETS:
        for i, cap in enumerate(caps.get(name) or ()):
            if cap not in CAPABILITIES:
                _fail(f"unknown capability {cap!r}", *base, "capabilities", name, i)


def _proc_oom_score_adj(proc, base):
    v = proc.get("oomScoreAdj")
    if v is not None and not OOM_SCORE_ADJ_MIN <= v <= OOM_SCORE_ADJ_MAX:
        _fail(f"oomScoreAdj {v} is out of range [{OOM_SCORE_ADJ_MIN}, {OOM_SCORE_ADJ_MAX}]", *base, "oomScoreAdj")


def _proc_scheduler(proc, base):
    s = proc.get("scheduler")
    if not isinstance(s, dict):
        return
    policy = s.get("policy")
    nice = s.get("nice", 0)
    if not NICE_MIN <= nice <= NICE_MAX:
        _fail(f"scheduler.nice {nice} is out of range [{NICE_MIN}, {NICE_MAX}]", *base, "scheduler", "nice")
    if s.get("priority", 0) != 0 and policy not in ("SCHED_FIFO", "SCHED_RR"):
        _fail(f"scheduler.priority can only be set for SCHED_FIFO or SCHED_RR, not {policy}",
              *base, "scheduler", "priority")
    if policy != "SCHED_DEADLINE":
        for k in ("runtime", "deadline", "period"):
            if s.get(k, 0) != 0:
                _fail(f"scheduler.{k} can only be set for SCHED_DEADLINE, not {policy}", *base, "scheduler", k)
    if policy == "SCHED_ISO":
        _fail("SCHED_ISO is not implemented by Linux (the kernel has no such policy); use SCHED_OTHER, SCHED_BATCH "
              "or SCHED_IDLE", *base, "scheduler", "policy")
    flags = s.get("flags") or ()
    for i, f in enumerate(flags):
        if f in flags[:i]:
            _fail(f"duplicate scheduler flag {f!r}", *base, "scheduler", "flags", i)
    prio = s.get("priority", 0)
    keep = "SCHED_FLAG_KEEP_PARAMS" in flags or "SCHED_FLAG_KEEP_POLICY" in flags
    if policy in ("SCHED_FIFO", "SCHED_RR") and not keep and not RT_PRIO_MIN <= prio <= RT_PRIO_MAX:
        _fail(f"scheduler.priority {prio} is out of range [{RT_PRIO_MIN}, {RT_PRIO_MAX}] for {policy}",
              *base, "scheduler", "priority")
    if not 0 <= prio <= RT_PRIO_MAX:
        _fail(f"scheduler.priority {prio} is out of range [0, {RT_PRIO_MAX}]", *base, "scheduler", "priority")
    if keep:
        return  # the kernel takes the current policy/parameters: the rest is its call
    if policy == "SCHED_DEADLINE":
        rt, dl, per = s.get("runtime", 0), s.get("deadline", 0), s.get("period", 0)
        if rt < DL_RUNTIME_MIN:
            _fail(f"scheduler.runtime {rt} is below the kernel's minimum of {DL_RUNTIME_MIN} ns for SCHED_DEADLINE",
                  *base, "scheduler", "runtime")
        if dl < rt:
            _fail(f"scheduler.deadline {dl} must be at least scheduler.runtime ({rt}) for SCHED_DEADLINE",
                  *base, "scheduler", "deadline")
        if per and per < dl:
            _fail(f"scheduler.period {per} must be 0 or at least scheduler.deadline ({dl}) for SCHED_DEADLINE",
                  *base, "scheduler", "period")
        for k, v in (("deadline", dl), ("period", per)):
            if v >= 1 << 63:
                _fail(f"scheduler.{k} {v} is too large (the kernel refuses bit 63)", *base, "scheduler", k)


def _proc_io_priority(proc, base):
    io = proc.get("ioPriority")
    if isinstance(io, dict):
        p = io.get("priority")
        if isinstance(p, int) and not IOPRIO_MIN <= p <= IOPRIO_MAX:
            _fail(f"ioPriority.priority {p} is out of range [{IOPRIO_MIN}, {IOPRIO_MAX}]",
                  *base, "ioPriority", "priority")


def _proc_exec_cpu_affinity(proc, base):
    aff = proc.get("execCPUAffinity")
    if isinstance(aff, dict):
        from ociruntime.plan import exec_cpu_affinity
        exec_cpu_affinity(aff, _ptr(*base, "execCPUAffinity"))


_PROCESS_RULES = (_proc_cwd, _proc_args, _proc_env, _proc_rlimits, _proc_capabilities, _proc_oom_score_adj,
                  _proc_scheduler, _proc_io_priority, _proc_exec_cpu_affinity)


def _check_personality(doc, ctx):
    pers = ctx.linux.get("personality")
    if not isinstance(pers, dict):
        return
    for i, f in enumerate(pers.get("flags") or ()):
        _fail(f"unsupported personality flag {f!r}: the runtime-spec defines none", "linux", "personality",
              "flags", i)


def _check_memory_policy(doc, ctx):
    """config-linux.md "Memory policy" and set_mempolicy(2)'s EINVAL rules, before anything is spawned."""
    mp = ctx.linux.get("memoryPolicy")
    if not isinstance(mp, dict):
        return
    from ociruntime.plan import parse_id_list
    mode = mp.get("mode")
    nodes = parse_id_list(mp.get("nodes") or "", "/linux/memoryPolicy/nodes", "node")
    flags = mp.get("flags") or ()
    if mode in ("MPOL_DEFAULT", "MPOL_LOCAL") and nodes:
        _fail(f"{mode} takes no nodes, got {mp.get('nodes')!r}", "linux", "memoryPolicy", "nodes")
    if mode in ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY") and not nodes:
        _fail(f"{mode} needs at least one node", "linux", "memoryPolicy", "nodes")
    for i, f in enumerate(flags):
        if f in flags[:i]:
            _fail(f"duplicate memory policy flag {f!r}", "linux", "memoryPolicy", "flags", i)
        if f == "MPOL_F_NUMA_BALANCING" and mode not in ("MPOL_BIND", "MPOL_PREFERRED_MANY"):
            _fail(f"MPOL_F_NUMA_BALANCING needs mode MPOL_BIND or MPOL_PREFERRED_MANY, not {mode}",
                  "linux", "memoryPolicy", "flags", i)
        if f in ("MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"):
            if {"MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"} <= set(flags):
                _fail("MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
                      "linux", "memoryPolicy", "flags", i)
            if mode == "MPOL_LOCAL" or (mode == "MPOL_PREFERRED" and not nodes):
                _fail(f"{f} needs nodes (set_mempolicy(2) refuses it with local allocation)",
                      "linux", "memoryPolicy", "flags", i)



def _check_hooks(doc, ctx):
    hooks = doc.get("hooks")
    if not isinstance(hooks, dict):
        return
    for name in HOOK_NAMES:
        for i, h in enumerate(hooks.get(name) or ()):
            _check_abs(h.get("path", ""), f"{name} hook path", ("hooks", name, i, "path"), allow_dotdot=True)


def _check_mounts(doc, ctx):
    for i, m in enumerate(doc.get("mounts") or ()):
        dest = m.get("destination", "")
        _check_abs(dest, "mount destination", ("mounts", i, "destination"))
        norm = _normalize(dest)
        if norm.startswith("/proc/") and norm not in PROC_MOUNT_ALLOWED:
            _fail(f"mount destination {dest!r} is inside /proc: only /proc itself and the files lxcfs "
                  "emulates may be mount targets there", "mounts", i, "destination")
        if norm == "/proc":
            opts = m.get("options") or ()
            is_bind = "bind" in opts or "rbind" in opts
            src = m.get("source")
            if m.get("type") != "proc" and not (is_bind and isinstance(src, str) and src.startswith("/")
                                                 and ".." not in _components(src) and _normalize(src) == "/proc"):
                _fail(f"a mount on /proc must have type 'proc' (got {m.get('type')!r})", "mounts", i, "type")
        src = m.get("source")
        if isinstance(src, str):
            _no_nul(src, _ptr("mounts", i, "source"), "mount source")
        opts = m.get("options") or ()
        idmap_opt = "idmap" in opts or "ridmap" in opts
        has_maps = m.get("uidMappings") is not None or m.get("gidMappings") is not None
        if (idmap_opt or has_maps) and not (m.get("type") == "bind" or "bind" in opts or "rbind" in opts):
            # runc checkIDMapMounts: MOUNT_ATTR_IDMAP is only applied to a clone of a bind mount's source
            _fail("idmapped mounts are only supported for bind mounts (options bind or rbind)", "mounts", i,
                  "uidMappings" if m.get("uidMappings") is not None else
                  "gidMappings" if m.get("gidMappings") is not None else "options")
        for key in ("uidMappings", "gidMappings"):
            maps = m.get(key)
            if maps is not None:
                if not maps:
                    _fail(f"an idmapped mount needs at least one {key} entry", "mounts", i, key)
                _check_id_map(maps, ("mounts", i, key))
        if idmap_opt and not has_maps and "user" not in ctx.ns:
            _fail("an idmap mount needs uidMappings/gidMappings or a user namespace", "mounts", i, "options")


def _check_id_map(maps, parts):
    name = parts[-1]
    if len(maps) > ID_MAP_MAX_EXTENTS:
        _fail(f"{name} has {len(maps)} entries; the kernel allows at most {ID_MAP_MAX_EXTENTS}", *parts)
    for i, m in enumerate(maps):
        size = m.get("size", 0)
        if size == 0:
            _fail(f"{name} entry has size 0", *parts, i, "size")
        for key in ("containerID", "hostID"):
            start = m.get(key, 0)
            if start + size - 1 >= ID_MAX:
                _fail(f"{name} entry overflows: {key} {start} + size {size} exceeds {ID_MAX}", *parts, i, "size")
    for key in ("containerID", "hostID"):
        ranges = sorted((m.get(key, 0), m.get(key, 0) + m.get("size", 0), i) for i, m in enumerate(maps))
        for (s1, e1, i1), (s2, e2, i2) in zip(ranges, ranges[1:]):
            if s2 < e1:
                j, k = max(i1, i2), min(i1, i2)
                _fail(f"{name} entries {k} and {j} overlap in their {key} ranges", *parts, j, key)


def _check_namespaces(doc, ctx):
    seen = {}
    for i, n in enumerate(ctx.linux.get("namespaces") or ()):
        t = n.get("type")
        if t in seen:
            _fail(f"duplicate namespace type {t!r} (also at index {seen[t]})", "linux", "namespaces", i, "type")
        seen[t] = i
        if _has_path(n):
            _check_abs(n["path"], f"{t} namespace path", ("linux", "namespaces", i, "path"), allow_dotdot=True)


def _check_user_namespace(doc, ctx):
    linux = ctx.linux
    uid_maps, gid_maps = linux.get("uidMappings") or [], linux.get("gidMappings") or []
    user = ctx.ns.get("user")
    if user is None:
        for key, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
            if maps:
                _fail(f"linux.{key} is set but linux.namespaces has no user namespace", "linux", key)
        return
    index, entry = user
    if _has_path(entry):
        for key, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
            if maps:
                _fail(f"linux.{key} cannot be combined with joining an existing user namespace by path",
                      "linux", key)
        return
    for key, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
        if not maps:
            _fail(f"a new user namespace needs linux.{key}", "linux", "namespaces", index)
        _check_id_map(maps, ("linux", key))


def check_rootless(doc):
    """Run as an unprivileged user (euid != 0): the container needs a user namespace (runc
    validate/rootless.go); its mappings are checked by _check_user_namespace."""
    linux = doc.get("linux") if isinstance(doc.get("linux"), dict) else {}
    if not any(isinstance(n, dict) and n.get("type") == "user" for n in linux.get("namespaces") or ()):
        _fail("rootless container requires user namespaces (run as a non-root user: add a user namespace "
              "with uidMappings/gidMappings, e.g. from `spec --rootless`)", "linux", "namespaces")


def _check_uts(doc, ctx):
    for key in ("hostname", "domainname"):
        if doc.get(key) and "uts" not in ctx.ns:
            _fail(f"{key} cannot be set without a uts namespace", key)
        v = doc.get(key)
        if isinstance(v, str):
            _no_nul(v, _ptr(key), key)


def _sysctl_dotted(name):
    """runc's convertSysctlVariableToDotsSeparator: 'net/ipv4/conf/eno2.100/rp_filter' ->
    'net.ipv4.conf.eno2/100.rp_filter'. A name whose first separator is '/' has '.' and '/' swapped."""
    for ch in name:
        if ch == ".":
            return name
        if ch == "/":
            return name.translate(str.maketrans("./", "/."))
    return name


def _check_sysctl(doc, ctx):
    sysctl = ctx.linux.get("sysctl")
    if not isinstance(sysctl, dict):
        return
    for key, value in sysctl.items():
        parts = ("linux", "sysctl", key)
        _no_nul(value, _ptr(*parts), f"sysctl {key!r} value")
        name = _sysctl_dotted(key)
        components = [c.replace("/", ".") for c in name.split(".")]
        if any(c in ("", ".", "..") or "\x00" in c for c in components):
            _fail(f"invalid sysctl name {key!r}", *parts)
        if name in IPC_SYSCTLS or name.startswith(IPC_SYSCTL_PREFIXES):
            if "ipc" not in ctx.ns:
                _fail(f"sysctl {name!r} needs an ipc namespace", *parts)
        elif name.startswith(NET_SYSCTL_PREFIXES):
            if "network" not in ctx.ns:
                _fail(f"sysctl {name!r} needs a network namespace", *parts)
        elif name in UTS_SYSCTLS:
            if "uts" not in ctx.ns:
                _fail(f"sysctl {name!r} needs a uts namespace", *parts)
            if name == "kernel.hostname" and doc.get("hostname"):
                _fail("sysctl 'kernel.hostname' conflicts with the hostname field", *parts)
        else:
            _fail(f"sysctl {name!r} is not namespaced, so a container may not set it", *parts)


def _check_devices(doc, ctx):
    for i, d in enumerate(ctx.linux.get("devices") or ()):
        path = d.get("path", "")
        _check_abs(path, "device path", ("linux", "devices", i, "path"))
        if _normalize(path).rstrip("/") in ("", DEVICES_DIR.rstrip("/")):
            _fail(f"device path {path!r} must name a file, not the root or {DEVICES_DIR.rstrip('/')}",
                  "linux", "devices", i, "path")
        t = d.get("type")
        if t not in ("c", "b", "u", "p"):
            _fail(f"device type {t!r} must be one of c, b, u, p", "linux", "devices", i, "type")
        if t != "p":
            for key in ("major", "minor"):
                if key not in d:
                    _fail(f"device of type {t!r} needs {key}", "linux", "devices", i)


def _check_masked_readonly(doc, ctx):
    for key in ("maskedPaths", "readonlyPaths"):
        paths = ctx.linux.get(key) or ()
        for i, p in enumerate(paths):
            _check_abs(p, f"{key} entry", ("linux", key, i), allow_dotdot=True)
        if paths and "mount" not in ctx.ns:
            _fail(f"linux.{key} needs a mount namespace", "linux", key)


def _check_time_offsets(doc, ctx):
    if ctx.linux.get("timeOffsets") and "time" not in ctx.ns:
        _fail("linux.timeOffsets needs a time namespace", "linux", "timeOffsets")


def _check_seccomp(doc, ctx):
    sc = ctx.linux.get("seccomp")
    if not isinstance(sc, dict):
        return
    default = sc.get("defaultAction")
    if "defaultErrnoRet" in sc and default not in SECCOMP_ERRNO_ACTIONS:
        _fail(f"defaultErrnoRet cannot be used with defaultAction {default}", "linux", "seccomp", "defaultErrnoRet")
    if default == "SCMP_ACT_NOTIFY":
        _fail("SCMP_ACT_NOTIFY cannot be the default action", "linux", "seccomp", "defaultAction")
    notify = False
    for i, rule in enumerate(sc.get("syscalls") or ()):
        action = rule.get("action")
        notify = notify or action == "SCMP_ACT_NOTIFY"
        if "errnoRet" in rule and action not in SECCOMP_ERRNO_ACTIONS:
            _fail(f"errnoRet cannot be used with action {action}", "linux", "seccomp", "syscalls", i, "errnoRet")
    if notify and not sc.get("listenerPath"):
        _fail("SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath", "linux", "seccomp")
    lp = sc.get("listenerPath")
    if lp:
        _check_abs(lp, "seccomp listenerPath", ("linux", "seccomp", "listenerPath"), allow_dotdot=True)


def _valid_ifname(name, template_ok):
    """The kernel's dev_valid_name(); a rename target may be a template with one "%d" (dev_alloc_name)."""
    if not name or len(name.encode()) >= IFNAMSIZ or name in (".", ".."):
        return False
    if any(ch in name for ch in "/:\x00") or any(ch.isspace() for ch in name):
        return False
    if "%" not in name:
        return True
    at = name.index("%")
    return template_ok and name[at + 1:at + 2] == "d" and "%" not in name[at + 2:]


def _check_net_devices(doc, ctx):
    """config-linux.md "Network Devices" (and runc's validator): a network namespace to move them into,
    kernel-valid names, and no two devices that would get the same name in the container."""
    devs = ctx.linux.get("netDevices")
    if not devs:
        return
    if "network" not in ctx.ns:
        _fail("linux.netDevices needs a network namespace", "linux", "netDevices")
    targets = {}
    for host_name, d in devs.items():
        if not _valid_ifname(host_name, template_ok=False):
            _fail(f"invalid network device name {host_name!r}", "linux", "netDevices", host_name)
        new = d.get("name")  # "" counts as absent: runc's omitempty field
        if new and not _valid_ifname(new, template_ok=True):
            _fail(f"invalid network device name {new!r}", "linux", "netDevices", host_name, "name")
        target = new or host_name
        if "%" in target:
            continue  # the kernel picks a free name
        if target in targets:
            where = ("linux", "netDevices", host_name) + (("name",) if new else ())
            _fail(f"network devices {targets[target]!r} and {host_name!r} would both be named {target!r} "
                  "in the container", *where)
        targets[target] = host_name


def _check_intel_rdt(doc, ctx):
    rdt = ctx.linux.get("intelRdt")
    if not isinstance(rdt, dict):
        return
    clos = rdt.get("closID")
    if isinstance(clos, str) and clos != "/" and (clos in ("", ".", "..") or "/" in clos or "\x00" in clos):
        _fail(f"invalid intelRdt.closID {clos!r}", "linux", "intelRdt", "closID")


def check_host(doc):
    """The rules that depend on this host rather than on the document (run by create right after
    check_config, before anything is made): apparmorProfile / selinuxLabel / mountLabel need their LSM
    enabled, intelRdt needs resctrl (ociruntime/lsm.py). plan.build asks the same questions again."""
    from ociruntime import lsm
    proc = doc.get("process")
    linux = doc.get("linux") if isinstance(doc.get("linux"), dict) else {}
    lsm.intel_rdt(linux)
    if isinstance(proc, dict):
        lsm.process_labels(proc)
    lsm.mount_label(linux)
    for pointer, reason in missing_namespaces(linux):
        raise ConfigError(pointer, reason)


_NS_PROC = {"network": "net", "mount": "mnt"}
_NS_CONFIG = {"time": "CONFIG_TIME_NS, Linux >= 5.6", "cgroup": "CONFIG_CGROUPS, Linux >= 4.6",
              "user": "CONFIG_USER_NS", "network": "CONFIG_NET_NS", "pid": "CONFIG_PID_NS",
              "ipc": "CONFIG_IPC_NS", "uts": "CONFIG_UTS_NS"}


def missing_namespaces(linux, ns_dir="/proc/self/ns"):
    """(pointer, reason) of each new namespace of a type this kernel lacks (no /proc/self/ns/<type>):
    create refuses the first before anything is made (unshare would fail with a bare EINVAL)."""
    for i, n in enumerate(linux.get("namespaces") or ()):
        if not isinstance(n, dict) or n.get("path") or n.get("type") not in _NS_CONFIG:
            continue
        t = n["type"]
        name = _NS_PROC.get(t, t)
        if not os.path.exists(os.path.join(ns_dir, name)):
            yield (f"/linux/namespaces/{i}", f"this kernel has no {t} namespace ({ns_dir}/{name} is missing: "
                   f"{_NS_CONFIG[t]})")


def _check_cpu(doc, ctx):
    cpu = (ctx.linux.get("resources") or {}).get("cpu")
    if not isinstance(cpu, dict):
        return
    quota, burst = cpu.get("quota"), cpu.get("burst")
    if isinstance(quota, int) and isinstance(burst, int) and quota > 0 and burst > quota:
        _fail(f"cpu.burst {burst} is larger than cpu.quota {quota}", "linux", "resources", "cpu", "burst")


def _check_root(doc, ctx):
    resolve_rootfs(doc, ctx.bundle_dir)


# Order: lexical rules first; the filesystem rule (root.path) last.
_CONFIG_RULES = (
    _check_version,
    _check_process_in_config,
    _check_mounts,
    _check_hooks,
    _check_namespaces,
    _check_user_namespace,
    _check_uts,
    _check_sysctl,
    _check_devices,
    _check_masked_readonly,
    _check_time_offsets,
    _check_seccomp,
    _check_personality,
    _check_memory_policy,
    _check_net_devices,
    _check_intel_rdt,
    _check_cpu,
    _check_root,
)
