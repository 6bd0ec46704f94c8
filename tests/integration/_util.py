"""Shared helpers for the bad-input, security, fd-leak and concurrency integration tests.

* ``rootfs_template`` (session fixture): one busybox rootfs (``ociruntime.demo.busybox_rootfs``),
  copied with ``cp -a`` into every bundle.
* ``env`` (function fixture): a private temp dir with a private ``--root`` state dir, a ``Runtime``
  that runs the real CLI, bundle factories, and a finalizer that ``delete --force``s every id the
  test asked for, reaps the orphaned container inits, kills helper processes the test registered
  (by pid) and removes the temp dir (never across a mount point).
* ``HostSnapshot``: the "nothing left behind" check (snapshot before, compare after): no state-dir
  entry (or tombstone) for the id, no new mountinfo line naming the test's dirs, no cgroup directory
  named after the id under /sys/fs/cgroup/*/ (depth 4), no new ``memfd:ociruntime-init`` process
  that descends from this pytest process, no exec.fifo, the host's core_pattern unchanged.

Temp dirs live on /dev/shm when it is an exec-able tmpfs ($OCIT_TMPDIR overrides): a bundle copy
and the runtime's fsync of state.json are much slower on a busy disk.

Typical use::

    from _util import env, rootfs_template, _subreaper  # the fixtures

    def test_x(env):
        b = env.bundle(args=("true",), mutate=lambda spec: ...)
        cid = env.new_id()
        snap = env.snapshot(cid)
        r = env.rt("create", "--bundle", b.path, cid)
        assert r.rc != 0 and "/process/args" in r.error_msg()   # error_msg(): exactly one stderr line
        snap.assert_clean()

The tests run as root on the real kernel. Nothing here writes a host sysctl or touches a mount it
did not make; processes are only ever signalled by pid, and only ours.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from ociruntime.demo import busybox_rootfs
from ociruntime.misc import default_spec

RUNTIME = os.environ.get("OCI_RUNTIME") or os.path.join(os.path.dirname(sys.executable), "ociruntime")
CGROUP_BASE = "/sys/fs/cgroup"
CORE_PATTERN = "/proc/sys/kernel/core_pattern"
INIT_EXE_PREFIX = "/memfd:ociruntime-init"
PR_SET_CHILD_SUBREAPER = 36

def _pick_tmp_base():
    """tmpfs (/dev/shm) when it allows exec: bundles are copied per test and the runtime fsyncs its
    state, both slow on a loaded disk. $OCIT_TMPDIR overrides. Else a directory every uid can traverse."""
    env = os.environ.get("OCIT_TMPDIR")
    if env:
        return env
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if parts[4] == "/dev/shm":
                    sep = parts.index("-")
                    if parts[sep + 1] == "tmpfs" and "noexec" not in parts[5].split(",") and \
                            os.access("/dev/shm", os.W_OK):
                        return "/dev/shm"
    except (OSError, ValueError, IndexError):
        pass
    # $TMPDIR (or /tmp) when every uid can traverse it: user-namespaced containers and rootless runs
    # reach their bundles from there
    from ociruntime.testing.reach import reachable_base
    return reachable_base()


TMP_BASE = _pick_tmp_base()

_LOG_RE = re.compile(r'^time="[^"]*" level=(\w+) msg="((?:[^"\\]|\\.)*)"')


# ------------------------------------------------------------------------------------ host facts

def read_core_pattern():
    with open(CORE_PATTERN, "rb") as f:
        return f.read()


def read_mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def proc_status(pid):
    """dict of /proc/<pid>/status, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def ppid_of(pid):
    st = proc_status(pid)
    return int(st["PPid"]) if st and "PPid" in st else None


def pid_state(pid):
    st = proc_status(pid)
    return st["State"][0] if st else None


def pid_alive(pid):
    """Alive and not a zombie."""
    return pid_state(pid) not in (None, "Z", "X")


def descends_from_us(pid):
    me = os.getpid()
    seen = 0
    while pid and pid > 1 and seen < 64:
        if pid == me:
            return True
        pid = ppid_of(pid)
        seen += 1
    return False


def memfd_inits():
    """pids of live processes running a sealed ociruntime-init copy."""
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{name}/exe")
        except OSError:
            continue
        if exe.startswith(INIT_EXE_PREFIX):
            out.add(int(name))
    return out


def cgroup_dirs_named(names, base=CGROUP_BASE, max_depth=4):
    """Directories under ``base/*/`` whose basename is in ``names`` (the testing package's walker)."""
    from ociruntime.testing.runtime import cgroup_dirs_named as walk
    return walk(names, base, max_depth)


def reap_zombie_children(only_comm_prefix=("ociruntime:",)):
    """Reap zombies that were re-parented to us (we are a subreaper) and are container inits."""
    me = str(os.getpid())
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_status(name)
        if not st or st.get("PPid") != me or not st.get("State", "").startswith("Z"):
            continue
        if only_comm_prefix and not st.get("Name", "").startswith(only_comm_prefix):
            continue
        try:
            os.waitpid(int(name), os.WNOHANG)
        except ChildProcessError:
            pass


def kill_pid(pid, sig=signal.SIGKILL):
    """Signal one process we started (by pid), then reap it if it is our child."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            wpid, _ = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                return
        except ChildProcessError:
            if not pid_alive(pid):
                return
        time.sleep(0.01)


def place_fds(mapping):
    """A preexec_fn that puts inheritable copies of {target_fd: source_fd} into the child; use it with
    close_fds=False (subprocess would close them again after the preexec_fn otherwise)."""
    import fcntl
    items = list(mapping.items())

    def pre():
        tmp = [fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, 900) for _, src in items]
        for (target, _), fd in zip(items, tmp):
            os.dup2(fd, target, inheritable=True)
    return pre


def set_subreaper(on):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)


def wait_for(cond, timeout=5.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# ------------------------------------------------------------------------------------ the CLI

class Result:
    def __init__(self, argv, rc, stdout, stderr):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr

    def __repr__(self):
        return f"<Result {' '.join(map(str, self.argv[3:]))!r} rc={self.rc} stdout={self.stdout[-400:]!r} " \
               f"stderr={self.stderr[-2000:]!r}>"

    @property
    def ok(self):
        return self.rc == 0

    def check(self):
        assert self.rc == 0, self
        return self

    @property
    def lines(self):
        return self.stderr.splitlines()

    def error_msg(self):
        """The single error line's message (logrus text format or a bare line)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"stderr must be exactly one line: {self}"
        m = _LOG_RE.match(lines[0])
        if not m:
            return lines[0]
        assert m.group(1) == "error", self
        return re.sub(r'\\(["\\nt])', lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)), m.group(2))


class Runtime:
    """Runs the real CLI with a private --root. stdout/stderr go to temp files, never pipes: a
    created container inherits them and would keep a pipe open."""

    def __init__(self, root, binary=RUNTIME):
        self.root = root
        self.binary = binary

    def argv(self, *args, root=None):
        return [self.binary, "--root", root or self.root, *map(str, args)]

    def popen(self, *args, stdout=None, stderr=None, root=None, pass_fds=(), preexec_fn=None, env=None):
        return subprocess.Popen(self.argv(*args, root=root), stdin=subprocess.DEVNULL,
                                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                                stderr=stderr if stderr is not None else subprocess.DEVNULL,
                                pass_fds=pass_fds, preexec_fn=preexec_fn, env=env)

    def __call__(self, *args, timeout=20, stdout=None, root=None, pass_fds=(), preexec_fn=None, env=None,
                 close_fds=True):
        """close_fds=False (without pass_fds) lets a preexec_fn place inheritable fds at any number: every
        fd Python opened is close-on-exec anyway (PEP 446)."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen(self.argv(*args, root=root), stdin=subprocess.DEVNULL,
                                 stdout=stdout if stdout is not None else out, stderr=err,
                                 pass_fds=pass_fds, preexec_fn=preexec_fn, env=env,
                                 close_fds=close_fds if not pass_fds else True)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_pid(p.pid)
                p.wait()
                raise AssertionError(f"runtime command timed out after {timeout}s: {p.args}")
            out.seek(0)
            err.seek(0)
            return Result(p.args, rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"))

    def state(self, cid):
        r = self("state", cid)
        return json.loads(r.stdout) if r.rc == 0 else None

    def status(self, cid):
        st = self.state(cid)
        return st["status"] if st else None

    def init_pid(self, cid):
        st = self.state(cid)
        return st["pid"] if st else None


# ------------------------------------------------------------------------------------ bundles

def base_spec(args=("sleep", "30")):
    spec = default_spec(cgroupns=True)  # these tests were written with a cgroup namespace
    spec["process"]["terminal"] = False
    spec["process"]["args"] = list(args)
    return spec


class Bundle:
    def __init__(self, path, spec):
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        self.spec = spec

    @property
    def config(self):
        return os.path.join(self.path, "config.json")

    def write(self, spec=None):
        if spec is not None:
            self.spec = spec
        with open(self.config, "w") as f:
            json.dump(self.spec, f, indent=1)
        return self

    def write_raw(self, data):
        with open(self.config, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return self


# ------------------------------------------------------------------------------------ leftovers

class HostSnapshot:
    """Snapshot before an operation; ``problems()`` / ``assert_clean()`` after it."""

    def __init__(self, root, cids, paths, cgroup_names=()):
        self.root = root
        self.cids = list(cids)
        self.paths = [os.path.realpath(p) for p in paths]
        self.cgroup_names = set(self.cids) | set(cgroup_names)
        self.mountinfo = set(read_mountinfo())
        self.inits = memfd_inits()
        self.core_pattern = read_core_pattern()
        self.root_entries = set(os.listdir(root)) if os.path.isdir(root) else set()
        self.cgroups_before = set(cgroup_dirs_named(self.cgroup_names))
        self.fifos = self._fifos()

    def _fifos(self):
        out = set()
        for top in [self.root, *self.paths]:
            for dirpath, dirnames, filenames in os.walk(top):
                if "exec.fifo" in filenames:
                    out.add(os.path.join(dirpath, "exec.fifo"))
                dirnames[:] = [d for d in dirnames if d != "rootfs"]
        return out

    def _new_inits(self):
        return {p for p in memfd_inits() - self.inits if descends_from_us(p)}

    def problems(self, settle=3.0):
        out = []
        # a failed create kills its init synchronously; an orphaned one may take a moment to exit
        leaked = wait_for(lambda: not self._new_inits(), timeout=settle) or self._new_inits()
        if leaked is not True and leaked:
            out.append(f"container init processes left: {sorted(leaked)}")
        if os.path.isdir(self.root):
            now = set(os.listdir(self.root))
            for e in sorted(now - self.root_entries):
                out.append(f"new entry in the state root: {e}")
            for cid in self.cids:
                if cid in now:
                    out.append(f"state dir {cid} still exists")
                for e in now:
                    if e != cid and cid in e:
                        out.append(f"tombstone (or temp entry) {e} left")
        for f in sorted(self._fifos() - self.fifos):
            out.append(f"exec.fifo left: {f}")
        new_mounts = set(read_mountinfo()) - self.mountinfo
        for line in sorted(new_mounts):
            if any(p in line for p in self.paths):
                out.append(f"new mount: {line}")
        for d in sorted(set(cgroup_dirs_named(self.cgroup_names)) - self.cgroups_before):
            out.append(f"cgroup left: {d}")
        if read_core_pattern() != self.core_pattern:
            out.append("the host's kernel.core_pattern changed!")
        return out

    def assert_clean(self):
        probs = self.problems()
        assert not probs, "left behind:\n  " + "\n  ".join(probs)


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def rootfs_template():
    d = tempfile.mkdtemp(prefix="ocit-template-", dir=TMP_BASE)
    os.chmod(d, 0o755)
    rootfs = os.path.join(d, "rootfs")
    busybox_rootfs(rootfs)
    yield rootfs
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _subreaper():
    """Orphaned container inits are re-parented to this pytest process, so a leak is attributable
    to these tests (and not to another session running on the same host)."""
    set_subreaper(True)
    yield
    reap_zombie_children()
    set_subreaper(False)


class Env:
    def __init__(self, template):
        self.template = template
        self.tmp = tempfile.mkdtemp(prefix="ocit-", dir=TMP_BASE)
        os.chmod(self.tmp, 0o711)
        self.root = os.path.join(self.tmp, "root")
        os.mkdir(self.root, 0o700)
        self.rt = Runtime(self.root)
        self.ids = []
        self.extra_roots = []
        self.helper_pids = []
        self.cleanup_cgroups = set()
        self.cleanup_dirs = []
        self._n = 0

    # ids and dirs
    def new_id(self, prefix="c"):
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def mkdir(self, name, mode=0o755):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, mode)
        return d

    def outside_dir(self, prefix="outside-", base=TMP_BASE):
        """A directory outside the test's tmp dir (directly in the tmp base), removed at teardown."""
        d = tempfile.mkdtemp(prefix=f"ocit-{prefix}", dir=base)
        self.cleanup_dirs.append(d)
        return d

    def bundle(self, args=("sleep", "30"), mutate=None, name=None, rootfs="copy"):
        """rootfs: "copy" (cp -a of the busybox template), "empty" (an empty dir: for inputs that must be
        rejected before anything is spawned; should one get through, create fails differently and the
        message check catches it) or None (no rootfs at all)."""
        self._n += 1
        path = os.path.join(self.tmp, name or f"bundle{self._n}")
        os.mkdir(path)
        if rootfs == "copy":
            subprocess.run(["cp", "-a", self.template, os.path.join(path, "rootfs")], check=True)
        elif rootfs == "empty":
            os.mkdir(os.path.join(path, "rootfs"))
        spec = base_spec(args)
        if mutate:
            mutate(spec)
        return Bundle(path, spec).write()

    def snapshot(self, *cids, paths=(), cgroup_names=()):
        return HostSnapshot(self.root, cids, [self.tmp, *paths], cgroup_names)

    # lifecycle helpers
    def create(self, b, cid=None, *extra, **kw):
        cid = cid or self.new_id()
        r = self.rt("create", "--bundle", b.path, *extra, cid, **kw)
        return cid, r

    def created(self, b, cid=None, **kw):
        cid, r = self.create(b, cid, **kw)
        r.check()
        return cid

    def running(self, b, cid=None):
        cid = self.created(b, cid)
        self.rt("start", cid).check()
        return cid

    def wait_stopped(self, cid, timeout=10):
        """Wait until the container's init is gone (polls /proc, not the CLI), then check `state`."""
        st = self.rt.state(cid)
        assert st is not None, f"no state for {cid}"
        if st["status"] != "stopped":
            assert wait_for(lambda: not pid_alive(st["pid"]), timeout=timeout), f"{cid} did not stop"
        return self.rt.status(cid) == "stopped"

    def run_to_completion(self, b, cid=None, timeout=10):
        """create (stdout to a file), start, wait until stopped; returns (cid, the container's stdout)."""
        out = os.path.join(self.tmp, f"out-{uuid.uuid4().hex[:6]}")
        with open(out, "wb") as f:
            cid = self.created(b, cid, stdout=f)
        self.rt("start", cid).check()
        assert self.wait_stopped(cid, timeout=timeout), "container did not stop"
        with open(out) as f:
            return cid, f.read()

    def _owns(self, pid):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                cg = f.read()
        except OSError:
            cg = ""
        if any(f"/{cid}\n" in cg or f"/{cid}/" in cg for cid in self.ids):
            return True
        try:
            targets = [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            return False
        return any(t.startswith(self.tmp + "/") for t in targets)

    def cleanup(self):
        errors = []
        for root in [self.root, *self.extra_roots]:
            for cid in self.ids:
                if cid in ("", ".", "..") or "/" in cid or not os.path.lexists(os.path.join(root, cid)):
                    continue
                try:
                    r = self.rt("delete", "--force", cid, root=root, timeout=20)
                    # extra roots are the ones the runtime may rightly refuse (#30): best effort
                    if r.rc != 0 and "does not exist" not in r.stderr and root == self.root:
                        errors.append(f"delete --force {cid}: {r}")
                except AssertionError as e:
                    errors.append(str(e))
        for pid in self.helper_pids:
            kill_pid(pid)
        # last resort (a runtime bug, or delete crashed): an init of ours is still alive. It is ours if it
        # descends from this process and holds a file below our tmp dir or sits in a cgroup named after
        # one of our ids; it is killed by pid and reported.
        for pid in sorted(memfd_inits()):
            if descends_from_us(pid) and self._owns(pid):
                kill_pid(pid)
                errors.append(f"container init {pid} survived delete --force; killed it")
        reap_zombie_children()
        # a runtime bug may leave cgroups named after our (unique) ids: remove them (empty by now)
        leftovers = set(self.cleanup_cgroups) | set(cgroup_dirs_named(self.ids)) if self.ids else \
            set(self.cleanup_cgroups)
        for d in sorted(leftovers, key=len, reverse=True):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(f"rmdir {d}: {e}")
        for d in [self.tmp, *self.cleanup_dirs]:
            if any(d in line for line in read_mountinfo()):
                errors.append(f"not removing {d}: something is mounted below it")
                continue
            shutil.rmtree(d, ignore_errors=True)
        return errors


@pytest.fixture
def env(rootfs_template):
    e = Env(rootfs_template)
    yield e
    errors = e.cleanup()
    assert not errors, "cleanup problems:\n" + "\n".join(errors)


# ------------------------------------------------------------------------------------ fd listings

_LS_FD_RE = re.compile(r"\s(\d+)(?: -> (.*))?$")


def parse_ls_fds(text):
    """{fd: target or None} from busybox `ls -l /proc/self/fd` output."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("l"):
            continue
        m = _LS_FD_RE.search(line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def own_fd_of_ls(fds):
    """The directory fd ls opened to list /proc/self/fd: the one whose target is (or was) that dir."""
    cands = [n for n, t in fds.items() if t is None or re.fullmatch(r"/proc/\d+/fd", t or "")]
    return cands


def proc_fds(pid):
    """{fd: readlink target} of /proc/<pid>/fd."""
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(n)] = os.readlink(f"/proc/{pid}/fd/{n}")
        except FileNotFoundError:
            pass
    return out
