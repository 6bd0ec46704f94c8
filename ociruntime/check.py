"""`ociruntime check`: why a bundle will fail or is unsafe, before anything runs.

Runs nothing and changes nothing (no state dir, cgroup, mount, process). It reuses create's own code
(config.load, schema, validate, plan.build, lsm, netdev.check_host), so what it calls an error is what
create fails on. Four kinds of findings:

* ``schema`` / ``semantic`` (errors): every violation at once (schema.all_errors,
  validate.collect_config), not only the first;
* ``host`` (errors): what this host cannot do for this config (a cgroup file or controller that is
  missing, a capability outside the bounding set, an rlimit above the hard limit without
  CAP_SYS_RESOURCE, an idmapped mount on a filesystem without idmap support, the time namespace, an
  LSM that is not enabled, a seccomp action or flag the kernel lacks, a systemd slice without systemd,
  devices that do not exist);
* ``security`` (warnings, with a ``risk`` of high/medium/low): the escape classes of security.md;
* ``compat`` (warnings, only with --strict): what create accepts for runc compatibility.

The JSON document (``--format json``, FORMAT_VERSION 1) is documented in README.md ("Checking a
bundle") and pinned by tests/unit/test_check.py.
"""
import os

from ociruntime.errors import ConfigError, OciError

FORMAT_VERSION = 1
SPEC_BASE = "https://github.com/opencontainers/runtime-spec/blob/v1.3.0/"
ERROR, WARNING, INFO = "error", "warning", "info"

# pointer prefix -> section of the runtime-spec text (the longest prefix wins)
SPEC_SECTIONS = {
    "": "config.md", "/ociVersion": "config.md#specification-version", "/root": "config.md#root",
    "/mounts": "config.md#mounts", "/process": "config.md#process",
    "/process/user": "config.md#user", "/process/capabilities": "config.md#linux-process",
    "/process/rlimits": "config.md#posix-process", "/process/noNewPrivileges": "config.md#linux-process",
    "/process/apparmorProfile": "config.md#linux-process", "/process/selinuxLabel": "config.md#linux-process",
    "/process/scheduler": "config.md#posix-process", "/process/ioPriority": "config.md#posix-process",
    "/hostname": "config.md#hostname", "/domainname": "config.md#domainname",
    "/hooks": "config.md#posix-platform-hooks", "/annotations": "config.md#annotations",
    "/linux": "config-linux.md", "/linux/namespaces": "config-linux.md#namespaces",
    "/linux/uidMappings": "config-linux.md#user-namespace-mappings",
    "/linux/gidMappings": "config-linux.md#user-namespace-mappings",
    "/linux/devices": "config-linux.md#devices", "/linux/resources": "config-linux.md#control-groups",
    "/linux/resources/devices": "config-linux.md#allowed-device-list",
    "/linux/resources/memory": "config-linux.md#memory", "/linux/resources/cpu": "config-linux.md#cpu",
    "/linux/resources/blockIO": "config-linux.md#block-io", "/linux/resources/hugepageLimits":
    "config-linux.md#huge-page-limits", "/linux/resources/pids": "config-linux.md#pids",
    "/linux/cgroupsPath": "config-linux.md#cgroups-path", "/linux/sysctl": "config-linux.md#sysctl",
    "/linux/seccomp": "config-linux.md#seccomp", "/linux/rootfsPropagation":
    "config-linux.md#rootfs-mount-propagation", "/linux/maskedPaths": "config-linux.md#masked-paths",
    "/linux/readonlyPaths": "config-linux.md#readonly-paths", "/linux/mountLabel": "config-linux.md#mount-label",
    "/linux/timeOffsets": "config-linux.md#offset-for-time-namespace", "/linux/netDevices":
    "config-linux.md#network-devices", "/linux/intelRdt": "config-linux.md#intelrdt",
    "/linux/personality": "config-linux.md#personality", "/linux/memoryPolicy": "config-linux.md#memory-policy",
}


class Finding:
    __slots__ = ("severity", "code", "pointer", "message", "hint", "spec", "category", "risk")

    def __init__(self, severity, code, pointer, message, hint, category, risk=None, spec=None):
        self.severity, self.code, self.pointer, self.message = severity, code, pointer or "/", message
        self.hint, self.category, self.risk = hint, category, risk
        self.spec = spec or spec_link(self.pointer)

    def as_dict(self):
        d = {"severity": self.severity, "code": self.code, "pointer": self.pointer, "message": self.message,
             "hint": self.hint, "spec": self.spec, "category": self.category}
        if self.risk:
            d["risk"] = self.risk
        return d

    def __repr__(self):
        return f"<{self.severity} {self.code} {self.pointer}: {self.message}>"


class Report:
    def __init__(self, bundle, strict):
        self.bundle, self.strict = bundle, strict
        self.findings = []
        self.plan = None

    def add(self, *a, **kw):
        self.findings.append(Finding(*a, **kw))

    @property
    def errors(self):
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self):
        return [f for f in self.findings if f.severity == WARNING]

    def codes(self, severity=None):
        return sorted({f.code for f in self.findings if severity in (None, f.severity)})

    def exit_status(self):
        if self.errors:
            return 1
        if self.warnings:
            return 1 if self.strict else 2
        return 0

    def as_dict(self):
        d = {"version": FORMAT_VERSION, "bundle": self.bundle, "strict": self.strict,
             "summary": {"errors": len(self.errors), "warnings": len(self.warnings),
                         "info": len(self.findings) - len(self.errors) - len(self.warnings)},
             "findings": [f.as_dict() for f in self.findings]}
        if self.plan is not None:
            d["plan"] = self.plan
        return d


def spec_link(pointer):
    best = ""
    for prefix in SPEC_SECTIONS:
        if (pointer == prefix or pointer.startswith(prefix + "/")) and len(prefix) > len(best):
            best = prefix
    return SPEC_BASE + SPEC_SECTIONS[best]


def _ptr(*parts):
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


# ------------------------------------------------------------------------------------------ the check

def _without_nulls(v):
    """config.load's reading of a JSON null in an object (absent), on a document loaded with keep_null."""
    if isinstance(v, dict):
        return {k: _without_nulls(c) for k, c in v.items() if c is not None}
    if isinstance(v, list):
        return [_without_nulls(c) for c in v]
    return v


def check_bundle(bundle=".", strict=False, want_plan=False, systemd=False, euid=None):
    """-> Report. Nothing is run or changed; the parts that need no root work without it."""
    from ociruntime import config as cfgmod, schema, validate
    euid = os.geteuid() if euid is None else euid
    rep = Report(os.path.abspath(bundle), strict)
    if not os.path.isdir(bundle):
        rep.add(ERROR, "bundle", "/", f"bundle {bundle!r}: no such directory", "pass --bundle DIR", "load")
        return rep
    bundle = os.path.realpath(bundle)
    rep.bundle = bundle
    try:
        raw = cfgmod.load(os.path.join(bundle, "config.json"), keep_null=True)
    except ConfigError as e:
        rep.add(ERROR, "json", e.pointer, e.reason, "write config.json as strict JSON (RFC 8259)", "load")
        return rep
    except OciError as e:
        rep.add(ERROR, "json", "/", str(e), "create one with `ociruntime spec`", "load")
        return rep
    if strict:
        compat_findings(raw, rep)
    # then the config as create reads it: nulls absent, runc's zero values filled in (validate.runc_leniency)
    doc = validate.runc_leniency(_without_nulls(raw), quiet=True)
    schema_errs = schema.all_errors("config", doc)
    for ptr, msg in schema_errs:
        rep.add(ERROR, "schema", ptr, msg, _schema_hint(msg), "schema")
    bad = [p for p, _ in schema_errs]
    for e in validate.collect_config(doc, bundle, for_create=True, rootless=euid != 0):
        if any(e.pointer == p or e.pointer.startswith(p + "/") for p in bad):
            continue  # the schema already said it
        rep.add(ERROR, "semantic", e.pointer, e.reason, _semantic_hint(e), "semantic")
    if not schema_errs:
        host_findings(doc, bundle, rep, systemd=systemd, euid=euid)
        security_findings(doc, rep)
        if want_plan and not rep.errors:
            rep.plan = resolved_plan(doc, bundle, euid)
    return rep


def _schema_hint(msg):
    if "is a required property" in msg:
        return "add the missing field"
    if "is not of type" in msg:
        return "use the JSON type the spec gives for this field"
    if "is not one of" in msg:
        return "use one of the values listed"
    if "Additional properties" in msg:
        return "remove the unknown field (or check its spelling)"
    return "change the value to match the spec"


def _semantic_hint(e):
    r = e.reason
    if "must be an absolute path" in r:
        return "start the path with '/'"
    if "does not exist" in r:
        return "create it, or fix the path"
    if "namespace" in r:
        return "add the namespace to linux.namespaces, or drop the field that needs it"
    if "unknown" in r:
        return "check the spelling against the spec's list"
    if "out of range" in r or "greater than" in r:
        return "use a value inside the range given"
    return "fix the field as the message says"


# ------------------------------------------------------------------------------------------ compat (--strict)

def compat_findings(doc, rep):
    """What create accepts only for runc compatibility (runc14's lenient create): JSON null for an
    absent field, a process.user without gid, device type letters outside c/b/u/p, ro and rw both."""
    stack = [("", doc)]
    while stack:
        ptr, v = stack.pop()
        if v is None:
            rep.add(WARNING, "compat-null", ptr, "JSON null where the spec expects a value (runc reads it as "
                    "absent)", "omit the field instead of writing null", "compat")
        elif isinstance(v, dict):
            stack.extend((ptr + _ptr(k), c) for k, c in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{ptr}/{i}", c) for i, c in reversed(list(enumerate(v))))
    user = (doc.get("process") or {}).get("user") if isinstance(doc.get("process"), dict) else None
    if isinstance(user, dict) and "gid" not in user:
        rep.add(WARNING, "compat-missing-gid", "/process/user", "process.user has no gid (runc uses 0)",
                "write the gid explicitly", "compat")
    linux = doc.get("linux") if isinstance(doc.get("linux"), dict) else {}
    for i, d in enumerate(linux.get("devices") or ()):
        if isinstance(d, dict) and d.get("type") not in ("c", "b", "u", "p"):
            rep.add(WARNING, "compat-device-type", f"/linux/devices/{i}/type",
                    f"device type {d.get('type')!r} is not one of c, b, u, p", "use c, b, u or p", "compat")
    for i, m in enumerate(doc.get("mounts") or ()):
        opts = m.get("options") if isinstance(m, dict) else None
        if isinstance(opts, list) and "ro" in opts and "rw" in opts:
            rep.add(WARNING, "compat-ro-rw", f"/mounts/{i}/options", "both ro and rw: the last one wins",
                    "keep only the one you mean", "compat")
        if isinstance(m, dict) and isinstance(m.get("destination"), str) and \
                not m["destination"].startswith("/"):
            rep.add(WARNING, "compat-relative-destination", f"/mounts/{i}/destination",
                    "a relative mount destination (deprecated by the spec)", "start it with '/'", "compat")


# ------------------------------------------------------------------------------------------ host

def _status_caps(key, status="/proc/self/status"):
    try:
        with open(status) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return None


def _kernel_at_least(major, minor):
    try:
        rel = os.uname().release.split(".")
        return (int(rel[0]), int("".join(c for c in rel[1] if c.isdigit()) or 0)) >= (major, minor)
    except (ValueError, IndexError):
        return True


SECCOMP_ACTIONS_AVAIL = "/proc/sys/kernel/seccomp/actions_avail"
ACTION_NAMES = {"SCMP_ACT_KILL": "kill_thread", "SCMP_ACT_KILL_THREAD": "kill_thread",
                "SCMP_ACT_KILL_PROCESS": "kill_process", "SCMP_ACT_TRAP": "trap", "SCMP_ACT_ERRNO": "errno",
                "SCMP_ACT_TRACE": "trace", "SCMP_ACT_LOG": "log", "SCMP_ACT_ALLOW": "allow",
                "SCMP_ACT_NOTIFY": "user_notif"}
SECCOMP_FLAG_KERNEL = {"SECCOMP_FILTER_FLAG_TSYNC": (3, 17), "SECCOMP_FILTER_FLAG_LOG": (4, 14),
                       "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (4, 17), "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": (5, 19)}
# statfs magic numbers of filesystems that support idmapped mounts (FS_ALLOW_IDMAP), with the Linux
# release that gave each its support (tmpfs only since 6.3: Debian 12's own 6.1 kernel refuses it)
IDMAP_FS = {0xEF53: ("ext4", (5, 12)), 0x58465342: ("xfs", (5, 12)), 0x4D44: ("vfat", (5, 12)),
            0x9123683E: ("btrfs", (5, 15)), 0xF2F52010: ("f2fs", (5, 18)), 0x794C7630: ("overlay", (5, 19)),
            0x01021994: ("tmpfs", (6, 3)), 0x00C36400: ("ceph", (6, 7)), 0x65735546: ("fuse", (6, 12)),
            0xE0F5E1E2: ("erofs", (5, 12)), 0x73717368: ("squashfs", (5, 12))}


def idmap_fs_lacks(magic, kernel_at_least=None):
    """Why this kernel cannot idmap a mount of a filesystem of that statfs type, or None."""
    kernel_at_least = kernel_at_least or _kernel_at_least
    if magic not in IDMAP_FS:
        return f"is on a filesystem (statfs type 0x{magic:x}) that does not support idmapped mounts"
    name, since = IDMAP_FS[magic]
    if not kernel_at_least(*since):
        return (f"is on {name}, which supports idmapped mounts only since Linux {since[0]}.{since[1]} "
                f"(this kernel: {os.uname().release})")
    return None


def statfs_magic(path):
    """f_type of statfs(2) on path, or None (ctypes: only `check` needs it)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct statfs: f_type is the first word
    if libc.statfs(path.encode(), buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def host_findings(doc, bundle, rep, systemd=False, euid=0):
    def err(code, ptr, msg, hint):
        rep.add(ERROR, code, ptr, msg, hint, "host")
    linux = doc.get("linux") or {}
    proc = doc.get("process") or {}
    ns = {n.get("type"): n for n in linux.get("namespaces") or ()}
    new_userns = "user" in ns and not ns["user"].get("path")
    # LSM labels and intelRdt: the very rules create runs (validate.check_host), each on its own
    from ociruntime import lsm
    for fn, arg in ((lsm.intel_rdt, linux), (lsm.process_labels, proc), (lsm.mount_label, linux)):
        try:
            fn(arg)
        except ConfigError as e:
            err("host-lsm", e.pointer, e.reason, "use a host where it is enabled, or drop the field")
    # namespaces this kernel lacks
    from ociruntime.validate import missing_namespaces
    for pointer, reason in missing_namespaces(linux):
        err("host-namespace", pointer, reason, "drop the namespace, or use a kernel that has it")
    # capabilities outside the bounding set (a new user namespace starts with a full set)
    caps = proc.get("capabilities") or {}
    if not new_userns and "user" not in ns:
        bnd = _status_caps("CapBnd")
        from ociruntime.plan import CAP_BITS
        if bnd is not None:
            for setname in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                for i, c in enumerate(caps.get(setname) or ()):
                    if c in CAP_BITS and not bnd >> CAP_BITS[c] & 1:
                        err("host-capability", f"/process/capabilities/{setname}/{i}",
                            f"{c} is not in this runtime's bounding set: the kernel refuses to grant it",
                            "drop it from the config, or run the runtime with it in its bounding set")
    # rlimits above the hard limit
    _rlimit_findings(proc, err, userns="user" in ns)
    # seccomp actions and flags
    sc = linux.get("seccomp")
    if isinstance(sc, dict):
        try:
            with open(SECCOMP_ACTIONS_AVAIL) as f:
                avail = set(f.read().split())
        except OSError:
            avail = None
        if avail is not None:
            acts = [("/linux/seccomp/defaultAction", sc.get("defaultAction"))]
            acts += [(f"/linux/seccomp/syscalls/{i}/action", r.get("action"))
                     for i, r in enumerate(sc.get("syscalls") or ())]
            for ptr, a in acts:
                if a in ACTION_NAMES and ACTION_NAMES[a] not in avail:
                    err("host-seccomp-action", ptr, f"this kernel has no seccomp action {a} "
                        f"(actions_avail: {' '.join(sorted(avail))})", "use an action the kernel lists")
        for i, fl in enumerate(sc.get("flags") or ()):
            need = SECCOMP_FLAG_KERNEL.get(fl)
            if need and not _kernel_at_least(*need):
                err("host-seccomp-flag", f"/linux/seccomp/flags/{i}",
                    f"{fl} needs Linux >= {need[0]}.{need[1]}", "drop the flag")
    # cgroups
    if systemd and not os.path.isdir("/run/systemd/system"):
        err("host-systemd", "/linux/cgroupsPath", "--systemd-cgroup: systemd is not running on this host "
            "(no /run/systemd/system)", "use the cgroupfs driver (omit --systemd-cgroup)")
    cgp = linux.get("cgroupsPath")
    if not systemd and isinstance(cgp, str) and ":" in cgp and not cgp.startswith("/"):
        err("host-systemd", "/linux/cgroupsPath", f"cgroupsPath {cgp!r} looks like a systemd slice:prefix:name, "
            "which needs --systemd-cgroup", "pass --systemd-cgroup (on a host running systemd) or use a path")
    _cgroup_findings(linux.get("resources") or {}, err)
    # devices
    if new_userns or "user" in ns:
        for i, d in enumerate(linux.get("devices") or ()):
            p = d.get("path")
            if isinstance(p, str) and not os.path.exists(p):
                err("host-device", f"/linux/devices/{i}/path", f"{p} does not exist on this host (in a user "
                    "namespace devices are bind-mounted from the host's)", "remove it or use a host that has it")
    devs = linux.get("netDevices")
    if devs:
        try:
            from ociruntime import netdev
            netdev.check_host(devs)
        except ConfigError as e:
            err("host-netdev", e.pointer, e.reason, "create the device first, or drop it")
    # idmapped mounts, bind sources: plan.build is the judge (it is what create runs)
    for i, m in enumerate(doc.get("mounts") or ()):
        opts = m.get("options") or ()
        if not ("idmap" in opts or "ridmap" in opts or m.get("uidMappings") is not None):
            continue
        src = m.get("source") or ""
        if not os.path.isabs(src):
            src = os.path.join(bundle, src)
        magic = statfs_magic(src) if os.path.exists(src) else None
        why = idmap_fs_lacks(magic) if magic is not None else None
        if why:
            err("host-idmap", f"/mounts/{i}/source", f"{src} {why}",
                "use a source on a filesystem this kernel idmaps (ext4, xfs, btrfs, overlay; tmpfs from 6.3)")
    try:
        _build_plan(doc, bundle, euid)
    except ConfigError as e:
        if not any(f.pointer == e.pointer for f in rep.findings):
            err("host-plan", e.pointer, e.reason, _semantic_hint(e))
    except OciError as e:
        err("host-plan", "/", str(e), "see the message")


def _rlimit_findings(proc, err, userns):
    import resource
    cap_eff = _status_caps("CapEff") or 0
    has_res = bool(cap_eff >> 24 & 1)  # CAP_SYS_RESOURCE
    try:
        with open("/proc/sys/fs/nr_open") as f:
            nr_open = int(f.read())
    except (OSError, ValueError):
        nr_open = None
    for i, r in enumerate(proc.get("rlimits") or ()):
        t, hard = r.get("type"), r.get("hard")
        num = getattr(resource, t, None) if isinstance(t, str) else None
        if num is None or not isinstance(hard, int):
            continue
        cur = resource.getrlimit(num)[1]
        ptr = f"/process/rlimits/{i}/hard"
        if t == "RLIMIT_NOFILE" and nr_open is not None and hard > nr_open:
            err("host-rlimit", ptr, f"{t} hard limit {hard} is above fs.nr_open ({nr_open})",
                f"use at most {nr_open}")
        elif cur != resource.RLIM_INFINITY and hard > cur and (userns or not has_res):
            why = ("the container's user namespace has no CAP_SYS_RESOURCE over the host" if userns
                   else "the runtime has no CAP_SYS_RESOURCE")
            err("host-rlimit", ptr, f"{t} hard limit {hard} is above the current hard limit {cur} and {why}",
                f"use at most {cur}, or raise the runtime's own hard limit")


def _cgroup_root(key):
    from ociruntime import cgroups
    try:
        h = cgroups.hierarchies()
    except OSError:
        return None
    for k, (mp, _own) in h.items():
        if key in k.split(",") or (key == "" and k == ""):
            return mp
    return None


def _cgroup_findings(res, err):
    from ociruntime import cgroups
    try:
        h = cgroups.hierarchies()
    except OSError:
        return
    v2 = list(h) == [""]
    ctrls = set()
    if v2:
        try:
            with open(os.path.join(h[""][0], "cgroup.controllers")) as f:
                ctrls = set(f.read().split())
        except OSError:
            pass
    else:
        for k in h:
            ctrls.update(k.split(","))
    need = {"memory": "memory", "cpu": "cpu", "pids": "pids", "hugepageLimits": "hugetlb", "rdma": "rdma",
            "blockIO": "io" if v2 else "blkio"}
    for key, ctrl in need.items():
        if res.get(key) and ctrl not in ctrls:
            err("host-cgroup-controller", f"/linux/resources/{key}",
                f"this host has no {ctrl} cgroup controller", "drop the limit, or enable the controller")
    net = res.get("network") or {}
    for key, ctrl in (("classID", "net_cls"), ("priorities", "net_prio")):
        if net.get(key) and not v2 and ctrl not in ctrls:
            err("host-cgroup-controller", f"/linux/resources/network/{key}",
                cgroups.host_lacks_controller(ctrl), "drop the setting, or mount the controller")
    bio = res.get("blockIO") or {}
    if bio and not v2 and "blkio" in ctrls:
        root = _cgroup_root("blkio")
        have = lambda n: root and os.path.exists(os.path.join(root, n))  # noqa: E731
        from ociruntime.cgroups import fs1
        shared = getattr(fs1, "blkio_weight_files", None)  # create's own answer, where the cgroup code has it
        if shared and root:
            wfile, wdfile, lfile, _ldfile = shared(root)
            weight_files = bool(wfile)
            have = lambda n: bool(lfile) if n == "blkio.leaf_weight" else root and os.path.exists(  # noqa: E731
                os.path.join(root, n))
        else:
            weight_files = have("blkio.weight") or have("blkio.bfq.weight")
        if bio.get("weight") and not weight_files:
            err("host-blkio-weight", "/linux/resources/blockIO/weight",
                "this kernel has no blkio weight (BFQ not available)",
                "drop blockIO.weight, or use a host with the BFQ I/O scheduler")
        for i, wd in enumerate(bio.get("weightDevice") or ()):
            if wd.get("weight") and not weight_files:
                err("host-blkio-weight", f"/linux/resources/blockIO/weightDevice/{i}/weight",
                    "this kernel has no blkio weight_device (BFQ not available)",
                    "drop the weight, or use a host with the BFQ I/O scheduler")
        if bio.get("leafWeight") and not have("blkio.leaf_weight"):
            err("host-blkio-weight", "/linux/resources/blockIO/leafWeight",
                "this kernel has no blkio leaf weight (only CFQ had it; gone since Linux 5.0)", "drop it")
    for key in ("weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                "throttleWriteIOPSDevice"):
        for i, d in enumerate(bio.get(key) or ()):
            mm = f"{d.get('major')}:{d.get('minor')}"
            if not os.path.exists(f"/sys/dev/block/{mm}"):
                err("host-device", f"/linux/resources/blockIO/{key}/{i}",
                    f"no block device {mm} on this host", "use the major:minor of a block device that exists")
    for i, hp in enumerate(res.get("hugepageLimits") or ()):
        size = hp.get("pageSize")
        root = _cgroup_root("" if v2 else "hugetlb")
        if root and size and not os.path.exists(os.path.join(root, f"hugetlb.{size}.max" if v2 else
                                                              f"hugetlb.{size}.limit_in_bytes")) and \
                not (v2 and not os.path.exists(os.path.join(root, "cgroup.controllers"))):
            if v2 and not any(os.path.exists(os.path.join(root, d, f"hugetlb.{size}.max"))
                              for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
                err("host-hugetlb", f"/linux/resources/hugepageLimits/{i}/pageSize",
                    f"this kernel has no {size} huge pages", "use a page size /sys/kernel/mm/hugepages lists")
            elif not v2:
                err("host-hugetlb", f"/linux/resources/hugepageLimits/{i}/pageSize",
                    f"this kernel has no {size} huge pages", "use a page size /sys/kernel/mm/hugepages lists")
    mem = res.get("memory") or {}
    if not v2 and mem.get("swap") not in (None, 0) and "memory" in ctrls:
        root = _cgroup_root("memory")
        if root and not os.path.exists(os.path.join(root, "memory.memsw.limit_in_bytes")):
            err("host-memory-swap", "/linux/resources/memory/swap",
                "this kernel has no swap accounting (memory.memsw.*: swapaccount=1 is off)", "drop memory.swap")
    cpu = res.get("cpu") or {}
    if not v2 and (cpu.get("realtimeRuntime") or cpu.get("realtimePeriod")):
        root = _cgroup_root("cpu")
        if root and not os.path.exists(os.path.join(root, "cpu.rt_runtime_us")):
            from ociruntime.cgroups import fs1
            err("host-cpu-rt", "/linux/resources/cpu/" + ("realtimeRuntime" if cpu.get("realtimeRuntime") else
                                                          "realtimePeriod"),
                fs1._NO_RT, "drop the realtime fields")


# ------------------------------------------------------------------------------------------ security

DANGEROUS_CAPS = {
    "CAP_SYS_ADMIN": ("high", "mount, namespaces, BPF and more: the usual way out of a container"),
    "CAP_SYS_MODULE": ("high", "loads kernel modules"),
    "CAP_SYS_PTRACE": ("high", "ptraces processes it can see (with a shared pid namespace: the host's)"),
    "CAP_SYS_RAWIO": ("high", "raw I/O ports and /dev/mem"),
    "CAP_DAC_READ_SEARCH": ("high", "open_by_handle_at(2) reads host files (the 'shocker' escape)"),
    "CAP_SYS_BOOT": ("high", "reboots the host"),
    "CAP_MAC_ADMIN": ("high", "changes the LSM policy"),
    "CAP_MAC_OVERRIDE": ("high", "overrides the LSM policy"),
    "CAP_BPF": ("high", "loads BPF programs"),
    "CAP_PERFMON": ("medium", "reads kernel and other processes' performance data"),
    "CAP_NET_ADMIN": ("medium", "reconfigures the network (with a shared netns: the host's)"),
    "CAP_SYS_TIME": ("medium", "sets the host clock"),
    "CAP_SYSLOG": ("medium", "reads kernel addresses in the log"),
    "CAP_SYS_RESOURCE": ("low", "overrides resource limits"),
    "CAP_NET_RAW": ("low", "raw sockets (ARP/DNS spoofing on a shared network)"),
    "CAP_MKNOD": ("low", "makes device nodes (the cgroup device list still decides access)"),
}
DEFAULT_MASKED = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                  "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
DEFAULT_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
SENSITIVE_SOURCES = ("/", "/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/var/run/containerd",
                     "/run/crio", "/var/run/crio", "/run/podman", "/proc", "/dev", "/sys", "/etc", "/boot",
                     "/var/lib/docker", "/var/lib/containerd", "/var/lib/kubelet", "/root", "/lib/modules")
HOST_NS = {"pid": ("high", "sees and signals every host process"),
           "network": ("high", "uses the host's network stack"),
           "mount": ("high", "mounts land in the host's mount namespace"),
           "ipc": ("medium", "shares the host's System V IPC and POSIX message queues"),
           "uts": ("low", "can change the host's hostname"),
           "cgroup": ("low", "sees the host's cgroup tree")}


def security_findings(doc, rep):
    def warn(code, ptr, msg, hint, risk):
        rep.add(WARNING, code, ptr, msg, hint, "security", risk=risk)
    linux = doc.get("linux") or {}
    proc = doc.get("process") or {}
    ns = {n.get("type") for n in linux.get("namespaces") or ()}
    for t, (risk, what) in HOST_NS.items():
        if t not in ns:
            warn(f"sec-host-{t}-ns", "/linux/namespaces", f"no {t} namespace: the container {what}",
                 f"add {{\"type\": \"{t}\"}} to linux.namespaces", risk)
    user = proc.get("user") or {}
    if "user" not in ns and user.get("uid", 0) == 0:
        warn("sec-no-userns", "/linux/namespaces", "the process runs as root with no user namespace: root in the "
             "container is root on the host", "add a user namespace with uidMappings/gidMappings, or run as "
             "a non-root user", "medium")
    caps = proc.get("capabilities") or {}
    seen = set()
    for setname in ("bounding", "permitted", "effective", "ambient", "inheritable"):
        for i, c in enumerate(caps.get(setname) or ()):
            if c in DANGEROUS_CAPS and c not in seen:
                seen.add(c)
                risk, what = DANGEROUS_CAPS[c]
                warn("sec-capability", f"/process/capabilities/{setname}/{i}", f"{c}: {what}",
                     f"drop {c} unless the workload needs it", risk)
    sc = linux.get("seccomp")
    if not sc:
        warn("sec-no-seccomp", "/linux/seccomp", "no seccomp filter: every system call reaches the kernel",
             "add a profile (e.g. the default profile of containerd or podman)", "medium")
    elif sc.get("defaultAction") in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        warn("sec-seccomp-permissive", "/linux/seccomp/defaultAction",
             f"seccomp defaultAction {sc.get('defaultAction')}: everything not listed is allowed",
             "deny by default (SCMP_ACT_ERRNO) and list what is allowed", "medium")
    if not proc.get("noNewPrivileges"):
        warn("sec-no-nnp", "/process/noNewPrivileges", "noNewPrivileges is off: setuid binaries in the image "
             "can gain privileges", "set process.noNewPrivileges to true", "medium")
    mounts = doc.get("mounts") or []
    ro_paths = set(linux.get("readonlyPaths") or ())
    masked = set(linux.get("maskedPaths") or ())
    for i, m in enumerate(mounts):
        dst = os.path.normpath(m.get("destination") or "/")
        opts = m.get("options") or ()
        ro = "ro" in opts and ("rw" not in opts or opts.index("ro") > opts.index("rw"))
        typ = m.get("type")
        bind = typ == "bind" or "bind" in opts or "rbind" in opts
        if dst == "/proc" and typ == "proc" and "/proc/sys" not in ro_paths:
            warn("sec-writable-proc-sys", f"/mounts/{i}", "/proc/sys is writable (not in readonlyPaths): "
                 "kernel settings of the host", "add /proc/sys to linux.readonlyPaths", "high")
        if dst == "/sys" and not ro:
            warn("sec-writable-sys", f"/mounts/{i}/options", "/sys is mounted writable", "add \"ro\"", "high")
        if (dst == "/sys/fs/cgroup" or typ in ("cgroup", "cgroup2")) and not ro:
            warn("sec-writable-cgroup", f"/mounts/{i}/options", "cgroupfs is mounted writable "
                 "(release_agent, the CVE-2022-0492 class)", "add \"ro\"", "high")
        src = m.get("source")
        if bind and isinstance(src, str) and src.startswith("/"):
            s = os.path.normpath(src)
            hit = next((p for p in SENSITIVE_SOURCES if s == p or (p != "/" and s.startswith(p + "/")
                                                                    and p in ("/run/containerd", "/var/run/containerd",
                                                                              "/var/lib/docker", "/proc", "/sys",
                                                                              "/dev"))), None)
            if hit:
                warn("sec-sensitive-bind", f"/mounts/{i}/source", f"bind mount of the host's {s}"
                     + (" (the container runtime's socket: full control of the host)" if "sock" in s or
                        "containerd" in s else "") + (" (read-only)" if ro else ""),
                     "do not share host control paths with a container", "medium" if ro else "high")
    has_proc = any(os.path.normpath(m.get("destination") or "") == "/proc" for m in mounts)
    if has_proc:
        missing = [p for p in DEFAULT_MASKED if p not in masked]
        if missing:
            warn("sec-missing-masked", "/linux/maskedPaths", f"not masked: {', '.join(missing)}",
                 "add them to linux.maskedPaths (as `ociruntime spec` does)", "medium")
        missing = [p for p in DEFAULT_READONLY if p not in ro_paths and p != "/proc/sys"]
        if missing:
            warn("sec-missing-readonly", "/linux/readonlyPaths", f"not read-only: {', '.join(missing)}",
                 "add them to linux.readonlyPaths (as `ociruntime spec` does)", "medium")
    rules = (linux.get("resources") or {}).get("devices")
    if rules is None:
        # in a user namespace mknod is refused and device nodes are the host's binds: lower
        warn("sec-all-devices", "/linux/resources/devices", "no device rules: every device node is allowed",
             "start the list with {\"allow\": false, \"access\": \"rwm\"}", "low" if "user" in ns else "high")
    else:
        for i, r in enumerate(rules):
            if r.get("allow") and r.get("type", "a") == "a" and r.get("major") in (None, -1) and \
                    r.get("minor") in (None, -1) and "m" in r.get("access", "rwm") and "w" in r.get("access", "rwm"):
                warn("sec-all-devices", f"/linux/resources/devices/{i}", "every device node is allowed "
                     "(read, write, mknod: host disks and /dev/mem)", "allow only the devices the workload needs",
                     "high")
    if linux.get("rootfsPropagation") in ("shared", "rshared"):
        warn("sec-rootfs-shared", "/linux/rootfsPropagation", "rootfsPropagation shared: mounts made in the "
             "container propagate to the host", "use rslave or rprivate", "medium")
    if not (doc.get("root") or {}).get("readonly"):
        warn("sec-writable-root", "/root/readonly", "the root filesystem is writable", "set root.readonly to "
             "true and give the workload tmpfs or volumes where it writes", "low")


# ------------------------------------------------------------------------------------------ the plan

_FDS = {"sync": 3, "plan": 4, "fifo": 5, "close_from": 3, "idmap_base": 6}


def _build_plan(doc, bundle, euid):
    from ociruntime import cgroups, plan as planmod
    try:
        cg = cgroups.container_paths((doc.get("linux") or {}).get("cgroupsPath"), "check")
    except (OciError, OSError):
        cg = {}
    return planmod.build(doc, bundle, dict(_FDS), {"rootless_euid": euid != 0}, cg)


def resolved_plan(doc, bundle, euid):
    """The steps the C init would execute, decoded from the plan create would encode."""
    p = _build_plan(doc, bundle, euid)
    return decode_plan(p.data)


def decode_plan(data):
    """-> list of {"op": name, ...fields}: the plan's records (csrc/plan.h) in the init's order."""
    from ociruntime import plan as pm
    import struct
    names = {v: k[3:].lower() for k, v in vars(pm).items() if k.startswith("OP_") and isinstance(v, int)}
    nsname = {v: k for k, v in pm.NAMESPACES.items()}
    capname = pm.CAPS
    rlname = {v: k for k, v in pm.RLIMITS.items()}
    _, _, n = struct.unpack_from("=4sII", data, 0)
    off = 12
    out = []

    class R:
        def __init__(self, b):
            self.b, self.o = b, 0

        def u32(self):
            self.o += 4
            return struct.unpack_from("=I", self.b, self.o - 4)[0]

        def u64(self):
            self.o += 8
            return struct.unpack_from("=Q", self.b, self.o - 8)[0]

        def s(self):
            n_ = self.u32()
            self.o += n_
            return self.b[self.o - n_:self.o - 1].decode(errors="replace")

        def sv(self):
            return [self.s() for _ in range(self.u32())]

    def nsl(mask):
        return [nsname[f] for f in sorted(nsname) if mask & f]

    for _ in range(n):
        op, ln = struct.unpack_from("=II", data, off)
        r = R(data[off + 8:off + 8 + ln])
        off += 8 + ln
        rec = {"op": names.get(op, f"op{op}")}
        if op == pm.OP_NS_JOIN:
            rec.update(namespace=nsl(r.u32())[0], path=r.s())
        elif op == pm.OP_NS_NEW:
            rec.update(namespaces=nsl(r.u32()))
        elif op == pm.OP_ROOTFS:
            rec.update(path=r.s(), propagation=r.u32(), flags=r.u32())
        elif op == pm.OP_MOUNT:
            rec.update(source=r.s(), destination=r.s(), type=r.s(), data=r.s(), flags=hex(r.u32()),
                       kind=r.u32())
        elif op == pm.OP_DEVICE:
            rec.update(path=r.s(), mode=oct(r.u32()), major=r.u32(), minor=r.u32())
        elif op == pm.OP_SYMLINK:
            rec.update(target=r.s(), link=r.s())
        elif op in (pm.OP_MASK, pm.OP_READONLY, pm.OP_HOSTNAME, pm.OP_DOMAINNAME):
            rec.update(path=r.s())
        elif op == pm.OP_MKDIR:
            rec.update(path=r.s(), mode=oct(r.u32()))
        elif op == pm.OP_SYSCTL:
            rec.update(name=r.s(), value=r.s())
        elif op == pm.OP_RLIMIT:
            rec.update(type=rlname.get(r.u32()), soft=r.u64(), hard=r.u64())
        elif op == pm.OP_CAPS:
            for k in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                m = r.u64()
                rec[k] = [c for i, c in enumerate(capname) if m >> i & 1]
        elif op == pm.OP_USER:
            uid, gid, umask, _flags, ng = (r.u32() for _ in range(5))
            rec.update(uid=uid, gid=gid, umask=None if umask == pm.UMASK_UNSET else oct(umask),
                       additionalGids=[r.u32() for _ in range(ng)])
        elif op == pm.OP_PROCESS:
            rec.update(cwd=r.s(), args=r.sv(), env=len(r.sv()), noNewPrivileges=bool(r.u32() & pm.PROC_NNP))
        elif op == pm.OP_SECCOMP:
            rec.update(flags=r.u32(), instructions=r.u32() // 8)
        elif op == pm.OP_HOOK:
            rec.update(kind=r.u32(), timeout=struct.unpack("=i", struct.pack("=I", r.u32()))[0], path=r.s())
        elif op == pm.OP_CGROUP2_FALLBACK:
            rec.update(path=r.s(), mask_missing=bool(r.u32() & pm.CG2_MASK_MISSING))
        else:
            rec["bytes"] = ln
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------------ output

def format_text(rep):
    lines = []
    for f in rep.findings:
        risk = f" [{f.risk}]" if f.risk else ""
        lines.append(f"{f.severity}{risk} {f.code} {f.pointer}: {f.message}")
        lines.append(f"    fix: {f.hint}")
        lines.append(f"    spec: {f.spec}")
    if rep.plan is not None:
        lines.append("plan (what the init would do, in order):")
        for rec in rep.plan:
            fields = " ".join(f"{k}={v}" for k, v in rec.items() if k != "op")
            lines.append(f"  {rec['op']:<14} {fields}")
    d = rep.as_dict()["summary"]
    lines.append(f"{d['errors']} error(s), {d['warnings']} warning(s)"
                 + (" (strict: warnings fail)" if rep.strict else ""))
    return "\n".join(lines) + "\n"


def cmd_check(ctx):
    import sys
    fmt = ctx.flag("format", "text")
    if fmt not in ("text", "json"):
        raise OciError(f"check: unknown --format {fmt!r} (text or json)")
    rep = check_bundle(ctx.flag("bundle") or ".", strict=bool(ctx.flag("strict")), want_plan=bool(ctx.flag("plan")),
                       systemd=bool(ctx.g.get("systemd-cgroup")))
    if fmt == "json":
        import json
        sys.stdout.write(json.dumps(rep.as_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(format_text(rep))
    return rep.exit_status()
