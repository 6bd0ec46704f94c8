"""Cgroups: host layout detection and the container's cgroup directories.

This is the seam the cgroups issue fills in (resources, freeze, update, stats, systemd driver).
Today: paths as runc computes them (cgroupsPath absolute, or relative to the runtime's own cgroup;
default "<id>" relative), creation on every hierarchy (v1 controllers, named ones, the unified
hierarchy of a hybrid host, or pure v2), placing the init before it runs anything, destroy.
"""
import errno
import os
import time

from ociruntime.errors import OciError


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


def hierarchies():
    """{key: (mountpoint, own path)}; key = mountpoint basename for v1 ('cpu', 'systemd', …), '' for v2."""
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


def create(paths):
    """mkdir -p each path; returns the list of directories this call created (for rollback).
    An existing non-empty or frozen cgroup is refused (runc factory_linux.go)."""
    made = []
    try:
        for key, path in paths.items():
            if os.path.isdir(path):
                if _procs(path):
                    raise OciError(f"cgroup {path} is not empty: container's cgroup must be empty")
                if is_path_frozen(path):
                    raise OciError(f"cgroup {path} is frozen")
                continue
            todo = []
            d = path
            while not os.path.isdir(d):
                todo.append(d)
                d = os.path.dirname(d)
            for d in reversed(todo):
                os.mkdir(d, 0o755)
                made.append(d)
                _inherit_cpuset(d)
    except OSError as e:
        destroy_dirs(made)
        raise OciError(f"create cgroup: {e.filename}: {e.strerror}")
    except BaseException:
        destroy_dirs(made)
        raise
    return made


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


def apply(paths, pid):
    for path in paths.values():
        try:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError as e:
            raise OciError(f"add pid {pid} to cgroup {path}: {e.strerror}")


def pids(paths):
    seen = set()
    for path in paths.values():
        seen.update(_procs(path))
    return sorted(seen)


def destroy(paths, made=()):
    """Remove the container's cgroup on every hierarchy, then the parents this container created
    (those that are now empty; a parent shared with other containers stays)."""
    destroy_dirs(list(paths.values()))
    for d in sorted(set(made) - set(paths.values()), key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass


def destroy_dirs(dirs, timeout=5.0):
    """rmdir the given directories, deepest first; retries while they are still busy."""
    deadline = time.monotonic() + timeout
    for d in sorted(dirs, key=len, reverse=True):
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                raise OciError(f"remove cgroup {d}: {e.strerror}")


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
