"""Cgroups: host layout detection, the container's cgroup directories and the manager API.

Paths as runc computes them (cgroupsPath absolute, or relative to the runtime's own cgroup;
default "<id>" relative), creation on every hierarchy (v1 controllers, named ones, the unified
hierarchy of a hybrid host, or pure v2), placing the init before it runs anything, destroy.

The manager: ``set_resources`` (linux.resources; v1 in fs1.py, v2 in fs2.py, devices in
devices.py), ``freeze``/``thaw``, ``kill_all``, ``all_pids``, ``stats`` (stats.py), ``exists``.
A container's cgroup is "v2" when its only hierarchy is a pure unified one; a hybrid host is
managed through its v1 controllers (the unified directory is only joined), as runc does.

This module stays cheap to import (``state``, ``kill`` and ``delete`` use it): everything beyond
path handling is imported on first use.
"""
import errno
import os

# destroy() and destroy_dirs() live in ociruntime/cgremove.py (a plain `delete` imports only that)
from ociruntime.cgremove import destroy, destroy_dirs  # noqa: F401
from ociruntime.errors import OciError
from ociruntime.state import running_in_userns  # noqa: F401  (used below; tests patch it here)


def _mounts():
    """[(mountpoint, fstype, super options)] of the cgroup hierarchies visible to us."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            fstype = parts[sep + 1]
            if fstype in ("cgroup", "cgroup2"):
                out.append((parts[4], fstype, parts[sep + 3]))
    return out


def _own():
    """{controller-set string or '' for v2: own cgroup path} from /proc/self/cgroup."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            own[ctrls] = path
    return own


_HIERARCHIES = None


def hierarchies():
    """{key: (mountpoint, own path)}; key = mountpoint basename for v1 ('cpu', 'systemd', …), '' for v2.
    Read once per process (mountinfo and /proc/self/cgroup do not change under a CLI call)."""
    global _HIERARCHIES
    if _HIERARCHIES is None:
        _HIERARCHIES = _hierarchies()
    return dict(_HIERARCHIES)


def _hierarchies():
    own = _own()
    out = {}
    for mp, fstype, opts in _mounts():
        if fstype == "cgroup2":
            if "" not in out and "" in own:
                out[""] = (mp, own[""])
            continue
        names = [o for o in opts.split(",") if o not in ("rw", "ro") and not o.startswith(("release_agent", "clone_children", "xattr", "noprefix"))]
        key = None
        for ctrls, path in own.items():
            if ctrls and set(ctrls.split(",")) == set(names):
                key = ctrls
                break
        if key is None:
            continue
        out.setdefault(os.path.basename(mp), (mp, own[key]))
    return out


def container_paths(cgroups_path, cid):
    """Host directories of the container's cgroup on every hierarchy, keyed like hierarchies()."""
    rel = cgroups_path or cid
    if ":" in rel and not rel.startswith("/"):
        raise OciError(f"cgroupsPath {rel!r} looks like a systemd slice:prefix:name, which needs --systemd-cgroup")
    out = {}
    for key, (mp, own) in hierarchies().items():
        if os.path.isabs(rel):
            inner = rel
        else:
            inner = os.path.join(own, rel)
        inner = os.path.normpath("/" + inner)
        out[key] = os.path.join(mp, inner.lstrip("/"))
    return out


# --- rootless -----------------------------------------------------------------------------------------

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_IGNORABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def rootless_mode(value):
    """runc's global --rootless (true|false|auto, Go ParseBool spellings): whether to use the rootless
    cgroup manager, which ignores permission errors on hierarchies it could not create or join.
    auto: yes when euid != 0, or euid 0 inside a user namespace (runc shouldUseRootlessCgroupManager)."""
    v = value or "auto"
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    if v != "auto":
        raise OciError(f'strconv.ParseBool: parsing "{v}": invalid syntax')
    return os.geteuid() != 0 or running_in_userns()


def _go_strerror(e):
    """An OSError's text as Go prints it ("permission denied")."""
    s = e.strerror or str(e)
    return s[:1].lower() + s[1:]


def _ignorable(rootless, e):
    return rootless and isinstance(e, OSError) and e.errno in _IGNORABLE


def with_own(all_paths, paths):
    """Every hierarchy of ``all_paths``: the container's directory where it has one, else our own
    cgroup, where a rootless init stays (for the container's /sys/fs/cgroup mount)."""
    if len(paths) == len(all_paths):
        return paths
    h = hierarchies()
    return {k: paths.get(k) or os.path.normpath(os.path.join(h[k][0], h[k][1].lstrip("/"))) for k in all_paths
            if k in h}


def create(paths, rootless=False, kept=None, dropped=None):
    """mkdir -p each path; returns the list of directories this call created (for rollback).
    An existing non-empty or frozen cgroup is refused (runc factory_linux.go).
    rootless: a hierarchy where we may not create the directory (EACCES/EPERM/EROFS) is dropped
    from ``paths`` (in place) instead of failing, as runc's rootless manager does without an
    explicit cgroupsPath; a limit that needs it then fails in set_resources (v1) or in
    Fs2Manager.prepare (v2, runc fs2's wording).
    kept (a list): gets the directories that existed already (an adopted cgroup and its sub-cgroups),
    which delete leaves alone. dropped (a dict): gets {key: the OSError} of each hierarchy dropped."""
    made = []
    try:
        for key, path in list(paths.items()):
            try:
                _create_one(key, path, made, kept)
            except OSError as e:
                if not _ignorable(rootless, e):
                    raise
                del paths[key]
                if dropped is not None:
                    dropped[key] = e
        if is_v2(paths):
            # runc CreateCgroupPath: the leaf gets the controllers' files only when every
            # ancestor delegates them
            from ociruntime.cgroups.fs2 import enable_controllers
            enable_controllers(paths[""], _mountpoint_of(paths[""]))
    except OSError as e:
        destroy_dirs(made)
        raise OciError(f"create cgroup: {e.filename}: {e.strerror}")
    except BaseException:
        destroy_dirs(made)
        raise
    return made


def _create_one(key, path, made, kept=None):
    if os.path.isdir(path):
        # the whole subtree, as runc >= 1.2 (GetAllPids): a busy parent is not an empty cgroup
        subtree = [path] + [os.path.join(d, n) for d, dirs, _ in os.walk(path) for n in dirs]
        for d in subtree:
            pids = _procs(d)
            if pids:
                # runc's wording (factory_linux.go), which clients grep
                raise OciError(f"container's cgroup is not empty: {len(pids)} process(es) found ({d})")
        if is_path_frozen(path):
            raise OciError(f"cgroup {path} is frozen")
        if key and "cpuset" in key.split(","):
            _fill_cpuset_ancestors(path)
        if kept is not None:
            kept.extend(subtree)
        return
    todo = []
    d = path
    while not os.path.isdir(d):
        todo.append(d)
        d = os.path.dirname(d)
    if key and "cpuset" in key.split(","):
        _fill_cpuset_ancestors(d)
    for d in reversed(todo):
        os.mkdir(d, 0o755)
        made.append(d)
        if key:
            _inherit_cpuset(d)


def _fill_cpuset_ancestors(d):
    """runc (fs/cpuset.go ensureParent): an existing v1 cpuset cgroup on the way with empty cpus/mems
    (made by someone else with clone_children off) would refuse our tasks (ENOSPC): fill it, and any
    empty one above it, from the nearest ancestor that has them, top-down."""
    chain = []
    while True:
        f = os.path.join(d, "cpuset.cpus")
        parent = os.path.dirname(d)
        if not os.path.exists(f) or not os.path.exists(os.path.join(parent, "cpuset.cpus")) or parent == d:
            break  # the hierarchy's root
        with open(f) as fh, open(os.path.join(d, "cpuset.mems")) as fm:
            if fh.read().strip() and fm.read().strip():
                break
        chain.append(d)
        d = parent
    for d in reversed(chain):
        _inherit_cpuset(d)


def _inherit_cpuset(d):
    """A new v1 cpuset cgroup starts with empty cpus/mems and refuses tasks (ENOSPC): copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        f = os.path.join(d, name)
        if not os.path.exists(f):
            return
        with open(f) as fh:
            if fh.read().strip():
                continue
        with open(os.path.join(os.path.dirname(d), name)) as fh:
            val = fh.read().strip()
        with open(f, "w") as fh:
            fh.write(val)


def _procs(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def prewarm_attach():
    """Start, in a background thread, the kernel's slow path of the first cgroup migration, so that
    `apply` a few milliseconds later is fast.

    Every write to cgroup.procs takes the global cgroup_threadgroup_rwsem for writing, and a writer
    that finds it idle first waits a whole RCU grace period (rcu_sync_enter: ~10-20 ms here, the
    largest single cost of a create on a v1/hybrid host, paid by runc too). A writer arriving while
    the previous one is still in its exit grace period does not wait. So we write "0" (ourselves)
    into our own cgroup's cgroup.procs - a no-op move that changes nothing - while the main thread
    loads and checks the config, builds the plan and spawns the init; the real writes then find the
    semaphore warm. Only where the init is placed by cgroup.procs writes at all (any v1 hierarchy).
    Errors are ignored: the real write reports its own."""
    try:
        hs = hierarchies()
    except OSError:
        return
    target = next((os.path.join(mp, own.lstrip("/"), "cgroup.procs") for key, (mp, own) in hs.items() if key), None)
    if target is None:
        return

    def warm():
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError:
            pass
    import _thread
    _thread.start_new_thread(warm, ())


def apply(paths, pid, rootless=False):
    """Put pid into each hierarchy. rootless: a hierarchy we may not join is dropped from ``paths``
    (in place), as runc's rootless manager does."""
    for key, path in list(paths.items()):
        try:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError as e:
            if _ignorable(rootless, e):
                del paths[key]
                continue
            raise OciError(f"add pid {pid} to cgroup {path}: {e.strerror}")


def pids(paths):
    seen = set()
    for path in paths.values():
        seen.update(_procs(path))
    return sorted(seen)


def is_path_frozen(path):
    for name, frozen in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
        try:
            with open(os.path.join(path, name)) as f:
                if f.read().strip() == frozen:
                    return True
        except OSError:
            pass
    return False


def is_frozen(st):
    for key, path in (st.get("cgroup_paths") or {}).items():
        if key in ("freezer", "") and is_path_frozen(path):
            return True
    return False


# --- manager API -----------------------------------------------------------------------------------

def is_v2(paths):
    """True when the container's cgroup lives on a pure cgroup v2 host (one unified hierarchy)."""
    return bool(paths) and list(paths) == [""]


def _mountpoint_of(path):
    for mp, fstype, _ in _mounts():
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            return mp
    return os.path.dirname(path)


def _warn(msg):
    from ociruntime.log import log
    log.warning(msg)


SETUP_TASKS = 2  # the container's init and the helper that clones it


def set_resources(paths, resources, cid=None, skip_devices=False, warn=None, rootless=False,
                  source="config.json", pointer_base="/linux/resources"):
    """Apply a linux.resources dict to the container's cgroups (create: right after the
    directories exist and before the init is placed in them; update: with skip_devices).
    rootless: errors of the device controller are ignored (runc: "not expected to work").
    A setting this kernel has no file for is a ConfigError naming its field: ``source`` and
    ``pointer_base`` say where the resources came from (update: its request)."""
    from ociruntime.cgroups.files import CgroupError, HostLacks
    warn = warn or _warn
    if not skip_devices:
        limit = ((resources or {}).get("pids") or {}).get("limit")
        if limit is not None and 0 <= limit < SETUP_TASKS:
            # runc writes pids.max once its init is the only task; our limits are in place before
            # the init is cloned, and the setup briefly needs SETUP_TASKS tasks
            raise OciError(f"error setting cgroup config: pids.limit {limit} is too low: container setup "
                           f"needs {SETUP_TASKS} tasks (use a limit of at least {SETUP_TASKS})")
    try:
        if is_v2(paths):
            from ociruntime.cgroups import fs2
            fs2.set_resources(paths[""], resources or {}, warn, skip_devices=skip_devices,
                              ignore_devices=rootless)
        else:
            from ociruntime.cgroups import fs1
            fs1.set_resources(paths, resources or {}, warn, skip_devices=skip_devices,
                              ignore_devices=rootless)
    except HostLacks as e:
        from ociruntime.errors import ConfigError
        raise ConfigError(e.pointer(pointer_base), e.reason, source=source)
    except CgroupError as e:
        ctrl = getattr(e, "ctrl", None)
        if ctrl and not _mounted_v1(ctrl):
            from ociruntime.errors import ConfigError
            lacks = HostLacks(e.field, host_lacks_controller(ctrl))
            raise ConfigError(lacks.pointer(pointer_base), lacks.reason, source=source)
        raise OciError(f"error setting cgroup config: {e}")


def _mounted_v1(ctrl):
    try:
        return any(k and ctrl in k.split(",") for k in hierarchies())
    except OSError:
        return True


def kernel_controllers(proc_cgroups="/proc/cgroups"):
    """{controller: enabled} of the controllers this kernel was built with (/proc/cgroups)."""
    out = {}
    try:
        with open(proc_cgroups) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4 and not line.startswith("#"):
                    out[parts[0]] = parts[3] == "1"
    except OSError:
        pass
    return out


def _unified_controllers():
    try:
        h = hierarchies().get("")
        if not h:
            return []
        with open(os.path.join(h[0], "cgroup.controllers")) as f:
            return f.read().split()
    except OSError:
        return []


def host_lacks_controller(ctrl, proc_cgroups="/proc/cgroups"):
    """Why a v1 setting of ``ctrl`` cannot be applied on a host that mounts no hierarchy for it."""
    have = kernel_controllers(proc_cgroups)
    if ctrl not in have:
        why = f"the kernel has no {ctrl} controller"
    elif not have[ctrl]:
        why = f"the kernel's {ctrl} controller is disabled (cgroup_disable=)"
    elif ctrl in _unified_controllers():
        why = f"the kernel's {ctrl} controller is on the unified (v2) hierarchy only"
    else:
        why = f"the kernel's {ctrl} controller is mounted on no v1 hierarchy"
    return f"cannot set {ctrl} limit: this host has no {ctrl} cgroup v1 hierarchy ({why})"


def freeze(paths):
    if is_v2(paths):
        from ociruntime.cgroups import fs2
        fs2.freeze(paths[""])
    else:
        from ociruntime.cgroups import fs1
        fs1.freeze(paths)


def thaw(paths):
    if is_v2(paths):
        from ociruntime.cgroups import fs2
        fs2.thaw(paths[""])
    else:
        from ociruntime.cgroups import fs1
        fs1.thaw(paths)


def exists(paths):
    """runc Manager.Exists: the cgroup of the pids controller (v1: devices) still exists."""
    if not paths:
        return False
    if is_v2(paths):
        return os.path.isdir(paths[""])
    for key, path in paths.items():
        if key and "devices" in key.split(","):
            return os.path.isdir(path)
    return any(os.path.isdir(p) for p in paths.values())


def _pids_path(paths):
    if is_v2(paths):
        return paths[""]
    for key, path in paths.items():
        if key and "devices" in key.split(","):
            return path
    for key, path in paths.items():
        if key:
            return path
    return paths.get("")


def all_pids(paths):
    """Every pid in the container's cgroup and its sub-cgroups (runc GetAllPids)."""
    top = _pids_path(paths)
    out = []
    if not top:
        return out
    for dirpath, _dirs, _files in os.walk(top):
        out.extend(_procs(dirpath))
    return out


def kill_all(paths, sig):
    """Signal every process of the container's cgroup (runc signalAllProcesses): SIGKILL through
    cgroup.kill where the unified hierarchy has it (v2, and hybrid hosts), else freeze, signal
    each pid, thaw. Returns False when the cgroup no longer exists."""
    from ociruntime.lean import signal as _signal
    if not exists(paths):
        return False
    if sig == _signal.SIGKILL and paths.get(""):
        try:
            with open(os.path.join(paths[""], "cgroup.kill"), "w") as f:
                f.write("1")
            if not is_v2(paths) and any(is_path_frozen(p) for k, p in paths.items() if "freezer" in k.split(",")):
                try:
                    thaw(paths)  # hybrid host: the v1 freezer holds the killed tasks until thawed
                except OciError:
                    pass
            return True
        except FileNotFoundError:
            pass
        except OSError:
            pass  # fall back to the signal loop
    from ociruntime.log import log
    was_paused = any(is_path_frozen(p) for k, p in paths.items() if k in ("", "freezer") or "freezer" in k.split(","))
    frozen = False
    try:
        freeze(paths)
        frozen = True
    except OciError as e:
        log.warning(str(e))
    try:
        for pid in all_pids(paths):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except OSError as e:
                log.warning(f"kill {pid}: {e.strerror}")
    finally:
        # a paused container stays paused, except for SIGKILL (a frozen task does not die)
        if (frozen and not was_paused) or sig == _signal.SIGKILL:
            try:
                thaw(paths)
            except OciError as e:
                log.warning(str(e))
    return True


def stats(paths):
    """runc's libcontainer cgroup stats as the ``data`` object of ``events`` (types.Stats)."""
    from ociruntime.cgroups import cgstats as statsmod
    return statsmod.collect(paths)


# --- the managers: one interface, three drivers ---------------------------------------------------

class Manager:
    """A container's cgroup, as runc's cgroups.Manager: what the lifecycle calls, whichever driver
    made it. ``paths``: {hierarchy key: cgroupfs directory} (v2: only ""); ``made``: the directories
    this container created (a rollback removes only those).

    create: ``prepare(resources)`` before the init exists, ``apply(pid)`` once it does (the init is
    in its cgroup, with its limits, before it runs anything of the user's), ``rollback()`` when the
    create fails at any step. Afterwards: ``set``, ``freeze``/``thaw``, ``exists``, ``all_pids``,
    ``kill_all``, ``stats``, ``oom_notifier`` and ``destroy``; ``state()`` is what state.json keeps
    so that ``manager_of(state)`` finds the same manager again."""

    driver = "cgroupfs"

    def __init__(self, paths, made=None, rootless=False, lax=False, kept=None):
        self.paths = paths
        self.made = list(made or [])
        self.kept = list(kept or [])  # an adopted cgroup (and its subtree): delete leaves it
        self.rootless = rootless
        self.lax = lax  # rootless without a cgroupsPath: hierarchies we may not use are dropped
        self.all_paths = dict(paths)

    # --- create
    def prepare(self, resources):
        self.made = create(self.paths, rootless=self.lax, kept=self.kept)
        self.set(resources, create=True)

    def apply(self, pid):
        apply(self.paths, pid, rootless=self.lax)

    def mount_paths(self):
        """The directories the container's cgroup mount shows (v1: a rootless init that could not be
        placed on a hierarchy shows our own cgroup there; v2: the container's cgroup, made or not, as
        runc's cgroup2Path, bound only where a fresh cgroup2 mount is refused)."""
        if is_v2(self.all_paths):
            return self.all_paths
        return with_own(self.all_paths, self.paths)

    def rollback(self):
        destroy_dirs(self.made)  # only what this create made: a pre-existing cgroup stays

    def uses_procs_writes(self):
        return any(self.paths)

    # --- afterwards
    def set(self, resources, create=False, skip_devices=False, warn=None, source="config.json",
            pointer_base="/linux/resources"):
        """source/pointer_base: where the resources came from, for the error naming a setting this
        kernel lacks (update: its request)."""
        set_resources(self.paths, resources, skip_devices=skip_devices and not create, warn=warn,
                      rootless=self.rootless, source=source, pointer_base=pointer_base)

    def freeze(self):
        freeze(self.paths)

    def thaw(self):
        thaw(self.paths)

    def exists(self):
        return exists(self.paths)

    def is_frozen(self):
        return any(is_path_frozen(p) for k, p in self.paths.items()
                   if k in ("freezer", "") or "freezer" in k.split(","))

    def all_pids(self):
        return all_pids(self.paths)

    def kill_all(self, sig):
        return kill_all(self.paths, sig)

    def stats(self):
        return stats(self.paths)

    def oom_notifier(self):
        raise NotImplementedError

    def destroy(self):
        """-> [(dir, error text)] of the directories that stay busy."""
        return destroy(self.paths, self.made, self.kept)

    def state(self):
        return {"cgroup_paths": self.paths, "cgroup_made": self.made, "cgroup_kept": self.kept}


class FsManager(Manager):
    """cgroupfs on v1 controllers (a hybrid host's unified directory is only joined): runc's fs."""

    def oom_notifier(self):
        from ociruntime.cgroups.events import OOMv1
        from ociruntime.cgroups.fs1 import controller_path
        try:
            return OOMv1(controller_path(self.paths, "memory"))
        except OSError as e:
            raise OciError(f"unable to register OOM notifications: {e.strerror}")


class Fs2Manager(Manager):
    """cgroupfs on a pure cgroup v2 host: runc's fs2."""

    def prepare(self, resources):
        dropped = {}
        self.made = create(self.paths, rootless=self.lax, kept=self.kept, dropped=dropped)
        if "" in dropped:
            from ociruntime.cgroups.fs2 import needs_controllers
            if needs_controllers(resources, _mountpoint_of(self.all_paths[""]) or "/sys/fs/cgroup"):
                # runc fs2 Apply: the rootless manager without a cgroup of its own runs the container
                # in the caller's cgroup only when it has no limit to set there
                e = dropped[""]
                raise OciError("unable to apply cgroup configuration: rootless needs no limits + no cgrouppath "
                               f"when no permission is granted for cgroups: mkdir {e.filename}: {_go_strerror(e)}")
        self.set(resources, create=True)

    def oom_notifier(self):
        from ociruntime.cgroups.events import OOMv2
        return OOMv2(self.paths[""])


def _fs_manager(paths, made=None, rootless=False, lax=False, kept=None):
    cls = Fs2Manager if is_v2(paths) else FsManager
    return cls(paths, made, rootless=rootless, lax=lax, kept=kept)


def new_manager(cid, linux, systemd=False, rootless=False, annotations=None):
    """The manager of a container being created: the systemd driver with --systemd-cgroup, else
    cgroupfs (v1 or v2, as the host has it). Nothing is created yet (see Manager.prepare)."""
    if systemd:
        from ociruntime.cgroups.systemd import SystemdManager
        return SystemdManager.for_create(cid, linux.get("cgroupsPath"), rootless, annotations or {})
    paths = container_paths(linux.get("cgroupsPath"), cid)
    return _fs_manager(paths, rootless=rootless, lax=rootless and not linux.get("cgroupsPath"))


def manager_of(st):
    """The manager of an existing container, from its state (or a crashed create's record)."""
    if st.get("systemd"):
        from ociruntime.cgroups.systemd import SystemdManager
        return SystemdManager.from_state(st)
    return _fs_manager(st.get("cgroup_paths") or {}, st.get("cgroup_made") or [],
                       rootless=bool(st.get("rootless")), kept=st.get("cgroup_kept") or [])
