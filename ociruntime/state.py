"""The state store: <root>/<id>/ with state.json, exec.fifo and a lock.

- create claims the id with an atomic mkdir (two concurrent creates: exactly one wins);
- every mutating command holds flock(LOCK_EX) on the container directory;
- state.json is written to a temp file, fsynced and renamed over;
- the live status is derived (runc refreshState): init alive (pid + start time) and exec.fifo
  present -> created; alive without fifo -> running; otherwise stopped;
- delete renames the directory to a tombstone first, so a half-removed dir is never seen under its id.
"""
import errno
import fcntl
import os
import stat

from ociruntime import fastjson as json

from ociruntime.errors import AlreadyExists, InvalidID, NotFound, OciError

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")
STATE_FILE = "state.json"
CREATING_FILE = "creating.json"  # written at the start of create, so a killed create can be cleaned up

_STATE_TYPES = {"id": str, "pid": int, "init_start": int, "bundle": str, "rootfs": str, "created": str}
_OPTIONAL_TYPES = {"annotations": dict, "hooks": dict, "cgroup_paths": dict, "cgroup_made": list, "new_ns": int}


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
    return all(isinstance(v, str) and v.startswith("/sys/fs/cgroup/") and os.path.normpath(v) == v
               for v in list(paths.values()) + made)
FIFO = "exec.fifo"


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
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and (os.geteuid() != 0 or (os.environ.get("USER") != "root" and _in_userns())):
        return os.path.join(xdg, "ociruntime")
    return DEFAULT_ROOT


def prepare_xdg_root(root):
    """The default root under $XDG_RUNTIME_DIR (no --root given): made 0700 with the sticky bit, which
    keeps the XDG runtime-dir cleaner (files untouched for 6 h may go, basedir-spec) away from it, as
    runc does for $XDG_RUNTIME_DIR/runc."""
    try:
        os.makedirs(root, 0o700, exist_ok=True)
        os.chmod(root, 0o1700)
    except OSError as e:
        raise OciError(f"cannot create state root {root}: {e.strerror} (the path in $XDG_RUNTIME_DIR must be "
                       f"writable by the user)")


def _in_userns():
    from ociruntime.cgroups import running_in_userns
    return running_in_userns()


class Store:
    def __init__(self, root):
        root = os.path.abspath(root)
        if not root.strip("/"):  # "/" and "//" alike
            raise OciError("Option --root argument should not be set to /")
        self.root = root
        self._fd = None

    def _rootfd(self, create=False):
        if self._fd is not None:
            return self._fd
        if create:
            try:
                os.makedirs(self.root, 0o700, exist_ok=True)
            except OSError as e:
                raise OciError(f"cannot create state root {self.root}: {e.strerror}")
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound()
        except OSError as e:
            raise OciError(f"cannot open state root {self.root}: {e.strerror}")
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            os.close(fd)
            raise OciError(f"state root {self.root} must be owned by uid {os.geteuid()} and not group/other writable")
        self._fd = fd
        return fd

    def claim(self, cid):
        """Atomically create <root>/<id>; the caller owns it and must remove it on failure."""
        validate_id(cid)
        rfd = self._rootfd(create=True)
        try:
            os.mkdir(cid, 0o711, dir_fd=rfd)
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
        with os.scandir(rfd) as it:
            for e in it:
                if "~" not in e.name and e.is_dir(follow_symlinks=False):  # "~": tombstones, never an id
                    out.append(e.name)
        return sorted(out)


class Container:
    def __init__(self, store, cid):
        self.store = store
        self.id = cid
        self.path = os.path.join(store.root, cid)
        try:
            self.fd = os.open(cid, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
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
            st = os.stat(self.id, dir_fd=self.store._rootfd(), follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound()
        if (st.st_ino, st.st_dev) != (os.fstat(self.fd).st_ino, os.fstat(self.fd).st_dev):
            raise NotFound()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def read_state(self, name=None):
        """The saved state dict, or None if there is no state.json or it is not one we wrote."""
        try:
            fd = os.open(name or STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as f:
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
        tmp = f".state.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.fd)
        try:
            # no fsync (runc has none either): the state lives on tmpfs (/run) in every real setup, and
            # the rename is what makes the update atomic for readers; fsync cost 1-20 ms per write on a
            # busy disk, three times per create
            os.write(fd, data)
            os.close(fd)
            fd = -1
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass  # Linux releases the descriptor even when close reports an error
            try:
                os.unlink(tmp, dir_fd=self.fd)
            except OSError:
                pass
            raise

    def has_fifo(self):
        try:
            st = os.stat(FIFO, dir_fd=self.fd, follow_symlinks=False)
            return stat.S_ISFIFO(st.st_mode)
        except OSError:
            return False

    def remove(self):
        """Tombstone rename, then remove the contents; never follows symlinks."""
        rfd = self.store._rootfd()
        tomb = f"~deleting~{self.id}~{os.getpid()}"
        try:
            os.rename(self.id, tomb, src_dir_fd=rfd, dst_dir_fd=rfd)
        except FileNotFoundError:
            return
        _rmtree_fd(self.fd)
        self.close()
        try:
            os.rmdir(tomb, dir_fd=rfd)
        except OSError:
            pass


def _rmtree_fd(dfd):
    with os.scandir(dfd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        if is_dir:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                _rmtree_fd(sub)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)


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


def status_of(c, st):
    """runc's refreshState: derived, never trusted from the file."""
    if st is None:
        return "stopped"
    if init_alive(st):
        from ociruntime import cgroups  # paused is checked first, as runc does
        if cgroups.is_frozen(st):
            return "paused"
        if c.has_fifo():
            return "created"
        return "running"
    return "stopped"
