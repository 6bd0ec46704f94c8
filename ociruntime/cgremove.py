"""Removing a container's cgroup directories: `delete`'s hot path. Outside the cgroups package and on
`posix` rather than `os`, so that a plain delete imports neither (≈1.5 ms of start-up CPU on every
call); ociruntime.cgroups re-exports destroy and destroy_dirs from here."""
import errno
from ociruntime.lean import posix
import time

from ociruntime.errors import OciError


def _join(a, b):
    return a + b if a.endswith("/") else f"{a}/{b}"


def _subdirs(path, out):
    """Appends every directory below path, as os.walk(path) lists them (unreadable directories are
    skipped, symbolic links to directories are listed but not followed)."""
    try:
        it = posix.scandir(path)
    except OSError:
        return
    with it:
        entries = list(it)
    for e in entries:
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            sub = _join(path, e.name)
            out.append(sub)
            if not e.is_symlink():
                _subdirs(sub, out)


def destroy_state(st):
    """Remove the cgroup of a container from its state: its directories, or, for a container of the
    systemd driver, its unit (through the cgroups package's manager: only those import D-Bus). Returns
    [(dir, error text)] of the directories that stay busy (see destroy)."""
    if st.get("systemd"):
        from ociruntime.cgroups import manager_of
        return manager_of(st).destroy() or []
    return destroy(st.get("cgroup_paths") or {}, st.get("cgroup_made") or [], st.get("cgroup_kept") or [])


def destroy(paths, made=(), kept=()):
    """Remove the container's cgroup on every hierarchy, then the parents this container created
    (those that are now empty; a parent shared with other containers stays). kept: the directories that
    existed before create adopted them (an existing cgroupsPath and its sub-cgroups) stay: delete removes
    only what the container's life made. Every directory is tried; returns [(dir, error text)] of those
    that could not be removed (busy), so that the caller can still remove the state."""
    subs = []
    for path in paths.values():  # sub-cgroups made inside (exec --cgroup, nested managers) go first, as runc
        _subdirs(path, subs)
    keep = set(kept)
    failed = _rmdirs([d for d in subs + list(paths.values()) if d not in keep])
    for d in sorted(set(made) - set(paths.values()) - keep, key=len, reverse=True):
        try:
            posix.rmdir(d)
        except OSError:
            pass
    return failed


def _rmdirs(dirs, timeout=5.0):
    failed = []
    deadline = time.monotonic() + timeout
    for d in sorted(dirs, key=len, reverse=True):
        while True:
            try:
                posix.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                failed.append((d, e.strerror))
                break
    return failed


def destroy_dirs(dirs, timeout=5.0):
    """rmdir the given directories, deepest first; retries while they are still busy. Every one is
    tried; the first that stays is the error."""
    failed = _rmdirs(dirs, timeout)
    if failed:
        d, why = failed[0]
        raise OciError(f"remove cgroup {d}: {why}")
