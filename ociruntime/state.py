"""The state store: <root>/<id>/ with state.json, exec.fifo and a lock.

- create claims the id with an atomic mkdir (two concurrent creates: exactly one wins);
- every mutating command holds flock(LOCK_EX) on the container directory;
- state.json is written to a temp file, fsynced and renamed over;
- the live status is derived (runc refreshState): init alive (pid + start time) and exec.fifo
  present -> created; alive without fifo -> running; otherwise stopped;
- delete renames the directory to a tombstone first, so a half-removed dir is never seen under its id.
"""
import _stat
import errno
import fcntl
from ociruntime.lean import posix


from ociruntime import fastjson as json

from ociruntime.errors import AlreadyExists, InvalidID, NotFound, OciError

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")
STATE_FILE = "state.json"
CREATING_FILE = "creating.json"  # written at the start of create, so a killed create can be cleaned up

_STATE_TYPES = {"id": str, "pid": int, "init_start": int, "bundle": str, "rootfs": str, "created": str}
_OPTIONAL_TYPES = {"annotations": dict, "hooks": dict, "cgroup_paths": dict, "cgroup_made": list, "cgroup_kept": list,
                   "new_ns": int, "systemd": dict}


def _well_formed(st):
    """Never act on a state file we did not write (corrupt, hand-edited, another runtime's)."""
    if not isinstance(st, dict) or not isinstance(st.get("pid"), int) or isinstance(st.get("pid"), bool):
        return False
    for k, t in _STATE_TYPES.items():
        if k in st and (not isinstance(st[k], t) or isinstance(st[k], bool)):
            return False
    for k, t in _OPTIONAL_TYPES.items():
        if k in st and not isinstance(st[k], t):
            return False
    paths = st.get("cgroup_paths") or {}
    made = st.get("cgroup_made") or []
    return all(isinstance(v, str) and v.startswith("/sys/fs/cgroup/") and normpath(v) == v
               for v in list(paths.values()) + made + (st.get("cgroup_kept") or []))
FIFO = "exec.fifo"
CRIU_ROOT = "criu-root"  # restore's bind of the rootfs for CRIU (detached once CRIU is done)


# --- the few `os` helpers the light commands need, on `posix` ---------------------------------------

def getenv(name):
    """os.environ.get(name): from `os` when something already imported it (it may have been changed
    in this process), else decoded from posix.environ as os does."""
    import sys
    osmod = sys.modules.get("os")
    if osmod is not None:
        return osmod.environ.get(name)
    v = posix.environ.get(name.encode())
    return None if v is None else v.decode("utf-8", "surrogateescape")


def normpath(path):
    """posixpath.normpath (str)."""
    if not path:
        return "."
    initial = 2 if path.startswith("//") and not path.startswith("///") else 1 if path.startswith("/") else 0
    comps = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp != ".." or (not initial and not comps) or (comps and comps[-1] == ".."):
            comps.append(comp)
        elif comps:
            comps.pop()
    path = "/" * initial + "/".join(comps)
    return path or "."


def abspath(path):
    """posixpath.abspath (str)."""
    if not path.startswith("/"):
        cwd = posix.getcwd()
        path = cwd + path if cwd.endswith("/") else f"{cwd}/{path}" if path else cwd
    return normpath(path)


def _join(a, b):
    """posixpath.join of two str parts."""
    if b.startswith("/") or not a:
        return b
    return a + b if a.endswith("/") else f"{a}/{b}"


def validate_id(cid):
    if not cid:
        raise InvalidID("container id cannot be empty")
    if cid in (".", "..") or not _ID_CHARS.issuperset(cid) or len(cid) > 255:
        raise InvalidID()
    return cid


DEFAULT_ROOT = "/run/ociruntime"


def default_root():
    """runc shouldHonorXDGRuntimeDir: $XDG_RUNTIME_DIR/ociruntime when euid != 0, or euid 0 inside a
    user namespace with $USER unset or not "root"; real root always uses /run/ociruntime."""
    xdg = getenv("XDG_RUNTIME_DIR")
    if xdg and (posix.geteuid() != 0 or (getenv("USER") != "root" and running_in_userns())):
        return _join(xdg, "ociruntime")
    return DEFAULT_ROOT


def prepare_xdg_root(root):
    """The default root under $XDG_RUNTIME_DIR (no --root given): made 0700 with the sticky bit, which
    keeps the XDG runtime-dir cleaner (files untouched for 6 h may go, basedir-spec) away from it, as
    runc does for $XDG_RUNTIME_DIR/runc."""
    import os
    try:
        os.makedirs(root, 0o700, exist_ok=True)
        os.chmod(root, 0o1700)
    except OSError as e:
        raise OciError(f"cannot create state root {root}: {e.strerror} (the path in $XDG_RUNTIME_DIR must be "
                       f"writable by the user)")


def running_in_userns():
    """True unless we are in the initial user namespace (its uid_map is the identity over all ids).
    Here rather than in cgroups: default_root asks it on light commands, which do not import cgroups."""
    try:
        fd = posix.open("/proc/self/uid_map", posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        return posix.read(fd, 4096).split() != [b"0", b"0", b"4294967295"]
    finally:
        posix.close(fd)


class Store:
    def __init__(self, root):
        root = abspath(root)
        if not root.strip("/"):  # "/" and "//" alike
            raise OciError("Option --root argument should not be set to /")
        self.root = root
        self._fd = None

    def _rootfd(self, create=False):
        if self._fd is not None:
            return self._fd
        if create:
            import os
            try:
                os.makedirs(self.root, 0o700, exist_ok=True)
            except OSError as e:
                raise OciError(f"cannot create state root {self.root}: {e.strerror}")
        try:
            fd = posix.open(self.root, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound()
        except OSError as e:
            raise OciError(f"cannot open state root {self.root}: {e.strerror}")
        st = posix.fstat(fd)
        if st.st_uid != posix.geteuid() or st.st_mode & 0o022:
            posix.close(fd)
            raise OciError(f"state root {self.root} must be owned by uid {posix.geteuid()} and not group/other writable")
        self._fd = fd
        return fd

    def claim(self, cid):
        """Atomically create <root>/<id>; the caller owns it and must remove it on failure."""
        validate_id(cid)
        rfd = self._rootfd(create=True)
        try:
            posix.mkdir(cid, 0o711, dir_fd=rfd)
        except FileExistsError:
            raise AlreadyExists()
        c = Container(self, cid)
        c.lock()
        return c

    def open(self, cid, lock=True):
        validate_id(cid)
        try:
            rfd = self._rootfd()
        except NotFound:
            raise NotFound()
        c = Container(self, cid)
        if lock:
            c.lock()
        return c

    def ids(self):
        try:
            rfd = self._rootfd()
        except NotFound:
            return []
        out = []
        with posix.scandir(rfd) as it:
            for e in it:
                if "~" not in e.name and e.is_dir(follow_symlinks=False):  # "~": tombstones, never an id
                    out.append(e.name)
        return sorted(out)


class Container:
    def __init__(self, store, cid):
        self.store = store
        self.id = cid
        self.path = _join(store.root, cid)
        try:
            self.fd = posix.open(cid, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC,
                              dir_fd=store._rootfd())
        except FileNotFoundError:
            raise NotFound()
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise NotFound()
            raise

    def lock(self, exclusive=True):
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        # a concurrent delete may have removed (renamed) the directory while we waited
        try:
            st = posix.stat(self.id, dir_fd=self.store._rootfd(), follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound()
        own = posix.fstat(self.fd)
        if (st.st_ino, st.st_dev) != (own.st_ino, own.st_dev):
            raise NotFound()

    def close(self):
        if self.fd is not None:
            posix.close(self.fd)
            self.fd = None

    def read_state(self, name=None):
        """The saved state dict, or None if there is no state.json or it is not one we wrote."""
        try:
            fd = posix.open(name or STATE_FILE, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return None
        try:
            with open(fd, "rb") as f:
                data = f.read(16 << 20)
            st = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        return st if _well_formed(st) else None

    def read_creating(self):
        """What a create in progress (or killed mid-way) recorded: its cgroups and init pid."""
        return self.read_state(CREATING_FILE)

    def write_state(self, st, name=None):
        data = json.dumps(st).encode()
        name = name or STATE_FILE
        tmp = f".state.{posix.getpid()}.{posix.urandom(4).hex()}.tmp"
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600,
                     dir_fd=self.fd)
        try:
            # no fsync (runc has none either): the state lives on tmpfs (/run) in every real setup, and
            # the rename is what makes the update atomic for readers; fsync cost 1-20 ms per write on a
            # busy disk, three times per create
            posix.write(fd, data)
            posix.close(fd)
            fd = -1
            posix.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            if fd >= 0:
                try:
                    posix.close(fd)
                except OSError:
                    pass  # Linux releases the descriptor even when close reports an error
            try:
                posix.unlink(tmp, dir_fd=self.fd)
            except OSError:
                pass
            raise

    def has_fifo(self):
        try:
            st = posix.stat(FIFO, dir_fd=self.fd, follow_symlinks=False)
            return _stat.S_ISFIFO(st.st_mode)
        except OSError:
            return False

    def remove(self):
        """Tombstone rename, then remove the contents; never follows symlinks, never descends into the
        bind of the rootfs a killed restore may have left mounted (CRIU_ROOT)."""
        rfd = self.store._rootfd()
        tomb = f"~deleting~{self.id}~{posix.getpid()}"
        try:
            posix.rename(self.id, tomb, src_dir_fd=rfd, dst_dir_fd=rfd)
        except FileNotFoundError:
            return
        self._detach_criu_root()
        _rmtree_fd(self.fd)
        self.close()
        try:
            posix.rmdir(tomb, dir_fd=rfd)
        except OSError:
            pass


    def _detach_criu_root(self):
        """A restore that was killed while CRIU ran leaves its rbind of the container's rootfs mounted in
        the state dir (runc's criu-root): it is detached, never walked (that would delete the rootfs)."""
        try:
            posix.stat(CRIU_ROOT, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return
        from ociruntime._shim import lib
        path = f"/proc/self/fd/{self.fd}/{CRIU_ROOT}".encode()
        for _ in range(8):  # a stacked mount each time it was bound again
            if lib.oci_umount(path, 2) != 0:  # MNT_DETACH
                break


def _rmtree_fd(dfd):
    with posix.scandir(dfd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        if is_dir:
            sub = posix.open(name, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=dfd)
            try:
                _rmtree_fd(sub)
            finally:
                posix.close(sub)
            posix.rmdir(name, dir_fd=dfd)
        else:
            posix.unlink(name, dir_fd=dfd)


# --- liveness -----------------------------------------------------------------------------------

def proc_start_time(pid):
    """(start time in clock ticks, state letter) from /proc/<pid>/stat, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rp = data.rfind(b")")
    fields = data[rp + 2:].split()
    # fields[0] is field 3 (state); start time is field 22
    return int(fields[19]), fields[0].decode()


def init_alive(st):
    pid = st.get("pid") or 0
    if pid <= 0:
        return False
    info = proc_start_time(pid)
    if info is None:
        return False
    start, state = info
    return start == st.get("init_start", -1) and state not in ("Z", "X")


def spec_state(st, status):
    """The runtime-spec state object (hooks' stdin)."""
    from ociruntime import OCI_VERSION
    out = {"ociVersion": OCI_VERSION, "id": st.get("id", ""), "status": status, "pid": st["pid"],
           "bundle": st.get("bundle", "")}
    if status == "stopped":
        del out["pid"]  # REQUIRED only when created or running; runc omits it (omitempty)
    if st.get("annotations"):
        out["annotations"] = st["annotations"]
    return out


def is_frozen(st):
    """The container's freezer says FROZEN (v1 freezer.state, v2 cgroup.freeze). Here rather than in
    the cgroups package so that state/start/list/kill do not import it (start-up cost on every call)."""
    for key, path in (st.get("cgroup_paths") or {}).items():
        if key in ("freezer", ""):
            for name, frozen in (("freezer.state", b"FROZEN"), ("cgroup.freeze", b"1")):
                try:
                    with open(f"{path}/{name}", "rb") as f:
                        if f.read().strip() == frozen:
                            return True
                except OSError:
                    pass
    return False


def status_of(c, st):
    """runc's refreshState: derived, never trusted from the file."""
    if st is None:
        return "stopped"
    if init_alive(st):
        if is_frozen(st):  # paused is checked first, as runc does
            return "paused"
        if c.has_fifo():
            return "created"
        return "running"
    return "stopped"
