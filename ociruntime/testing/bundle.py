"""OCI bundles for tests: a directory with ``config.json`` and a busybox ``rootfs``.

``default_config()`` returns the content of ``runc spec`` (runc 1.4.3, host without a unified
cgroup v2 hierarchy, so without a cgroup namespace) as a fresh Python dict; ``Bundle`` wraps a
directory plus such a dict with small setters; ``make_bundle()`` is the one-call factory.
Every bundle gets a unique hostname unless told otherwise, so no two tests (or benchmark
iterations) ever hand a runtime the same config.
"""

import atexit
import copy
import json
import os
import re
import shutil
import tempfile
import threading
import uuid

from .rootfs import RootfsTemplate

SPEC_VERSION = "1.3.0"

from ociruntime.misc import DEFAULT_CAPS  # noqa: E402,F401 (re-exported)

#: namespace type -> name of the /proc/<pid>/ns/ entry
NS_PROC_NAMES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def default_config():
    """The ``runc spec`` template (``ociruntime.misc.default_spec``, runc 1.4.3 ``specconv.Example()``)
    as a new dict, always without a cgroup namespace (what runc writes on a host without a unified
    hierarchy), with runc's hostname and ``/sys/devices/virtual/tpm`` masked too."""
    from ociruntime.misc import default_spec
    spec = default_spec(cgroupns=False)
    spec["ociVersion"] = SPEC_VERSION
    spec["hostname"] = "runc"
    spec["linux"]["maskedPaths"].append("/sys/devices/virtual/tpm")
    return spec


def unique_hostname(prefix="oci-"):
    return prefix + uuid.uuid4().hex[:12]


def deep_merge(base, overrides):
    """Merge ``overrides`` into ``base`` in place: dicts recursively, anything else replaced.
    A value of ``None`` deletes the key."""
    for k, v in overrides.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


_template_lock = threading.Lock()
_default_template = None


def default_rootfs_template():
    """A per-process busybox rootfs template (removed at interpreter exit)."""
    global _default_template
    with _template_lock:
        if _default_template is None:
            _default_template = RootfsTemplate()
            atexit.register(_default_template.remove)
        return _default_template


def set_default_rootfs_template(template):
    """Make ``template`` the one ``make_bundle`` uses (the pytest plugin's session template)."""
    global _default_template
    with _template_lock:
        _default_template = template


class Bundle:
    """An OCI bundle directory.

    ``config`` is a plain dict (edit it freely or use the setters); nothing reaches the disk
    until ``write()``. The rootfs is created from ``rootfs_template`` (a ``RootfsTemplate`` or a
    path) unless ``path/rootfs`` already exists or ``rootfs_template`` is False."""

    def __init__(self, path, config=None, rootfs_template=None, hostname=None,
                 hardlink_busybox=True):
        self.path = os.path.realpath(os.fspath(path))
        os.makedirs(self.path, exist_ok=True)
        os.chmod(self.path, 0o755)
        self.config = copy.deepcopy(config) if config is not None else default_config()
        if hostname is not False:
            self.config["hostname"] = hostname or unique_hostname()
        if rootfs_template is not False and not os.path.exists(self.rootfs):
            tmpl = rootfs_template if rootfs_template is not None else default_rootfs_template()
            if isinstance(tmpl, RootfsTemplate):
                tmpl.copy_to(self.rootfs, hardlink_busybox=hardlink_busybox)
            else:
                from .rootfs import copy_rootfs
                copy_rootfs(os.fspath(tmpl), self.rootfs, hardlink_busybox=hardlink_busybox)

    # -- paths -------------------------------------------------------------------------
    @property
    def config_path(self):
        return os.path.join(self.path, "config.json")

    @property
    def rootfs(self):
        root = (self.config.get("root") or {}).get("path", "rootfs")
        return root if os.path.isabs(root) else os.path.join(self.path, root)

    def rootfs_path(self, inner):
        """Host path of ``inner`` (an absolute path inside the container rootfs)."""
        return os.path.join(self.rootfs, inner.lstrip("/"))

    def write(self):
        """Write config.json (indented, atomically) and return its path."""
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.config, f, indent=2)
        os.replace(tmp, self.config_path)
        return self.config_path

    def clone(self, path, hardlink_busybox=True):
        """A new bundle at ``path`` with a copy of this config and rootfs (same hostname);
        its config.json is written."""
        from .rootfs import copy_rootfs
        os.makedirs(path, exist_ok=True)
        b = Bundle(path, config=self.config, rootfs_template=False, hostname=False)
        if not os.path.isabs((self.config.get("root") or {}).get("path", "rootfs")):
            copy_rootfs(self.rootfs, b.rootfs, hardlink_busybox=hardlink_busybox)
        b.write()
        return b

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def __repr__(self):
        return f"Bundle({self.path!r})"

    # -- process ------------------------------------------------------------------------
    @property
    def process(self):
        return self.config.setdefault("process", {})

    @property
    def linux(self):
        return self.config.setdefault("linux", {})

    def set_args(self, *args):
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])
        self.process["args"] = [str(a) for a in args]
        return self

    def set_shell(self, script):
        """Run ``script`` with the container's /bin/sh."""
        return self.set_args("/bin/sh", "-c", script)

    def set_terminal(self, terminal=True):
        self.process["terminal"] = bool(terminal)
        return self

    def set_env(self, *entries, replace=False, **kv):
        """Add (or with ``replace`` set) environment entries: ``set_env("A=1", B="2")``."""
        env = [] if replace else list(self.process.get("env", []))
        new = list(entries) + [f"{k}={v}" for k, v in kv.items()]
        for e in new:
            name = e.split("=", 1)[0]
            env = [x for x in env if x.split("=", 1)[0] != name]
            env.append(e)
        self.process["env"] = env
        return self

    def set_cwd(self, cwd):
        self.process["cwd"] = cwd
        return self

    def set_user(self, uid=0, gid=0, additional_gids=None, umask=None, username=None):
        user = {"uid": int(uid), "gid": int(gid)}
        if additional_gids is not None:
            user["additionalGids"] = [int(g) for g in additional_gids]
        if umask is not None:
            user["umask"] = int(umask)
        if username is not None:
            user["username"] = username
        self.process["user"] = user
        return self

    def set_capabilities(self, caps, sets=("bounding", "effective", "permitted"), replace=True):
        """Set the listed capability sets to ``caps``; with ``replace`` other sets are removed."""
        cur = {} if replace else dict(self.process.get("capabilities") or {})
        for s in sets:
            cur[s] = list(caps)
        self.process["capabilities"] = cur
        return self

    def add_rlimit(self, type, soft, hard=None):
        hard = soft if hard is None else hard
        rl = [r for r in self.process.get("rlimits", []) if r["type"] != type]
        rl.append({"type": type, "hard": int(hard), "soft": int(soft)})
        self.process["rlimits"] = rl
        return self

    def set_rlimits(self, rlimits):
        self.process["rlimits"] = [dict(r) for r in rlimits]
        return self

    def set_no_new_privileges(self, value=True):
        self.process["noNewPrivileges"] = bool(value)
        return self

    def set_oom_score_adj(self, value):
        self.process["oomScoreAdj"] = int(value)
        return self

    # -- root / hostname / annotations ---------------------------------------------------
    def set_readonly_root(self, readonly=True):
        self.config.setdefault("root", {"path": "rootfs"})["readonly"] = bool(readonly)
        return self

    def set_hostname(self, hostname):
        if hostname is None:
            self.config.pop("hostname", None)
        else:
            self.config["hostname"] = hostname
        return self

    def set_domainname(self, name):
        if name is None:
            self.config.pop("domainname", None)
        else:
            self.config["domainname"] = name
        return self

    def set_annotation(self, key, value):
        self.config.setdefault("annotations", {})[key] = value
        return self

    # -- namespaces ---------------------------------------------------------------------
    def namespaces(self):
        return self.linux.setdefault("namespaces", [])

    def has_namespace(self, type):
        return any(ns["type"] == type for ns in self.linux.get("namespaces", []))

    def add_namespace(self, type, path=None):
        """Add (or replace) a namespace entry; ``path`` joins an existing one."""
        self.remove_namespace(type)
        ns = {"type": type}
        if path:
            ns["path"] = os.fspath(path)
        self.namespaces().append(ns)
        return self

    def remove_namespace(self, type):
        self.linux["namespaces"] = [ns for ns in self.namespaces() if ns["type"] != type]
        if type == "uts":
            self.config.pop("hostname", None)
            self.config.pop("domainname", None)
        if type == "user":
            self.linux.pop("uidMappings", None)
            self.linux.pop("gidMappings", None)
        return self

    def set_namespaces(self, types):
        self.linux["namespaces"] = [{"type": t} for t in types]
        if "uts" not in types:
            self.config.pop("hostname", None)
            self.config.pop("domainname", None)
        return self

    def set_user_namespace(self, host_uid=100000, host_gid=None, size=65536,
                           uid_mappings=None, gid_mappings=None):
        """Add a new user namespace mapping container 0..size-1 to host_uid.. (and gid)."""
        host_gid = host_uid if host_gid is None else host_gid
        self.add_namespace("user")
        self.linux["uidMappings"] = uid_mappings or [
            {"containerID": 0, "hostID": host_uid, "size": size}]
        self.linux["gidMappings"] = gid_mappings or [
            {"containerID": 0, "hostID": host_gid, "size": size}]
        return self

    # -- mounts -------------------------------------------------------------------------
    def mounts(self):
        return self.config.setdefault("mounts", [])

    def add_mount(self, destination, type=None, source=None, options=None, **extra):
        """Append a mount (an existing mount at the same destination is kept: order matters)."""
        m = {"destination": destination}
        if type is not None:
            m["type"] = type
        if source is not None:
            m["source"] = os.fspath(source)
        if options is not None:
            m["options"] = list(options)
        m.update(extra)
        self.mounts().append(m)
        return self

    def add_bind_mount(self, source, destination, options=("rbind",), readonly=False):
        opts = list(options) + (["ro"] if readonly else [])
        return self.add_mount(destination, type="bind", source=source, options=opts)

    def remove_mount(self, destination):
        self.config["mounts"] = [m for m in self.mounts() if m["destination"] != destination]
        return self

    def get_mount(self, destination):
        for m in self.mounts():
            if m["destination"] == destination:
                return m
        return None

    def set_rootfs_propagation(self, propagation):
        self.linux["rootfsPropagation"] = propagation
        return self

    def set_masked_paths(self, paths):
        self.linux["maskedPaths"] = list(paths)
        return self

    def set_readonly_paths(self, paths):
        self.linux["readonlyPaths"] = list(paths)
        return self

    # -- devices / sysctl / resources / seccomp --------------------------------------------
    def add_device(self, path, type="c", major=1, minor=3, file_mode=0o666, uid=0, gid=0,
                   allow=True, access="rwm"):
        """Add a ``linux.devices`` entry (and, with ``allow``, a matching cgroup rule)."""
        dev = {"path": path, "type": type, "major": int(major), "minor": int(minor)}
        if file_mode is not None:
            dev["fileMode"] = int(file_mode)
        if uid is not None:
            dev["uid"] = int(uid)
        if gid is not None:
            dev["gid"] = int(gid)
        self.linux.setdefault("devices", []).append(dev)
        if allow:
            self.linux.setdefault("resources", {}).setdefault("devices", []).append(
                {"allow": True, "type": type, "major": int(major), "minor": int(minor),
                 "access": access})
        return self

    def add_sysctl(self, key, value):
        self.linux.setdefault("sysctl", {})[key] = str(value)
        return self

    def set_cgroups_path(self, path):
        self.linux["cgroupsPath"] = path
        return self

    def set_seccomp(self, profile):
        self.linux["seccomp"] = profile
        return self

    # -- hooks --------------------------------------------------------------------------
    def add_hook(self, kind, path, args=None, env=None, timeout=None):
        if kind not in HOOK_KINDS:
            raise ValueError(f"unknown hook kind {kind!r}")
        h = {"path": path}
        if args is not None:
            h["args"] = list(args)
        if env is not None:
            h["env"] = list(env)
        if timeout is not None:
            h["timeout"] = int(timeout)
        self.config.setdefault("hooks", {}).setdefault(kind, []).append(h)
        return self

    def add_logging_hook(self, kind, log_path, label=None, shell="/bin/sh"):
        """Add a hook that appends ``<label> <state JSON on one line>`` to ``log_path`` with a
        single write (hooks may run concurrently). Use a log path that exists at the same place
        inside the container (bind-mount its directory onto itself) so that createContainer /
        startContainer hooks, which run in the container's namespaces, reach it too."""
        label = label or kind
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
            raise ValueError(f"bad hook label {label!r}")
        script = 'l="' + label + ' $(tr -d \'\\n\')"; echo "$l" >> "$0"'
        return self.add_hook(kind, shell, ["sh", "-c", script, os.fspath(log_path)])


def new_bundle_dir(parent, prefix="bundle-"):
    """A fresh world-traversable directory under ``parent`` (created if missing)."""
    parent = os.fspath(parent)
    os.makedirs(parent, exist_ok=True)
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(d, 0o755)
    return d


def make_bundle(tmp_path, args=("true",), rootfs_template=None, hostname=None,
                terminal=False, write=True, **overrides):
    """Create a bundle in a new directory under ``tmp_path`` and return the ``Bundle``.

    The config is ``default_config()`` with ``process.terminal`` false, ``process.args`` =
    ``args``, a unique hostname, and ``overrides`` deep-merged into it (``process={"cwd":
    "/tmp"}``, ``linux={"sysctl": {...}}``; a ``None`` value deletes a key). config.json is
    written unless ``write`` is false."""
    b = Bundle(new_bundle_dir(tmp_path), rootfs_template=rootfs_template, hostname=hostname)
    b.set_terminal(terminal)
    if args is not None:
        b.set_args(*args)
    deep_merge(b.config, overrides)
    if write:
        b.write()
    return b
