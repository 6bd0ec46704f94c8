"""Drive an OCI runtime binary (ours, runc, crun, …) from tests.

Every ``Runtime`` object gets a private state root (``--root``) in a fresh temp dir, runs every
command with a timeout, remembers every container id it handed out and ``cleanup()`` force-deletes
them, removes its temp dir and reports what was left behind.

Detached commands (``create``, ``run --detach``) hand their stdio to the container, so their
stdout/stderr go to per-container files (``Runtime.output(id)``) instead of pipes: a pipe would
stay open as long as the container lives. Foreground ``run`` uses pipes.
"""

import ctypes
import json
import os
import re
import shutil
import signal as _signal
import subprocess
import tempfile
import time
import uuid

DEFAULT_TIMEOUT = 60.0
UNIFIED_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"
CRUN_SPEC_VERSION = "1.1.0"

#: runc's container id rule (plus: not "." or "..")
VALID_ID_RE = re.compile(r"^[A-Za-z0-9_+.-]+$")

_ENV_DROP = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class RuntimeCommandError(AssertionError):
    """A runtime command that was expected to succeed failed (an AssertionError so that pytest
    shows it as a test failure with the command, exit code and output)."""

    def __init__(self, result, what=None):
        self.result = result
        super().__init__(f"{what or 'runtime command failed'}: {result.describe()}")


class Result:
    """What a runtime command did: ``rc`` (alias ``returncode``), ``stdout``, ``stderr`` (str),
    ``args`` (the argv), ``timed_out``, ``duration``."""

    def __init__(self, args, rc, stdout, stderr, timed_out=False, duration=0.0):
        self.args = list(args)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.duration = duration

    @property
    def returncode(self):
        return self.rc

    @property
    def ok(self):
        return self.rc == 0 and not self.timed_out

    @property
    def output(self):
        return self.stdout + self.stderr

    def check(self, what=None):
        if not self.ok:
            raise RuntimeCommandError(self, what)
        return self

    def describe(self):
        cmd = " ".join(_shquote(a) for a in self.args)
        s = f"`{cmd}` -> {'TIMEOUT' if self.timed_out else 'exit ' + str(self.rc)}"
        if self.stdout:
            s += f"\n--- stdout ---\n{_clip(self.stdout)}"
        if self.stderr:
            s += f"\n--- stderr ---\n{_clip(self.stderr)}"
        return s

    def __repr__(self):
        return (f"Result(rc={self.rc!r}, stdout={_clip(self.stdout, 200)!r}, "
                f"stderr={_clip(self.stderr, 200)!r}{', timed_out=True' if self.timed_out else ''})")


def _clip(s, n=4000):
    return s if len(s) <= n else s[:n] + f"... [{len(s) - n} more chars]"


def _shquote(a):
    return a if re.fullmatch(r"[\w@%+=:,./-]+", a or "x") else "'" + a.replace("'", "'\\''") + "'"


def new_container_id(prefix="t-"):
    return prefix + uuid.uuid4().hex[:16]


def _flag_args(flags):
    """``pid_file="/p", no_pivot=True, preserve_fds=2`` -> ``--pid-file /p --no-pivot --preserve-fds 2``."""
    out = []
    for name, value in flags.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                out += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
        else:
            out += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return out


def hybrid_cgroups():
    """True on a host whose /sys/fs/cgroup is v1 with a unified v2 hierarchy that has
    controllers enabled (the layout crun 1.8.1 refuses)."""
    try:
        with open(UNIFIED_CONTROLLERS) as f:
            return bool(f.read().strip())
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# mounts / cgroups / processes: leftover detection and careful removal
# --------------------------------------------------------------------------------------------

def _unescape_mountinfo(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mountpoints(mountinfo="/proc/self/mountinfo"):
    """Mount points (decoded) of the calling process's mount namespace, in mountinfo order."""
    out = []
    try:
        with open(mountinfo) as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4:
                    out.append(_unescape_mountinfo(parts[4]))
    except OSError:
        pass
    return out


def mounts_under(*dirs):
    """Mount points at or below any of ``dirs`` (realpaths), deepest first."""
    prefixes = []
    for d in dirs:
        if not d:
            continue
        d = os.path.realpath(os.fspath(d))
        prefixes.append(d.rstrip("/") or "/")
    found = []
    for mp in mountpoints():
        for p in prefixes:
            if p != "/" and (mp == p or mp.startswith(p + "/")):
                found.append(mp)
                break
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


_libc = None


def _umount_detach(path):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    MNT_DETACH = 2
    UMOUNT_NOFOLLOW = 8
    rc = _libc.umount2(os.fsencode(path), MNT_DETACH | UMOUNT_NOFOLLOW)
    return rc == 0


def unmount_under(*dirs):
    """Lazily unmount every mount below ``dirs`` (only ever called on the tests' own temp dirs).
    Returns the mount points that could not be removed."""
    for _ in range(3):
        mps = mounts_under(*dirs)
        if not mps:
            return []
        for mp in mps:
            _umount_detach(mp)
    return mounts_under(*dirs)


def safe_rmtree(path):
    """Remove a test temp dir without ever following a mount point out of it.

    Refuses (raises OSError) if something is still mounted below ``path`` after trying to
    unmount it; never crosses into another filesystem."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    left = unmount_under(path)
    if left:
        raise OSError(f"refusing to remove {path}: still mounted below it: {left}")
    try:
        root_dev = os.lstat(path).st_dev
    except OSError:
        return

    def _onerror(func, p, exc_info):
        # a directory we cannot enter or a file we cannot remove: make it writable and retry once
        try:
            os.chmod(os.path.dirname(p) or ".", 0o755)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o755)
            func(p)
        except OSError:
            pass

    for dirpath, dirnames, filenames in os.walk(path, topdown=True):
        keep = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if st.st_dev != root_dev:
                raise OSError(f"refusing to remove {path}: {full} is on another filesystem")
            keep.append(d)
        dirnames[:] = keep
    shutil.rmtree(path, onerror=_onerror)


def cgroup_dirs_named(names, base="/sys/fs/cgroup", max_depth=4):
    """Directories under ``base/`` (v1: below a hierarchy ``base/*/``; v2: ``base/`` is the hierarchy)
    whose basename is in ``names`` (bounded walk)."""
    names = set(names)
    found = []
    if not names or not os.path.isdir(base):
        return found

    def walk(d, depth):
        try:
            it = list(os.scandir(d))
        except OSError:
            return
        for e in it:
            try:
                if not e.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            if e.name in names:
                found.append(e.path)
            if depth < max_depth:
                walk(e.path, depth + 1)

    try:
        hierarchies = [e.path for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return found
    for h in hierarchies:
        if os.path.basename(h) in names:  # pure v2: a container's cgroup may sit right below the root
            found.append(h)
        walk(h, 1)
    return sorted(found)


def remove_cgroup_dir(path):
    """Kill the processes in a leftover (test-owned) cgroup, then rmdir it (deepest first)."""
    for dirpath, dirnames, _ in sorted(os.walk(path, topdown=False), key=lambda t: -len(t[0])):
        for procs_file in ("cgroup.procs", "tasks"):
            try:
                with open(os.path.join(dirpath, procs_file)) as f:
                    pids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except OSError:
                    pass
    deadline = time.monotonic() + 5
    while True:
        ok = True
        for dirpath, _, _ in sorted(os.walk(path, topdown=False), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        if ok or time.monotonic() > deadline:
            return ok
        time.sleep(0.05)


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat (None if gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    if rest and rest[0] in ("Z", "X"):
        return None
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


# --------------------------------------------------------------------------------------------

class Runtime:
    """One runtime binary with a private state root.

    ``Runtime(binary, root=None, timeout=60, crun_wrap=None, global_args=(), env=None,
    name=None, spec_version=None)``:
    ``root`` defaults to ``<private tmp dir>/root`` (nested, so that a buggy runtime resolving
    ``<root>/..`` still stays inside the private dir). ``crun_wrap`` runs every command inside
    ``unshare --mount`` with the host's unified ``cgroup.controllers`` covered by an empty file
    (crun 1.8.1 refuses hybrid cgroups otherwise); ``None`` means "when the binary is named
    crun* and the host is hybrid". ``spec_version``: the ``ociVersion`` this runtime needs in
    config.json (crun 1.8.1 rejects anything above 1.1.x with ``unknown version specified``);
    None = leave bundles alone (``container_view`` honours it)."""

    def __init__(self, binary, root=None, timeout=DEFAULT_TIMEOUT, crun_wrap=None,
                 global_args=(), env=None, name=None, spec_version=None):
        if not binary:
            raise ValueError("no runtime binary given")
        self.binary = os.fspath(binary)
        self.name = name or os.path.basename(self.binary)
        self.timeout = timeout
        self.global_args = list(global_args)
        self.workdir = tempfile.mkdtemp(prefix=f"oci-rt-{self.name}-")
        os.chmod(self.workdir, 0o711)
        self._own_root = root is None
        self.root = os.path.abspath(os.fspath(root)) if root else os.path.join(self.workdir, "root")
        self.iodir = os.path.join(self.workdir, "io")
        os.makedirs(self.iodir, mode=0o755, exist_ok=True)
        os.chmod(self.iodir, 0o755)
        if crun_wrap is None:
            crun_wrap = self.name.startswith("crun") and hybrid_cgroups()
        self.crun_wrap = bool(crun_wrap)
        if spec_version is None and self.name.startswith("crun"):
            spec_version = CRUN_SPEC_VERSION
        self.spec_version = spec_version
        self._empty_file = None
        if self.crun_wrap:
            self._empty_file = os.path.join(self.workdir, "empty-controllers")
            open(self._empty_file, "w").close()
        base_env = dict(os.environ if env is None else env)
        for k in _ENV_DROP:
            base_env.pop(k, None)
        self.env = base_env
        self.ids = []            # every id handed to create/run, in order
        self._procs = {}         # id -> (pid, start_time) seen in state
        self.log = []            # every Result, for debugging
        self.cleaned = False

    def __repr__(self):
        return f"Runtime({self.binary!r}, root={self.root!r})"

    # -- command plumbing ----------------------------------------------------------------
    def argv(self, *args, global_args=None):
        g = self.global_args if global_args is None else list(global_args)
        cmd = [self.binary, "--root", self.root, *g, *[os.fspath(a) for a in args]]
        if self.crun_wrap:
            cmd = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                   'mount --bind "$0" ' + UNIFIED_CONTROLLERS + ' && exec "$@"',
                   self._empty_file, *cmd]
        return cmd

    def call(self, *args, timeout=None, input=b"", cwd=None, env=None, global_args=None,
             stdout=None, stderr=None):
        """Run ``binary --root ROOT [global_args] *args`` and return a ``Result``.

        ``stdout``/``stderr`` may be file objects (the result then holds what was appended to
        them); by default both are captured through pipes. stdin is a pipe fed with ``input``
        (empty by default) and then closed; /dev/null is never handed to a runtime."""
        cmd = self.argv(*args, global_args=global_args)
        timeout = self.timeout if timeout is None else timeout
        env = self.env if env is None else env
        files = {}
        for key, f in (("stdout", stdout), ("stderr", stderr)):
            if f is not None:
                f.flush()
                files[key] = (f, os.fstat(f.fileno()).st_size)
        t0 = time.monotonic()
        timed_out = False
        try:
            p = subprocess.Popen(
                cmd, stdin=subprocess.PIPE,
                stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=stderr if stderr is not None else subprocess.PIPE,
                cwd=cwd, env=env, close_fds=True)
        except OSError as e:
            r = Result(cmd, 127, "", f"cannot execute {cmd[0]}: {e}", duration=0.0)
            self.log.append(r)
            return r
        try:
            out, err = p.communicate(input=input or b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            if p.poll() is None:
                p.kill()  # only the runtime process we started
            try:
                # a container (grand)child may still hold our pipes: do not wait for its EOF
                out, err = p.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                for f in (p.stdout, p.stderr):
                    if f:
                        f.close()
                p.wait()
                out, err = b"", b"(output lost: pipes still held open after the timeout)"
        dur = time.monotonic() - t0
        out = (out or b"").decode("utf-8", "replace")
        err = (err or b"").decode("utf-8", "replace")
        if "stdout" in files:
            out = _read_from(files["stdout"][0].name, files["stdout"][1])
        if "stderr" in files:
            err = _read_from(files["stderr"][0].name, files["stderr"][1])
        r = Result(cmd, p.returncode if not timed_out else -9, out, err, timed_out, dur)
        self.log.append(r)
        return r

    def new_id(self, prefix="t-"):
        cid = new_container_id(prefix)
        self.ids.append(cid)
        return cid

    def _track(self, cid):
        if cid not in self.ids:
            self.ids.append(cid)

    def io_paths(self, cid):
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", cid) or "_"
        if safe in (".", ".."):
            safe = "_" + safe
        return (os.path.join(self.iodir, safe + ".out"), os.path.join(self.iodir, safe + ".err"))

    def _detached_call(self, cid, *args, **kw):
        out_path, err_path = self.io_paths(cid)
        with open(out_path, "ab") as out, open(err_path, "ab") as err:
            os.chmod(out_path, 0o666)
            os.chmod(err_path, 0o666)
            return self.call(*args, stdout=out, stderr=err, **kw)

    def output(self, cid):
        """(stdout, stderr) written so far by a detached container (and by the runtime
        commands that created it)."""
        out_path, err_path = self.io_paths(cid)
        return (_read_from(out_path, 0), _read_from(err_path, 0))

    # -- lifecycle commands ------------------------------------------------------------------
    def create(self, id, bundle, timeout=None, cwd=None, **flags):
        """``create --bundle B [flags] ID``; the container's stdio go to ``output(id)`` files."""
        cid = id if id is not None else self.new_id()
        self._track(cid)
        r = self._detached_call(cid, "create", "--bundle", _bundle_path(bundle),
                                *_flag_args(flags), cid, timeout=timeout, cwd=cwd)
        r.id = cid
        return r

    def start(self, id, timeout=None):
        return self.call("start", id, timeout=timeout)

    def state_result(self, id, timeout=None):
        """``state ID`` as a ``Result`` (the init pid it reports is remembered for cleanup)."""
        r = self.call("state", id, timeout=timeout)
        if r.ok and id not in self._procs:
            try:
                pid = json.loads(r.stdout).get("pid")
            except (ValueError, AttributeError):
                pid = None
            if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
                start = proc_start_time(pid)
                if start is not None:
                    self._procs[id] = (pid, start)
        return r

    def state(self, id, timeout=None):
        """Parsed ``state ID``; raises RuntimeCommandError if it fails or is not JSON."""
        r = self.state_result(id, timeout=timeout)
        r.check(f"state {id}")
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise RuntimeCommandError(r, f"state {id}: stdout is not JSON") from None

    def status(self, id):
        """The ``status`` field, or None if ``state`` fails."""
        r = self.state_result(id)
        if not r.ok:
            return None
        try:
            return json.loads(r.stdout).get("status")
        except (ValueError, AttributeError):
            return None

    def kill(self, id, signal=None, all=False, timeout=None):
        args = ["kill"] + (["--all"] if all else []) + [id]
        if signal is not None:
            args.append(str(signal))
        return self.call(*args, timeout=timeout)

    def delete(self, id, force=False, timeout=None):
        return self.call("delete", *(["--force"] if force else []), id, timeout=timeout)

    def run(self, id, bundle, detach=False, timeout=None, input=b"", cwd=None, **flags):
        """``run --bundle B [flags] ID``. Foreground: returns the container's exit code as
        ``rc`` and its output in stdout/stderr. With ``detach`` the stdio go to files as for
        ``create``."""
        cid = id if id is not None else self.new_id()
        self._track(cid)
        args = ["run", "--bundle", _bundle_path(bundle)]
        if detach:
            args.append("--detach")
        args += _flag_args(flags)
        args.append(cid)
        if detach:
            r = self._detached_call(cid, *args, timeout=timeout, cwd=cwd)
        else:
            r = self.call(*args, timeout=timeout, input=input, cwd=cwd)
        r.id = cid
        return r

    def run_shell(self, bundle, script, id=None, timeout=None, **flags):
        """Foreground-run ``/bin/sh -c script`` in ``bundle`` (sets ``process.args`` and
        writes config.json); returns the ``Result`` (``rc`` = the script's exit status)."""
        bundle.set_args("/bin/sh", "-c", script)
        bundle.write()
        return self.run(id, bundle, timeout=timeout, **flags)

    def exec(self, id, *cmd, timeout=None, input=b"", **flags):
        """Foreground ``exec [flags] ID CMD…`` (flags before the id)."""
        return self.call("exec", *_flag_args(flags), id, *cmd, timeout=timeout, input=input)

    def list(self, format=None, quiet=False, timeout=None):
        args = ["list"]
        if format:
            args += ["--format", format]
        if quiet:
            args.append("--quiet")
        return self.call(*args, timeout=timeout)

    def list_json(self):
        r = self.list(format="json").check("list --format json")
        data = json.loads(r.stdout)
        return data or []

    def features(self):
        """Parsed ``features`` output or None (the runtime has no such command)."""
        r = self.call("features", global_args=[])
        if not r.ok:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def version(self):
        r = self.call("--version", global_args=[])
        return r.stdout if r.ok else None

    # -- helpers -----------------------------------------------------------------------------
    def wait_status(self, id, statuses=("stopped",), timeout=10.0, interval=0.02):
        """Poll ``state`` until its status is in ``statuses``; returns the state dict.
        Raises AssertionError on timeout (with the last state seen)."""
        if isinstance(statuses, str):
            statuses = (statuses,)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            r = self.state_result(id)
            if r.ok:
                try:
                    last = json.loads(r.stdout)
                except ValueError:
                    last = r.stdout
                if isinstance(last, dict) and last.get("status") in statuses:
                    return last
            else:
                last = r
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: container {id} did not reach {statuses} "
                                     f"within {timeout}s; last state: {last!r}")
            time.sleep(interval)

    def wait_stopped(self, id, timeout=10.0):
        return self.wait_status(id, ("stopped",), timeout=timeout)

    def pid_alive(self, id):
        """Whether the init process recorded for ``id`` (from an earlier state) still lives."""
        rec = self._procs.get(id)
        return bool(rec) and proc_start_time(rec[0]) == rec[1]

    @staticmethod
    def _valid_id(cid):
        return bool(VALID_ID_RE.match(cid or "")) and cid not in (".", "..")

    def container_dirs(self):
        try:
            return sorted(os.listdir(self.root))
        except OSError:
            return []

    # -- cleanup -----------------------------------------------------------------------------
    def cleanup(self, remove=True):
        """``delete --force`` every id this object handed out, kill any init process that
        survived it (by recorded pid + start time), remove the private temp dir (never crossing
        a mount point) and return a list of human-readable leftovers (empty = clean)."""
        leftovers = []
        for cid in list(self.ids):
            try:
                r = self.delete(cid, force=True, timeout=15)
            except Exception as e:  # pragma: no cover - defensive
                leftovers.append(f"{cid}: delete --force raised {e!r}")
                continue
            # a failing delete --force only matters if it left something behind: the state
            # dir (checked below), the init process, mounts or cgroups (checked by the caller)
            if not r.ok and self._valid_id(cid) and os.path.lexists(os.path.join(self.root, cid)):
                leftovers.append(f"{cid}: delete --force failed: {r.describe()}")
        for cid, (pid, start) in list(self._procs.items()):
            if proc_start_time(pid) == start:
                leftovers.append(f"{cid}: init pid {pid} still alive after delete --force; killed")
                try:
                    os.kill(pid, _signal.SIGKILL)
                except OSError:
                    pass
        for name in self.container_dirs():
            if not self._own_root and name not in self.ids:
                continue  # a shared root: other containers are not ours to report
            leftovers.append(f"{name}: state dir {os.path.join(self.root, name)} "
                             "remains after delete --force of every container")
        if remove:
            mps = mounts_under(self.workdir, self.root)
            if mps:
                leftovers.append(f"mounts left under the runtime's temp dirs: {mps}")
            for d in ([self.workdir] + ([] if self._own_root else [])):
                try:
                    safe_rmtree(d)
                except OSError as e:
                    leftovers.append(str(e))
        self.cleaned = True
        return leftovers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        left = self.cleanup()
        if left and exc[0] is None:
            raise AssertionError("runtime leftovers:\n" + "\n".join(left))
        return False


def _bundle_path(bundle):
    return getattr(bundle, "path", None) or os.fspath(bundle)


def _read_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class NamespaceHolder:
    """A ``sleep`` process in new namespaces (``unshare --net --uts --ipc …``) whose
    ``/proc/<pid>/ns/<name>`` files containers can join by ``path``. Stopped by pid only.

    ``kinds``: ``net``/``network``, ``uts``, ``ipc``, ``mnt``/``mount``, ``cgroup``, ``time``
    (``pid`` and ``user`` need a fork or id maps and are not offered)."""

    _FLAGS = {"net": "--net", "network": "--net", "uts": "--uts", "ipc": "--ipc",
              "mnt": "--mount", "mount": "--mount", "cgroup": "--cgroup", "time": "--time"}
    _PROC = {"network": "net", "mount": "mnt"}

    def __init__(self, kinds=("net", "uts", "ipc"), timeout=10.0):
        self.kinds = [self._PROC.get(k, k) for k in kinds]
        flags = []
        for k in kinds:
            if k not in self._FLAGS:
                raise ValueError(f"cannot hold a {k!r} namespace")
            flags.append(self._FLAGS[k])
        if "--mount" in flags:
            flags += ["--propagation", "private"]
        self.proc = subprocess.Popen(["unshare", *flags, "--", "sleep", "100000"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, close_fds=True)
        self.pid = self.proc.pid
        mine = {k: os.readlink(f"/proc/self/ns/{k}") for k in self.kinds}
        deadline = time.monotonic() + timeout
        while True:
            try:
                theirs = {k: os.readlink(f"/proc/{self.pid}/ns/{k}") for k in self.kinds}
            except OSError:
                theirs = {}
            if theirs and all(theirs[k] != mine[k] for k in self.kinds):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"namespace holder failed to start: {err.strip()}")
            time.sleep(0.01)

    def path(self, kind):
        return f"/proc/{self.pid}/ns/{self._PROC.get(kind, kind)}"

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
