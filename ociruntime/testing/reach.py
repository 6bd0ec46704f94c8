"""Paths another uid can reach, wherever the checkout and $TMPDIR live.

Tests that run the runtime (or let a container's processes reach their bundle) as an unprivileged
uid -- rootless runs, user-namespaced containers -- need every directory on the way traversable by
that uid. A checkout in root's home (/root is 0700) or a $TMPDIR inside it is not. Nothing here
changes the permissions of an existing directory; instead:

* ``reachable_base()``: a directory for temporary files that any uid can traverse ($TMPDIR when it
  is, else /tmp, /var/tmp, /dev/shm);
* ``can_run_as(path, uid)``: whether ``uid`` (no groups) can run the runtime (``path --version``);
* ``RuntimeCopy``: a temporary install of this package (its modules, the cffi shim, the C init) and
  of the packages it needs, with a launcher like ``make build``'s, under ``reachable_base()``;
  ``remove()`` deletes it;
* ``runtime_for_others(path)``: ``path`` when an unprivileged uid can run it, else a ``RuntimeCopy``
  of this package (when ``path`` is this package's runtime), else a ``ReachError`` saying why.

The pytest plugin's session fixture ``oci_runtime_for_others`` wraps the last one.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

#: an unprivileged uid/gid for probes: no passwd entry, owns nothing (its "other" bits decide)
PROBE_ID = 3_999_999


class ReachError(RuntimeError):
    pass


def others_can_traverse(path):
    """Every directory from / down to ``path`` (resolved) is searchable by "other"."""
    p = os.path.realpath(path)
    while True:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            return False
        if p == "/":
            return True
        p = os.path.dirname(p)


def reachable_base():
    """A writable directory for temporary files below which any uid can traverse."""
    seen = []
    for cand in (os.environ.get("TMPDIR"), tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if not cand or cand in seen:
            continue
        seen.append(cand)
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and others_can_traverse(cand):
            return cand
    raise ReachError(f"no temporary directory every uid can traverse (tried {', '.join(seen)})")


def mkdtemp(prefix="ocit-", base=None):
    """A new 0755 directory under ``base`` (default ``reachable_base()``)."""
    d = tempfile.mkdtemp(prefix=prefix, dir=base or reachable_base())
    os.chmod(d, 0o755)
    return d


def setpriv_argv(uid, gid=None, *args):
    """``args`` run as uid:gid with no supplementary groups (util-linux setpriv)."""
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    gid = uid if gid is None else gid
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *map(str, args)]


def can_run_as(path, uid=PROBE_ID):
    """(ok, why): whether ``uid`` can start ``path --version`` (its interpreter, package, shim)."""
    try:
        r = subprocess.run(setpriv_argv(uid, uid, path, "--version"), capture_output=True, text=True,
                           timeout=60, cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return r.returncode == 0, (r.stderr or r.stdout).strip()


def _package_dir():
    import ociruntime
    return os.path.dirname(os.path.abspath(ociruntime.__file__))


def is_this_package_runtime(path):
    """``path`` is a launcher of this package (make build's, a copy's) or the command a wheel installs
    (a small static program carrying launcher.ENTRY_CODE): a copy of the package this interpreter
    imports can stand in for it."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b"from ociruntime" in head


def _requirement_names(reqs):
    out = []
    for r in reqs or ():
        name, _, marker = r.partition(";")
        if "extra" in marker or "Windows" in marker or "win32" in marker:
            continue
        for stop in " <>=!~[(":
            name = name.split(stop, 1)[0]
        if name:
            out.append(name)
    return out


def _needed_distributions(top=("cffi", "jsonschema", "pyroute2")):
    """The installed distributions this package imports (its requirements, recursively)."""
    from importlib import metadata
    try:
        todo = _requirement_names(metadata.distribution("ociruntime").requires)
    except metadata.PackageNotFoundError:
        todo = list(top)
    seen, dists = set(), []
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            d = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional one that is not installed: the runtime copes without it too
        dists.append(d)
        todo += _requirement_names(d.requires)
    return dists


def _make_readable(root):
    for dirpath, dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444 | (0o111 if os.stat(p).st_mode & 0o100 else 0))


class RuntimeCopy:
    """A temporary install of this package and its dependencies that any uid can run: ``path`` is
    its launcher (``#!<python> -IS``, like make build's). Remove it with ``remove()``."""

    def __init__(self, base=None, python=None):
        self.dir = mkdtemp(prefix="ocit-runtime-", base=base)
        try:
            self._build(python)
        except BaseException:
            self.remove()
            raise

    def _build(self, python):
        lib = os.path.join(self.dir, "lib")
        os.mkdir(lib)
        pkg = os.path.join(lib, "ociruntime")
        shutil.copytree(_package_dir(), pkg, ignore=shutil.ignore_patterns("*.tmp"))
        if not os.path.isdir(os.path.join(pkg, "schemas")):
            # a source tree's package reads ../schemas; an installed one carries them (as here)
            from ociruntime import schema
            src = next(d for d in schema.SCHEMA_DIRS if os.path.isdir(d))
            shutil.copytree(src, os.path.join(pkg, "schemas"))
        for d in _needed_distributions():
            base = os.path.realpath(str(d.locate_file("")))
            for f in d.files or ():
                src = os.path.realpath(str(d.locate_file(f)))
                if not src.startswith(base + os.sep) or not os.path.isfile(src):
                    continue  # scripts in bin/, files outside site-packages
                dst = os.path.join(lib, os.path.relpath(src, base))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
        _make_readable(self.dir)
        # the base interpreter (a venv's python is a symlink into a directory that may be private)
        self.python = python or os.path.realpath(sys.executable)
        if not others_can_traverse(os.path.dirname(self.python)):
            raise ReachError(f"the interpreter {self.python} is not reachable by other uids")
        from ociruntime import launcher
        os.mkdir(os.path.join(self.dir, "bin"), 0o755)
        self.path = os.path.join(self.dir, "bin", "ociruntime")
        launcher.write(self.path, python=self.python, pkg_parent=lib, site=[])

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def runtime_for_others(path, uid=PROBE_ID, base=None):
    """(runtime path any unprivileged uid can run, RuntimeCopy or None to remove afterwards)."""
    ok, why = can_run_as(path, uid)
    if ok:
        return path, None
    if not is_this_package_runtime(path):
        raise ReachError(f"uid {uid} cannot run {path} ({why}), and it is not this package's runtime "
                         f"(which could be copied to a place every uid reaches)")
    copy = RuntimeCopy(base=base)
    ok, why2 = can_run_as(copy.path, uid)
    if not ok:
        copy.remove()
        raise ReachError(f"uid {uid} cannot run {path} ({why}) nor a copy of it ({why2})")
    return copy.path, copy
