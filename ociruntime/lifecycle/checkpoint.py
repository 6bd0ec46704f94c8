"""checkpoint and restore: a running container to CRIU image files and back (runc's commands, flags and
behaviour), through CRIU's RPC (ociruntime/criu.py).

What runc does, we do: the init's stdio pipes are recorded at checkpoint (descriptors.json in the image
directory) and handed to the restored process at restore (CRIU inherit_fd: the restoring runtime's own
stdio); a terminal's pty master comes back through the --console-socket (CRIU's orphan-pts-master
notification); bind mounts, masked files, cgroup v1 binds and devices are CRIU "external" mounts
(dest -> dest at checkpoint, dest -> source at restore); network/pid namespaces joined by path are external
namespaces; the restored tree is placed in the container's cgroups (CRIU's cg_root, its own process
joined first); the state is written as create writes it.

Where runc is known to fail, we do better:
- a network namespace the runtime made comes back with loopback up (runc restores it empty, lo down):
  lo is set up at CRIU's setup-namespaces notification, before sockets are restored, through a netlink
  socket the sealed init opened in that namespace (no Python enters it);
- --pre-dump / --parent-path need memory tracking (soft-dirty): refused up front, naming it, when CRIU's
  feature check says the kernel lacks it (CRIU itself may abort instead); likewise --lazy-pages without
  userfaultfd or without the 4 MiB pipes its transfer needs, --tcp-established where this CRIU cannot dump
  TCP sockets on this kernel, --lsm-profile/--lsm-mount-context naming an LSM the host lacks;
- a restore into a pid namespace it shares waits for the dumped pids to be free (runc fails);
- a missing or too old CRIU is a one-line error naming the version needed;
- a failed checkpoint leaves the container as it was (CRIU resumes it; the state is not touched);
- a failed restore leaves nothing: no state dir, cgroup, mount or process.
"""
import os
import time

from ociruntime import cgroups, criu, fastjson as json, plan as planmod
from ociruntime.errors import OciError, StateError
from ociruntime.state import Store, proc_start_time, validate_id, spec_state, status_of, CREATING_FILE, CRIU_ROOT

DESCRIPTORS = "descriptors.json"  # runc's name: the init's stdio as /proc/<pid>/fd links at checkpoint
DUMP_LOG, RESTORE_LOG = "dump.log", "restore.log"
EMPTY_NS_NAMES = {"network": planmod.CLONE_NEWNET, "ipc": planmod.CLONE_NEWIPC, "uts": planmod.CLONE_NEWUTS,
                  "mount": planmod.CLONE_NEWNS, "pid": planmod.CLONE_NEWPID, "user": planmod.CLONE_NEWUSER,
                  "cgroup": planmod.CLONE_NEWCGROUP}


# --- options shared by both commands ---------------------------------------------------------------

def _image_paths(ctx):
    """runc prepareImagePaths: --image-path (default ./checkpoint) made if missing; --parent-path relative
    to it and an existing directory."""
    image = ctx.flag("image-path") or os.path.join(os.getcwd(), "checkpoint")
    image = os.path.abspath(image)
    try:
        os.makedirs(image, 0o700, exist_ok=True)
    except OSError as e:
        raise OciError(f"--image-path {image}: {e.strerror}")
    parent = ctx.flag("parent-path") or ""
    if parent:
        if os.path.isabs(parent):
            raise OciError("--parent-path must be relative")
        real = os.path.join(image, parent)
        if not os.path.isdir(real):
            raise OciError(f"invalid --parent-path: {real}: no such directory")
    return image, parent


def _empty_ns(ctx):
    """runc setEmptyNsMask: the network namespace always (runc does not manage network devices), plus
    --empty-ns names."""
    mask = planmod.CLONE_NEWNET
    for name in ctx.flag("empty-ns") or ():
        if name not in EMPTY_NS_NAMES:
            raise OciError(f"namespace {name!r} is not supported")
        mask |= EMPTY_NS_NAMES[name]
    return mask


def _cg_mode(ctx):
    v = ctx.flag("manage-cgroups-mode") or ""
    if not v:
        return None
    if v not in criu.CG_MODES:
        raise OciError(f"Invalid manage cgroups mode: {v!r} (soft, full, strict or ignore)")
    return criu.CG_MODES[v]


def _common_opts(ctx, opts):
    for flag, field in (("tcp-established", "tcp_established"), ("ext-unix-sk", "ext_unix_sk"),
                        ("shell-job", "shell_job"), ("file-locks", "file_locks"), ("auto-dedup", "auto_dedup"),
                        ("lazy-pages", "lazy_pages")):
        setattr(opts, field, bool(ctx.flag(flag)))
    opts.log_level = 4
    opts.manage_cgroups = True
    opts.notify_scripts = True
    opts.orphan_pts_master = True
    opts.empty_ns = _empty_ns(ctx)
    mode = _cg_mode(ctx)
    if mode is not None:
        opts.manage_cgroups_mode = mode


def _open_dir(path, what):
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise OciError(f"{what} {path}: {e.strerror}")


def _open_criu(ctx, pass_fds=(), quiet=True, pre_dump=False, lazy=False, parent=False):
    """A `criu swrk` service whose version (and the features the flags need) passed: the checks are asked
    on it with keep_open, the real request follows on the same process. Closed on any refusal."""
    binary = criu.find(ctx.g.get("criu") or "")
    swrk = criu.Swrk(binary, pass_fds, quiet=quiet)
    try:
        _check_criu(ctx, binary, swrk, pre_dump, lazy, parent)
    except BaseException:
        swrk.close()
        raise
    return swrk


def _check_criu(ctx, binary, swrk, pre_dump, lazy, parent):
    v = criu.version(binary, swrk)
    if ctx.flag("tcp-established") and v <= criu.INET_PASSSEC_NEEDED_UP_TO and criu.kernel_refuses_inet_passsec():
        raise OciError(f"--tcp-established: CRIU {criu._fmt(v)} cannot dump TCP sockets on this kernel "
                       f"({os.uname().release}: getsockopt SO_PASSSEC is refused on inet sockets since 6.18)")
    wanted = {}
    if pre_dump or parent:
        wanted["mem_track"] = True
    if lazy:
        wanted["lazy_pages"] = True
    if wanted:
        have = criu.features(binary, swrk, **wanted)
        if not have.get("mem_track", True):
            what = "--pre-dump" if pre_dump else "--parent-path"
            raise OciError(f"{what} needs memory change tracking, which this kernel lacks (CRIU feature "
                           f"mem_track: soft-dirty pages, CONFIG_MEM_SOFT_DIRTY)")
        if not have.get("lazy_pages", True):
            raise OciError("--lazy-pages needs userfaultfd, which this kernel or CRIU lacks (CRIU feature "
                           "lazy_pages)")
    if lazy:
        why = criu.lazy_pages_blocker()
        if why:  # runc goes on and hangs at restore (the transfer fails half-way)
            raise OciError(f"--lazy-pages: {why}")


def _bundle_config(bundle):
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise OciError(f"read the container's config.json in {bundle}: {getattr(e, 'strerror', None) or e}")


_EXT_NS = {"network": ("net", "extRootNetNS"), "pid": ("pid", "extRootPidNS")}


def _external_ns(config, opts):
    """runc handleCheckpointingExternalNamespaces: a network or pid namespace joined by path is external
    to the checkpoint (CRIU external "net[<inode>]:extRootNetNS")."""
    for ns in (config.get("linux") or {}).get("namespaces") or ():
        key = _EXT_NS.get(ns.get("type"))
        if not key or not ns.get("path"):
            continue
        try:
            ino = os.stat(ns["path"]).st_ino
        except OSError as e:
            raise OciError(f"{ns['type']} namespace {ns['path']}: {e.strerror}")
        opts.external.append(f"{key[0]}[{ino}]:{key[1]}")


def _restore_ns_fds(config):
    """runc handleRestoringNamespaces: [(CRIU key, fd)] of the namespaces joined by path, which CRIU
    inherits (inherit_fd extRootNetNS / extRootPidNS) and puts the restored tree in."""
    out = []
    try:
        for ns in (config.get("linux") or {}).get("namespaces") or ():
            key = _EXT_NS.get(ns.get("type"))
            if not key or not ns.get("path"):
                continue
            try:
                out.append((key[1], os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise OciError(f"{ns['type']} namespace {ns['path']}: {e.strerror}")
    except BaseException:
        _close_fds([fd for _, fd in out])
        raise
    return out


def _close_fds(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _has_ns(config, typ, with_path=None):
    for ns in (config.get("linux") or {}).get("namespaces") or ():
        if ns.get("type") == typ:
            return with_path is None or bool(ns.get("path")) == with_path
    return False


def _cgroup_binds(mount, cgroup_paths):
    """The per-hierarchy binds our cgroup mount makes without a cgroup namespace on v1 (plan._add_cgroup_mount)."""
    out = []
    for name in cgroup_paths:
        if name:
            out.append((os.path.join(mount["destination"], name), cgroup_paths[name]))
    return out


def _ext_mounts(config, cgroup_paths, restore):
    """(key, value) pairs of CRIU external mounts, runc's addCriuDumpMount/addCriuRestoreMount."""
    out = []
    linux = config.get("linux") or {}
    cgns = _has_ns(config, "cgroup")
    v2 = bool(cgroup_paths.get("")) and len(cgroup_paths) == 1
    for m in config.get("mounts") or ():
        opts = m.get("options") or []
        dest = m["destination"]
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            src = m.get("source", "")
            if not os.path.isabs(src):
                src = os.path.join(config.get("_bundle", ""), src)
            out.append((dest, src if restore else dest))
        elif m.get("type") == "cgroup" and not cgns and not v2:
            # runc: on v2 (a fresh cgroup2) or with a cgroup namespace the cgroup mount is a real mount
            # CRIU dumps; on v1 without one it is a set of external binds
            for d, host in _cgroup_binds(m, cgroup_paths):
                out.append((d, host if restore else d))
    if restore:
        if linux.get("maskedPaths"):
            out.append(("/dev/null", "/dev/null"))
    else:
        # a masked file is a bind of /dev/null (external); a masked directory is a tmpfs CRIU restores.
        # Seen from inside the container (runc addMaskPaths), through the init's root
        pid = config.get("_pid", 0)
        for path in linux.get("maskedPaths") or ():
            try:
                if not os.path.isdir(f"/proc/{pid}/root/{path.lstrip('/')}"):
                    out.append((path, "/dev/null"))
            except OSError:
                pass
    for d in linux.get("devices") or ():
        out.append((d["path"], d["path"]))
    return out


def _add_ext_mounts(opts, pairs):
    seen = set()
    for k, v in pairs:
        if k in seen:
            continue
        seen.add(k)
        e = opts.ext_mnt.add()
        e.key, e.val = k, v


def _run(swrk, req, on_notify, log_dir, log_name, what):
    """Send req, answer CRIU's notifications until its final response; raise with CRIU's log on failure."""
    swrk.send(req)
    M = criu.messages()
    while True:
        resp, fds = swrk.recv()
        if resp is None:
            raise OciError(f"{what}: criu exited without an answer" + _log_hint(log_dir, log_name))
        if resp.type == criu.NOTIFY:
            try:
                on_notify(resp.notify.script, resp.notify.pid, fds)
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            swrk.send(M["criu_req"](type=criu.NOTIFY, notify_success=True))
            continue
        for fd in fds:
            os.close(fd)
        if not resp.success:
            msg = criu.one_line(resp.cr_errmsg or "") or (os.strerror(resp.cr_errno) if resp.cr_errno else "")
            raise OciError(f"{what}: criu failed" + (f": {msg}" if msg else "") + _log_hint(log_dir, log_name))
        return resp


def _log_hint(log_dir, name):
    tail = criu.log_tail(log_dir, name)
    return f" ({tail}; log file: {os.path.join(log_dir, name)})" if tail else \
        f" (log file: {os.path.join(log_dir, name)})"


# --- checkpoint ------------------------------------------------------------------------------------

def checkpoint(ctx):
    cid = validate_id(ctx.args[0])
    store = Store(ctx.root)
    c = store.open(cid)
    st = c.read_state()
    status = status_of(c, st)
    if status in ("created", "stopped"):
        c.close()
        raise StateError(f"Container cannot be checkpointed in {status} state")
    pre_dump = bool(ctx.flag("pre-dump"))
    pass_fds = []
    swrk = None
    try:
        image, parent = _image_paths(ctx)
        ps = _page_server(ctx.flag("page-server") or "")
        status_fd = _status_fd(ctx.flag("status-fd", -1))
        pass_fds.append(_open_dir(image, "--image-path"))
        log_dir = image
        if ctx.flag("work-path"):
            work = os.path.abspath(ctx.flag("work-path"))
            os.makedirs(work, 0o700, exist_ok=True)
            pass_fds.append(_open_dir(work, "--work-path"))
            log_dir = work
        swrk = _open_criu(ctx, pass_fds, pre_dump=pre_dump, lazy=bool(ctx.flag("lazy-pages")),
                          parent=bool(parent))
        config = _bundle_config(st["bundle"])
        config["_pid"] = st["pid"]
        config["_bundle"] = st["bundle"]
        opts = criu.messages()["criu_opts"]()
        _common_opts(ctx, opts)
        opts.images_dir_fd = pass_fds[0]
        if len(pass_fds) > 1:
            opts.work_dir_fd = pass_fds[1]
        opts.log_file = DUMP_LOG
        opts.root = st["rootfs"]
        opts.pid = st["pid"]
        opts.leave_running = bool(ctx.flag("leave-running"))
        paths = st.get("cgroup_paths") or {}
        fcg = paths.get("freezer") or (paths.get("") if len(paths) == 1 else None)
        if fcg:
            opts.freeze_cgroup = fcg  # CRIU freezes through the cgroup instead of ptrace-stopping one by one
        if ps:
            opts.ps.address, opts.ps.port = ps
        if parent:
            opts.parent_img = parent
            opts.track_mem = True
        _external_ns(config, opts)
        if not pre_dump:
            _add_ext_mounts(opts, _ext_mounts(config, paths, restore=False))
            _write_descriptors(image, st["pid"])
        req = criu.request(criu.PRE_DUMP if pre_dump else criu.DUMP, opts)

        def on_notify(script, pid, fds):
            if script == "status-ready" and status_fd >= 0:
                # CRIU >= 3.15: the lazy-pages page server is ready; runc writes one NUL and closes
                os.write(status_fd, b"\0")
                os.close(status_fd)

        try:
            _run(swrk, req, on_notify, log_dir, DUMP_LOG, "checkpoint")
        except OciError as e:
            from ociruntime.state import init_alive
            if not init_alive(st):  # CRIU's own message for a root task gone mid-dump is a BUG line
                raise OciError(f"checkpoint: the container exited during the checkpoint ({e})")
            raise
    finally:
        if swrk is not None:
            swrk.close()
        for fd in pass_fds:
            os.close(fd)
        c.close()
    if not (opts.leave_running or pre_dump):
        # the processes are gone (CRIU killed them after the dump): the container goes too, as runc
        from ociruntime.lifecycle import control
        control.delete(ctx.root, cid, force=True)
    elif status == "running" and cgroups.manager_of(st).is_frozen():
        pass  # CRIU thaws what it froze; a paused container stays paused
    return 0


def _page_server(value):
    """--page-server ADDRESS:PORT (runc: the last colon splits, so [v6]:port works)."""
    if not value:
        return None
    addr, _, port = value.rpartition(":")
    try:
        port = int(port)
    except ValueError:
        port = -1
    if not addr or not 0 < port < 65536:
        raise OciError(f"--page-server {value!r}: expected ADDRESS:PORT")
    return addr.strip("[]"), port


def _status_fd(fd):
    """--status-fd: an open, writable descriptor (runc checks the same), or -1."""
    if fd is None or fd < 0:
        return -1
    import fcntl
    try:
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise OciError(f"invalid --status-fd argument {fd}: {e.strerror}")
    if not fl & (os.O_WRONLY | os.O_RDWR):
        raise OciError(f"invalid --status-fd argument {fd}: not writable")
    return fd


def _write_descriptors(image, pid):
    """runc's descriptors.json: where the init's fds 0-2 point (pipe:[ino], /dev/pts/N, /dev/null...)."""
    fds = []
    for i in range(3):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{i}"))
        except OSError:
            fds.append("/dev/null")
    fd = os.open(os.path.join(image, DESCRIPTORS), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(fds).encode())
    finally:
        os.close(fd)


import re as _re
_PID_TAKEN = _re.compile(r"Can't fork for \d+: File exists")
PID_WAIT = 10.0  # seconds a restore waits for the dumped pids to be free


def _need_root(what):
    if os.geteuid() != 0:
        # CRIU dumps and restores other processes' memory, namespaces and mounts: root only, as in runc
        # (CRIU's --unprivileged mode cannot restore the namespaces and cgroups a container has)
        raise OciError(f"{what}: needs root (CRIU cannot {what} a rootless container)")


def cmd_checkpoint(ctx):
    _need_root("checkpoint")
    try:
        return checkpoint(ctx)
    except OciError as e:
        if not str(e).startswith("checkpoint"):
            e.args = (f"checkpoint: {e}",) if not isinstance(e, StateError) else e.args
        raise


# --- restore ---------------------------------------------------------------------------------------

def _libc_mount(src, dst, flags):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(src.encode(), dst.encode(), None, flags, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), dst)


def _umount(path):
    from ociruntime._shim import lib
    lib.oci_umount(path.encode(), 2)  # MNT_DETACH


def _cg_roots(pid):
    """runc criuApplyCgroups: CRIU's cgroup roots are where its own process was put (one per controller)."""
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) != 3:
                continue
            for ctrl in parts[1].split(","):
                out.append((ctrl, parts[2]))
    return out


def _loopback_up(pid):
    """Set lo up in the network namespace of pid, from outside: a NETLINK_ROUTE socket made in that
    namespace by the sealed init (netdev._netns_socket), then one RTM_NEWLINK for ifindex 1."""
    from ociruntime.lean import struct, socket as _socket
    from ociruntime.netdev import _netns_socket
    ns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = _netns_socket(ns)
    finally:
        os.close(ns)
    if fd < 0:
        raise OciError("restore: cannot open a netlink socket in the restored network namespace")
    s = _socket.socket(fileno=fd)
    try:
        RTM_NEWLINK, NLM_F_REQUEST, NLM_F_ACK, IFF_UP = 16, 1, 4, 1
        body = struct.pack("=BxHiII", 0, 0, 1, IFF_UP, IFF_UP)
        s.send(struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body)
        ack = s.recv(4096)
        if len(ack) >= 20:
            err = struct.unpack("=i", ack[16:20])[0]
            if err:
                raise OciError(f"restore: set loopback up: {os.strerror(-err)}")
    finally:
        s.close()


def _inherit_stdio(image, opts):
    """runc: the checkpointed init's stdio pipes are replaced by ours (CRIU inherit_fd key pipe:[ino] ->
    our fd 0/1/2, which CRIU inherits)."""
    try:
        with open(os.path.join(image, DESCRIPTORS), "rb") as f:
            fds = json.loads(f.read())
    except FileNotFoundError:
        raise OciError(f"restore: {os.path.join(image, DESCRIPTORS)}: no such file (not a checkpoint image "
                       f"directory?)")
    except (OSError, ValueError) as e:
        raise OciError(f"restore: read {DESCRIPTORS}: {getattr(e, 'strerror', None) or e}")
    if not isinstance(fds, list):
        raise OciError(f"restore: {DESCRIPTORS}: not a list")
    for i, s in enumerate(fds[:3]):
        if isinstance(s, str) and "pipe:" in s:
            inh = opts.inherit_fd.add()
            inh.key, inh.fd = s, i


class _Restore:
    """What a restore made, to undo on failure."""

    def __init__(self):
        self.mgr = None  # the container's cgroup manager (cgroupfs v1/v2 or systemd), as create's
        self.mounted = None
        self.criu_root = None
        self.pid = 0
        self.fds = []
        self.master = -1  # a foreground restore's pty master (relayed by cmd_restore)


def restore(ctx):
    from ociruntime.lifecycle.create import _load_config, write_pid_file, rfc3339nano, id_bundle_pid_file
    cid, pid_file, bundle = id_bundle_pid_file(ctx)
    image, _ = _image_paths(ctx)
    config = _load_config(bundle)
    proc = config.get("process") or {}
    console = ctx.flag("console-socket")
    detach = ctx.flag("detach")
    if proc.get("terminal") and not console and detach:
        raise OciError("cannot allocate tty if runc will detach without setting console socket")
    if console and not proc.get("terminal"):
        raise OciError("cannot use console socket if runc will not detach or allocate tty")
    if console and not detach:
        raise OciError("cannot use console socket if runc will not detach or allocate tty")
    _check_lsm_flags(ctx)
    rootless = cgroups.rootless_mode(ctx.g.get("rootless"))
    r = _Restore()
    log_dir = image
    try:
        r.fds.append(_open_dir(image, "--image-path"))
        if ctx.flag("work-path"):
            work = os.path.abspath(ctx.flag("work-path"))
            os.makedirs(work, 0o700, exist_ok=True)
            r.fds.append(_open_dir(work, "--work-path"))
            log_dir = work
        ext_ns = _restore_ns_fds(config)
        r.fds += [fd for _, fd in ext_ns]
        # our stdio stays CRIU's: it hands fds 0-2 to the restored process (inherit_fd)
        swrk = _open_criu(ctx, r.fds, quiet=False, lazy=bool(ctx.flag("lazy-pages")))
    except BaseException:
        _close_fds(r.fds)
        raise
    store = Store(ctx.root)
    try:
        cdir = store.claim(cid)
    except BaseException:
        swrk.close()
        _close_fds(r.fds)
        raise
    linux = config.get("linux") or {}
    try:
        mgr = r.mgr = cgroups.new_manager(cid, linux, systemd=ctx.g.get("systemd-cgroup"), rootless=rootless,
                                          annotations=config.get("annotations"))
        try:
            mgr.prepare(linux.get("resources") or {})
        finally:  # if this process is killed from here on, `delete` finds what to clean up
            cdir.write_state({"id": cid, "pid": 0, "init_start": 0, "bundle": bundle, "rootfs": "", "created": "",
                              **mgr.state()}, name=CREATING_FILE)
        cg_paths = mgr.paths
        root = (config.get("root") or {}).get("path", "rootfs")
        rootfs = os.path.realpath(root if os.path.isabs(root) else os.path.join(bundle, root))
        config["_bundle"] = bundle
        M = criu.messages()
        opts = M["criu_opts"]()
        _common_opts(ctx, opts)
        opts.images_dir_fd = r.fds[0]
        if ctx.flag("work-path"):
            opts.work_dir_fd = r.fds[1]
        for key, fd in ext_ns:
            inh = opts.inherit_fd.add()
            inh.key, inh.fd = key, fd
        opts.log_file = RESTORE_LOG
        opts.evasive_devices = True
        opts.rst_sibling = True
        # CRIU wants its root to be a mount point whose parent is not overmounted: a bind of the rootfs
        # below the state dir, detached once CRIU is done (runc's criu-root)
        r.criu_root = os.path.join(cdir.path, CRIU_ROOT)
        os.mkdir(r.criu_root, 0o755)
        _libc_mount(rootfs, r.criu_root, planmod.MS_BIND | planmod.MS_REC)
        r.mounted = r.criu_root
        opts.root = r.criu_root
        if ctx.flag("lsm-profile"):
            opts.lsm_profile = ctx.flag("lsm-profile")
        if ctx.flag("lsm-mount-context"):
            opts.lsm_mount_context = ctx.flag("lsm-mount-context")
        _prepare_mountpoints(config, rootfs)
        _add_ext_mounts(opts, _ext_mounts(config, cg_paths, restore=True))
        _inherit_stdio(image, opts)
        runtime_netns = _has_ns(config, "network", with_path=False)
        st = {
            "id": cid, "pid": 0, "init_start": 0, "bundle": bundle, "rootfs": rootfs,
            "created": rfc3339nano(time.time_ns()), "annotations": config.get("annotations") or {},
            "hooks": {k: v for k, v in (config.get("hooks") or {}).items() if k in ("poststart", "poststop")},
            "new_ns": _new_ns(config),
            "joined_pidns": _has_ns(config, "pid", with_path=True),
            "seccomp": linux.get("seccomp"),
            "lsm": {k: proc[k] for k in ("apparmorProfile", "selinuxLabel") if proc.get(k)},
            "personality": linux.get("personality"), "memory_policy": linux.get("memoryPolicy"),
            "exec_cpu_affinity": proc.get("execCPUAffinity"), "scheduler": proc.get("scheduler"),
            "io_priority": proc.get("ioPriority"), "resources": linux.get("resources") or {},
            "notify_socket": False, "host_mounts": not _has_ns(config, "mount"),
            "owner": os.geteuid(), "rootless": rootless, "restored": True,
        }
        st.update(mgr.state())
        hooks = config.get("hooks") or {}

        def on_notify(script, pid, fds):
            if script == "setup-namespaces":
                if runtime_netns and pid:
                    _loopback_up(pid)  # runc leaves lo down here
                if hooks.get("prestart") or hooks.get("createRuntime"):
                    from ociruntime import hooks as hookmod
                    s = {**st, "pid": pid}
                    hookmod.run(hooks, "prestart", json.dumps(spec_state(s, "created")).encode(), cwd=bundle)
                    hookmod.run(hooks, "createRuntime", json.dumps(spec_state(s, "creating")).encode(), cwd=bundle)
            elif script == "orphan-pts-master" and fds:
                if console:
                    _send_master(console, fds[0])
                else:  # foreground: we relay the terminal ourselves, as `run` does
                    r.master = os.dup(fds[0])
            elif script == "post-restore" and pid:
                r.pid = pid

        try:
            # CRIU's own process goes into the container's cgroups first: the restored tree is born there
            mgr.apply(swrk.pid)
            st.update(mgr.state())  # what the driver made while placing it (systemd v1: its directories)
            for ctrl, path in _cg_roots(swrk.pid):
                cr = opts.cg_root.add()
                cr.ctrl, cr.path = ctrl, path
            resp = _run(swrk, criu.request(criu.RESTORE, opts), on_notify, log_dir, RESTORE_LOG, "restore")
        finally:
            swrk.close()  # CRIU exits once the restore is answered (the restored tree is our child)
        r.pid = resp.restore.pid or r.pid
        info = proc_start_time(r.pid)
        if not info or info[1] in ("Z", "X"):
            raise OciError("restore: the restored container process is gone")
        st["pid"], st["init_start"] = r.pid, info[0]
        cdir.write_state(st)
        try:
            os.unlink(CREATING_FILE, dir_fd=cdir.fd)
        except FileNotFoundError:
            pass
        if pid_file:
            write_pid_file(pid_file, r.pid)
    except BaseException:
        _rollback(r, cdir)
        raise
    finally:
        swrk.close()
        _close_fds(r.fds)
        _release_criu_root(r)
    cdir.close()
    st["_master"] = r.master
    if hooks.get("poststart"):
        from ociruntime import hooks as hookmod
        hookmod.run(hooks, "poststart", json.dumps(spec_state(st, "running")).encode(), cwd=bundle)
    return st


def _check_lsm_flags(ctx):
    """--lsm-profile TYPE:NAME (apparmor or selinux, as runc passes it to CRIU) and --lsm-mount-context
    (an SELinux context): refused up front, naming what is missing, where the host has no such LSM (CRIU
    would fail half-way through the restore)."""
    from ociruntime import lsm
    prof = ctx.flag("lsm-profile") or ""
    if prof:
        kind, sep, name = prof.partition(":")
        if not sep or not name or kind not in ("apparmor", "selinux"):
            raise OciError(f"--lsm-profile {prof!r}: expected apparmor:PROFILE or selinux:LABEL")
        if kind == "apparmor" and not lsm.apparmor_enabled():
            raise OciError(f"--lsm-profile {prof!r}: AppArmor is not enabled on this host")
        if kind == "selinux" and not lsm.selinux_enabled():
            raise OciError(f"--lsm-profile {prof!r}: SELinux is not enabled on this host")
    ctxt = ctx.flag("lsm-mount-context") or ""
    if ctxt and not lsm.selinux_enabled():
        raise OciError(f"--lsm-mount-context {ctxt!r}: SELinux is not enabled on this host")


def _new_ns(config):
    n = 0
    for ns in (config.get("linux") or {}).get("namespaces") or ():
        if not ns.get("path"):
            n |= planmod.NAMESPACES.get(ns.get("type"), 0)
    return n


def _prepare_mountpoints(config, rootfs):
    """runc prepareCriuRestoreMounts: CRIU needs every bind mount's mount point in the rootfs (a copied
    bundle may lack those the first run made)."""
    for m in config.get("mounts") or ():
        opts = m.get("options") or []
        if not (m.get("type") == "bind" or "bind" in opts or "rbind" in opts):
            continue
        dst = os.path.join(rootfs, m["destination"].lstrip("/"))
        if os.path.lexists(dst):
            continue
        src = m.get("source", "")
        try:
            if os.path.isdir(src):
                os.makedirs(dst, 0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
                os.close(os.open(dst, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
        except OSError:
            pass


def _send_master(console, master_fd):
    from ociruntime.lean import struct, socket as _socket
    if not console:
        return
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(console)
        s.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("=i", master_fd))])
    except OSError as e:
        raise OciError(f"restore: send the console to {console}: {e.strerror}")
    finally:
        s.close()


def _release_criu_root(r):
    """Detach and remove the rbind of the rootfs CRIU restored into (once CRIU is done, or on failure)."""
    if r.mounted:
        _umount(r.mounted)
        r.mounted = None
    if r.criu_root:
        try:
            os.rmdir(r.criu_root)
        except OSError:
            pass
        r.criu_root = None


def _rollback(r, cdir):
    import signal
    if r.master >= 0:
        os.close(r.master)
        r.master = -1
    if r.pid:
        try:
            os.kill(r.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if r.mgr is not None:
        try:
            r.mgr.kill_all(signal.SIGKILL)
        except Exception:
            pass
    if r.pid:
        try:
            os.waitpid(r.pid, 0)
        except ChildProcessError:
            pass
    _release_criu_root(r)
    if r.mgr is not None:
        try:
            r.mgr.rollback()  # only what this restore made (and its systemd unit): a pre-existing cgroup stays
        except OciError:
            pass
    cdir.remove()


def cmd_restore(ctx):
    _need_root("restore")
    detach = ctx.flag("detach")
    deadline = None
    while True:
        try:
            st = restore(ctx)
            break
        except OciError as e:
            if not str(e).startswith("restore"):
                e.args = (f"restore: {e}",)
            # the checkpointed processes' pids are still taken in a pid namespace the restore shares
            # (joined by path, or the host's) until their zombies are reaped by a parent we do not
            # control (PID 1 may take seconds): CRIU fails "Can't fork for N: File exists". A failed
            # restore left nothing behind, so it is tried again for a while; runc fails here.
            if not _PID_TAKEN.search(str(e)):
                raise
            import time as _time
            deadline = deadline or _time.monotonic() + PID_WAIT
            if _time.monotonic() > deadline:
                raise
            _time.sleep(0.2)
    if detach:
        return 0
    # foreground: as `run`, wait for the restored init (our child: CRIU restored it as its sibling),
    # forwarding signals, then delete the container
    from ociruntime.lifecycle import control
    from ociruntime.lifecycle.create import forward_signals, wait_exit_code
    pid = st["pid"]
    if not ctx.flag("no-subreaper"):
        from ociruntime._shim import lib
        lib.oci_set_child_subreaper()
    master = st.pop("_master", -1)
    if master >= 0:
        from ociruntime import console as conmod
        code = conmod.relay(master, pid)
        control.delete(ctx.root, st["id"], force=True)
        return code
    forward_signals(pid)
    code = wait_exit_code(pid)
    control.delete(ctx.root, st["id"], force=True)
    return code
