"""create and run: load + validate the config, plan, start the C init, serve its sync requests.

The init runs from a sealed memfd copy of ociruntime-init (CVE-2019-5736); Python never runs in a
process that has joined or created the container's namespaces. Any failure before the init is
released rolls back exactly what this call made (runtime.md: "as if the operation were never
attempted"): the init and its helper are killed, the cgroups and the state dir removed.
"""
import errno
import fcntl
import os
from ociruntime.lean import signal
from ociruntime.lean import struct
import time

from ociruntime import OCI_VERSION, cgroups, fastjson as json, plan as planmod
from ociruntime.lean import trace  # the trace module when tracing, else a no-op (nothing imported)
from ociruntime.errors import OciError, SpawnError
from ociruntime.log import log
from ociruntime.initbin import sealed_init
from ociruntime.state import (Store, proc_start_time, validate_id, spec_state, FIFO, CREATING_FILE,
                              DEFAULT_ROOT, running_in_userns)

def rfc3339nano(ns):
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    f = f"{frac:09d}".rstrip("0")
    return f"{base}.{f}Z" if f else f"{base}Z"


def spawn(plan_data, slots, base):
    """Start the sealed init with slots[i] on fd base+i (slots[1] is the plan memfd, made here).
    argv: ociruntime-init <plan fd> <sync fd>. Returns (pid, pidfd)."""
    plan_fd = os.memfd_create("ociruntime-plan", os.MFD_CLOEXEC)
    init_fd = -1
    try:
        os.write(plan_fd, plan_data)
        init_fd = sealed_init()
        slots = list(slots)
        slots[1] = plan_fd
        from ociruntime._shim import ffi, lib
        argv_keep = [ffi.new("char[]", b"ociruntime-init"), ffi.new("char[]", str(base + 1).encode()),
                     ffi.new("char[]", str(base).encode())]
        argv = ffi.new("char *[]", argv_keep + [ffi.NULL])
        cfds = ffi.new("int[]", slots)
        pidfd = ffi.new("int *", -1)
        pid = lib.oci_spawn(init_fd, argv, cfds, len(slots), base, -1, pidfd)
    finally:
        os.close(plan_fd)
        if init_fd >= 0:
            os.close(init_fd)
    if pid < 0:
        raise SpawnError(f"start container init: {os.strerror(-pid)}")
    return pid, pidfd[0]


def write_pid_file(path, pid):
    """Digits only, no newline, atomically (temp + rename), as go-runc's strict Atoi needs."""
    d, base = os.path.split(path)
    tmp = os.path.join(d, f".{base}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_SYNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def send_pidfd(path, pid, payload):
    """--pidfd-socket: a pidfd of the new process over SCM_RIGHTS (payload "standard" for the init,
    "setns" for exec, as runc)."""
    from ociruntime.lean import socket as _socket
    try:
        fd = os.pidfd_open(pid)
    except OSError as e:
        raise OciError(f"--pidfd-socket requires >= v5.3 kernel: pidfd_open: {e.strerror}")
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendmsg([payload], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("=i", fd))])
    except OSError as e:
        raise OciError(f"send pidfd to {path}: {e.strerror}")
    finally:
        s.close()
        os.close(fd)


def connect_console(path):
    """Connect to the --console-socket (AF_UNIX stream); the init sends the pty master on it."""
    from ociruntime.lean import socket as _socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise OciError(f"connect to console socket {path}: {e.strerror}")
    return s.detach()


def _load_config(bundle):
    with trace.step("import validators"):
        from ociruntime import config as cfgmod, schema, validate
    with trace.step("load"):
        doc = cfgmod.load(os.path.join(bundle, "config.json"))
        validate.runc_leniency(doc)
    with trace.step("validate: schema"):
        schema.validate_config(doc)
    with trace.step("validate: semantics"):
        validate.check_config(doc, bundle, for_create=True)
        if os.geteuid() != 0:
            validate.check_rootless(doc)
    with trace.step("validate: host"):
        validate.check_host(doc)
    return doc


def _preserved_fds(ctx):
    n = 0
    env_extra = []
    lf = os.environ.get("LISTEN_FDS")
    if lf and os.environ.get("LISTEN_PID") == str(os.getpid()):
        try:
            n = int(lf)
        except ValueError:
            n = 0
        if n > 0:
            env_extra = [f"LISTEN_FDS={n}", "LISTEN_PID=1"]
    extra = ctx.flag("preserve-fds", 0)
    if extra < 0:
        raise OciError("--preserve-fds must be a non-negative number")
    total = n + extra
    for i in range(total):
        try:
            os.fstat(3 + i)
        except OSError as e:
            raise OciError(f"unable to stat preserved-fd {i} (of {total}): {e.strerror}")
    return total, env_extra


class Spawned:
    def __init__(self):
        self.stage1 = self.stage1_pidfd = self.init_pid = None
        self.netdev = None  # netdev.Mover when the config has linux.netDevices
        self.idmap = {}  # config index -> (user namespace fd, recursive): plan.Plan.idmap_in_root

    def close_idmap(self):
        for fd, _ in self.idmap.values():
            os.close(fd)
        self.idmap = {}

    def kill(self):
        for pid in (self.init_pid, self.stage1):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in (self.stage1, self.init_pid):
            if pid:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass


def create(ctx, detach_checks=True):
    """Returns the saved state dict; the init is blocked on the exec fifo."""
    with trace.step("arguments"):
        cid, pid_file, bundle, npreserve, listen_env = _arguments(ctx)
    config = _load_config(bundle)
    with trace.step("host: console, network devices, cgroup driver"):
        proc, console, net_devices, rootless = _host_checks(ctx, config, detach_checks, listen_env)
    return _create(ctx, cid, pid_file, bundle, npreserve, config, proc, console, net_devices, rootless)


def id_bundle_pid_file(ctx):
    """create/run/restore: the container id, --pid-file made absolute, --bundle resolved."""
    cid = validate_id(ctx.args[0])
    pid_file = ctx.flag("pid-file")
    if pid_file:
        pid_file = os.path.abspath(pid_file)
    bundle = ctx.flag("bundle") or "."
    if not os.path.isdir(bundle):
        raise OciError(f"bundle {bundle!r}: no such directory")
    return cid, pid_file, os.path.realpath(bundle)


def _arguments(ctx):
    cid, pid_file, bundle = id_bundle_pid_file(ctx)
    npreserve, listen_env = _preserved_fds(ctx)
    return cid, pid_file, bundle, npreserve, listen_env


def _host_checks(ctx, config, detach_checks, listen_env):
    proc = config.get("process") or {}
    console = ctx.flag("console-socket")
    if detach_checks:
        if proc.get("terminal") and not console:
            raise OciError("cannot allocate tty if runc will detach without setting console socket")
        if console and not proc.get("terminal"):
            raise OciError("cannot use console socket if runc will not detach or allocate tty")
    if listen_env:
        config.setdefault("process", {}).setdefault("env", []).extend(listen_env)
    net_devices = (config.get("linux") or {}).get("netDevices")
    if net_devices:
        from ociruntime import netdev  # pyroute2: only for a config that moves network devices
        netdev.check_host(net_devices)

    # the rootless cgroup manager (global --rootless, auto: euid != 0 or in a user namespace)
    rootless = cgroups.rootless_mode(ctx.g.get("rootless"))
    return proc, console, net_devices, rootless


def _create(ctx, cid, pid_file, bundle, npreserve, config, proc, console, net_devices, rootless):
    if not ctx.g.get("root") and ctx.root != DEFAULT_ROOT:
        from ociruntime.state import prepare_xdg_root
        prepare_xdg_root(ctx.root)
    with trace.step("state: claim id"):
        store = Store(ctx.root)
        cdir = store.claim(cid)
    sp = Spawned()
    mgr = None
    sock = None
    userns_fds = []
    try:
        if os.environ.get("NOTIFY_SOCKET"):
            from ociruntime import notify
            notify.prepare(config, cdir.path)
        linux = config.get("linux") or {}
        # the cgroup manager (cgroupfs v1 or v2, or systemd with --systemd-cgroup); rootless without
        # an explicit cgroupsPath, hierarchies we may not create or join are skipped (runc)
        mgr = cgroups.new_manager(cid, linux, systemd=ctx.g.get("systemd-cgroup"), rootless=rootless,
                                  annotations=config.get("annotations"))
        resources = linux.get("resources") or {}
        late_pids = None
        plimit = (resources.get("pids") or {}).get("limit")
        if plimit is not None and 0 <= plimit < cgroups.SETUP_TASKS:
            # a pids limit below what our two setup processes need: written once the init is the
            # container's only task (after SYNC_PID), as runc writes it once its init is alone
            late_pids = {"pids": {"limit": plimit}}
            resources = {**resources, "pids": {}}
        # if this process is killed from here on, `delete` finds what to clean up in creating.json
        early = {"id": cid, "pid": 0, "init_start": 0, "bundle": bundle, "rootfs": "", "created": "",
                 **mgr.state()}
        try:
            with trace.step("cgroups: create"):
                mgr.prepare(resources)  # cgroupfs: the directories and their limits, before the init exists
        finally:
            with trace.step("state: creating.json"):
                cdir.write_state({**early, **mgr.state()}, name=CREATING_FILE)
        # overlaps the kernel's first-migration grace period with the work below (after the mkdirs:
        # the waiting writer holds cgroup_mutex, which mkdir needs too)
        if mgr.uses_procs_writes():  # a v1 hierarchy: the init is placed by cgroup.procs writes
            cgroups.prewarm_attach()
        base = 3 + npreserve
        fds = {"sync": base, "plan": base + 1, "fifo": base + 2, "close_from": base}
        console_sock = None
        if proc.get("terminal"):
            internal = getattr(ctx, "internal_console", None)
            if console:
                console_sock = connect_console(console)
            elif internal is not None:
                console_sock = internal.detach()
        if console_sock is not None:
            fds["console"] = base + 3
        fds["idmap_base"] = base + 3 + (console_sock is not None)
        with trace.step("plan"):
            p = planmod.build(config, bundle, fds, {"no_pivot": ctx.flag("no-pivot"),
                                                    "rootless_euid": os.geteuid() != 0,
                                                    "in_userns": running_in_userns(),
                                                    "rootless_cgroups": mgr.rootless,
                                                    "relay_tty": console_sock is not None and not console,
                                                    "trace": trace.active()},
                              mgr.mount_paths())
            p.config = config
        with trace.step("idmap user namespaces"):
            userns_fds = idmap_userns_fds(p.idmap_userns)
            # the trees of idmapped binds inside the root come back from the init (SYNC_IDMAP_FD)
            sp.idmap = {i: (os.dup(userns_fds[u]), rec) for i, (u, rec) in p.idmap_in_root.items()}
        if p.net_devices:
            from ociruntime import netdev  # imported by _host_checks already
            sp.netdev = netdev.Mover(p.net_devices)

        fifo_step = trace.step("exec fifo")
        fifo_step.__enter__()
        os.mkfifo(FIFO, 0o622, dir_fd=cdir.fd)
        os.chmod(FIFO, 0o622, dir_fd=cdir.fd)
        try:
            os.chown(FIFO, p.host_root_uid, p.host_root_gid, dir_fd=cdir.fd)
        except PermissionError:
            # rootless with the container's root on a sub-id: we may not give the fifo away (runc
            # fails here: "fchown fd 7: operation not permitted"); its mode (0622) already lets the
            # init open it for writing through /proc/self/fd, so it stays ours
            if os.geteuid() == 0:
                raise
        fifo_fd = os.open(FIFO, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=cdir.fd)
        fifo_step.__exit__(None, None, None)
        from ociruntime.lean import socket as _socket
        spawn_step = trace.step("spawn init")
        spawn_step.__enter__()
        sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        slots = [child_sock.fileno(), None, fifo_fd] + ([console_sock] if console_sock is not None else [])
        slots += userns_fds
        pid, pidfd = spawn(p.data, slots, base)
        trace.name_process(pid, "init stage-1 (setup)")
        for fd in (fifo_fd,) + ((console_sock,) if console_sock is not None else ()) + tuple(userns_fds):
            os.close(fd)
        userns_fds = []
        child_sock.close()
        sp.stage1, sp.stage1_pidfd = pid, pidfd
        spawn_step.__exit__(None, None, None)
        # the cgroup seam: the init is in its cgroup before it runs anything of the user's
        with trace.step("cgroups: attach"):
            mgr.apply(pid)
        if mgr.lax and not mgr.paths and not (p.new_ns & planmod.CLONE_NEWPID or
                                            any(f == planmod.CLONE_NEWPID for f, _ in p.joins)):
            log.warning("Creating a rootless container with no cgroup and no private pid namespace. Such "
                        "configuration is strongly discouraged (as it is impossible to properly kill all "
                        "container's processes)")
        sync_step = trace.step("sync: the init sets up")
        sync_step.__enter__()
        _send(sock, planmod.SYNC_GO)
        log.debug(f"create {cid}: stage-1 in its cgroup, GO sent")
        st = {
            "id": cid, "pid": 0, "init_start": 0, "bundle": bundle, "rootfs": p.rootfs,
            "created": rfc3339nano(time.time_ns()), "annotations": config.get("annotations") or {},
            "hooks": {k: v for k, v in (config.get("hooks") or {}).items() if k in ("poststart", "poststop")},
            **mgr.state(), "new_ns": p.new_ns,
            "joined_pidns": any(f == planmod.CLONE_NEWPID for f, _ in p.joins),
            "seccomp": linux.get("seccomp"),  # exec'd processes get the container's filter, as in runc
            # ... and its AppArmor profile / SELinux label unless they name their own (runc newInitConfig)
            "lsm": {k: proc[k] for k in ("apparmorProfile", "selinuxLabel") if proc.get(k)},
            # ... and its personality and memory policy; execCPUAffinity is exec's default (runc)
            "personality": linux.get("personality"), "memory_policy": linux.get("memoryPolicy"),
            "exec_cpu_affinity": (config.get("process") or {}).get("execCPUAffinity"),
            "scheduler": (config.get("process") or {}).get("scheduler"),
            "io_priority": (config.get("process") or {}).get("ioPriority"),
            "resources": linux.get("resources") or {},  # the baseline `update` merges into
            "notify_socket": bool(os.environ.get("NOTIFY_SOCKET")),
            # no mount namespace: the mounts are in our own namespace, below the rootfs; delete undoes them
            "host_mounts": not any(n.get("type") == "mount" for n in linux.get("namespaces") or ()),
            "owner": os.geteuid(),
            "rootless": rootless,  # exec: cgroup join errors are ignored, as at create
        }
        try:
            _serve(sock, sp, p, st, cdir, lambda: late_pids and mgr.set(late_pids, skip_devices=True))
        except BaseException as e:
            sync_step.__exit__(type(e), e, None)
            raise
        sync_step.__exit__(None, None, None)
        with trace.step("pid file"):
            if ctx.flag("pidfd-socket"):
                send_pidfd(ctx.flag("pidfd-socket"), st["pid"], b"standard")
            if pid_file:
                try:
                    write_pid_file(pid_file, st["pid"])
                except OSError as e:
                    raise OciError(f"write pid file {pid_file}: {e.strerror}")
    except BaseException:
        rollback = trace.step("rollback")
        rollback.__enter__()
        for fd in userns_fds:
            os.close(fd)
        sp.kill()
        if sp.netdev:
            sp.netdev.rollback()  # we still hold the container's network namespace: devices go back
        if mgr is not None:
            try:
                mgr.rollback()  # only what this call made: a pre-existing cgroup stays; no unit left
            except OciError:
                pass
        cdir.remove()
        rollback.__exit__(None, None, None)
        raise
    finally:
        sp.close_idmap()
        if sp.netdev:
            sp.netdev.close()
        if sp.stage1_pidfd and sp.stage1_pidfd >= 0:
            os.close(sp.stage1_pidfd)
        if sock:
            sock.close()
    cdir.close()
    return st


def idmap_userns_fds(requests):
    """One user namespace fd per distinct mapping of the idmapped mounts (plan.Plan.idmap_userns), in
    order. A mapping's namespace is made by a helper child born in a new user namespace (C, see
    oci_userns_helper): we write its maps, keep an fd of its namespace and end it by pid at once (the
    fd keeps the namespace alive), as runc does. A joined user namespace is opened by path."""
    fds = []
    try:
        for key, ptr in requests:
            if key[0] == "path":
                try:
                    fds.append(os.open(key[1], os.O_RDONLY | os.O_CLOEXEC))
                except OSError as e:
                    raise OciError(f"open user namespace {key[1]} for the idmapped mount {ptr}: {e.strerror}")
            else:
                fds.append(_mapped_userns(key[1], key[2], ptr))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _mapped_userns(uids, gids, ptr):
    from ociruntime._shim import ffi, lib
    from ociruntime.errors import ConfigError
    hold = ffi.new("int *", -1)
    pid = lib.oci_userns_helper(hold)
    if pid < 0:
        raise SpawnError(f"create a user namespace for the idmapped mount {ptr}: {os.strerror(-pid)}")
    try:
        for name, maps in (("uid_map", uids), ("setgroups", None), ("gid_map", gids)):
            data = "deny" if maps is None else "".join(f"{c} {h} {n}\n" for c, h, n in maps)
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data.encode())
            except OSError as e:
                raise ConfigError(ptr, f"the kernel refused the idmapped mount's {name}: {e.strerror}")
            finally:
                os.close(fd)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(hold[0])


def _send(sock, typ, value=0, payload=b""):
    sock.send(struct.pack("=Ii", typ, value) + payload)


def _write_maps(pid, p):
    rootless_euid = os.geteuid() != 0
    if rootless_euid and p.gid_map == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]:
        # an unprivileged process may map its own gid only once setgroups is denied (user_namespaces(7));
        # any other gid mapping goes through newgidmap, which decides (runc requiresRootOrMappingTool)
        try:
            _write_proc(pid, "setgroups", b"deny")
        except OSError as e:
            raise SpawnError(f"write setgroups of the container: {e.strerror}")
    for name, maps in (("uid_map", p.uid_map), ("gid_map", p.gid_map)):
        data = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)
        try:
            _write_proc(pid, name, data.encode())
        except OSError as e:
            if not (rootless_euid and e.errno == errno.EPERM):
                raise SpawnError(f"write {name} of the container: {e.strerror}")
            # not ours to map alone (more than our own id): the setuid helper checks /etc/sub[ug]id
            _map_with_tool("newuidmap" if name == "uid_map" else "newgidmap", pid, maps)


def _write_proc(pid, name, data):
    fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _map_with_tool(tool, pid, maps):
    """newuidmap/newgidmap PID (ID HOSTID SIZE)... as runc does for a rootless multi-id mapping."""
    import shutil
    import subprocess
    path = shutil.which(tool)
    if not path:
        raise SpawnError(f"the {tool[3:6]} mapping needs {tool} (package uidmap) when running rootless "
                         f"and mapping more than your own id")
    argv = [path, str(pid)] + [str(v) for m in maps for v in (m["containerID"], m["hostID"], m["size"])]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise SpawnError(f"{tool}: {e.strerror}")
    if r.returncode != 0:
        out = " ".join(r.stdout.decode(errors="replace").split())
        raise SpawnError(f"{tool} failed (exit status {r.returncode}): {out}")


def recv_msg(sock):
    """One sync message: (type, value, payload, [fds passed with SCM_RIGHTS]); type None at EOF."""
    from ociruntime.lean import socket as _socket
    msg, anc, _f, _a = sock.recvmsg(8 + 65536, _socket.CMSG_SPACE(4))
    fds = []
    for level, typ, data in anc:
        if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data) - 3, 4)]
    if len(msg) < 8:
        return None, 0, b"", fds
    typ, val = struct.unpack("=Ii", msg[:8])
    return typ, val, msg[8:], fds


def forward_seccomp_fd(sock, fd, sc, state, status="creating", process_pid=None):
    """runtime-spec config-linux.md#seccomp: connect to listenerPath, send the container process state
    JSON with the notify fd (SCM_RIGHTS), then let the init go on. For exec, `pid` is the exec'd
    process and `state` the container's (status running, the init's pid), as runc sends."""
    from ociruntime.lean import socket as _socket
    try:
        path = (sc or {}).get("listenerPath")
        if not path:
            raise SpawnError("seccomp notify fd received but linux.seccomp.listenerPath is not set")
        msg = {"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": process_pid or state["pid"],
               "metadata": sc.get("listenerMetadata", ""), "state": spec_state(state, status)}
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.sendmsg([json.dumps(msg).encode()],
                      [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("=i", fd))])
        except OSError as e:
            raise SpawnError(f"send the seccomp notify fd to {path}: {e.strerror}")
        finally:
            s.close()
    finally:
        os.close(fd)
    _send(sock, planmod.SYNC_SECCOMP_ACK)


_SYNC_NAMES = {v: k for k, v in vars(planmod).items() if k.startswith("SYNC_")}
_SYNC_NAMES[None] = "EOF"


def _serve(sock, sp, p, st, cdir, after_pid=lambda: None):
    running = False  # RUN sent: the init finishes its setup and closes the socket when all is well
    while True:
        typ, val, payload, fds = recv_msg(sock)
        if typ == planmod.SYNC_TRACE:
            trace.init_records(payload, sp.init_pid or sp.stage1,
                               lambda n, i, d: planmod.step_pointer(p.config, n, i, d))
            continue
        if typ is None:
            if running:
                info = proc_start_time(st["pid"])
                if info and info[0] == st["init_start"] and info[1] not in ("Z", "X"):
                    return
            raise SpawnError(_why_dead(sp))
        if typ == planmod.SYNC_SECCOMP_FD and fds:
            forward_seccomp_fd(sock, fds[0], p.seccomp, st)
            continue
        if typ == planmod.SYNC_IDMAP_FD and fds and val in sp.idmap:
            try:
                _idmap_tree(fds[0], sp.idmap[val], p, val)
            finally:
                for fd in fds:
                    os.close(fd)
            _send(sock, planmod.SYNC_IDMAP_ACK)
            continue
        if typ == planmod.SYNC_NETDEV_FD and fds and sp.netdev:
            # runc's point (after the namespaces exist, before the rootfs and every hook): move the
            # devices in, through the netlink socket stage-1 opened in the container's namespace
            for fd in fds[1:]:
                os.close(fd)
            sp.netdev.move(fds[0])
            _send(sock, planmod.SYNC_NETDEV_ACK)
            continue
        for fd in fds:
            os.close(fd)
        if typ == planmod.SYNC_ERROR:
            raise SpawnError("unable to start container process: " + _init_error(payload, val, p))
        if typ == planmod.SYNC_WARNING:
            log.warning(payload.decode(errors="replace"))
        elif typ == planmod.SYNC_USERMAP_PLS:
            with trace.step("uid/gid maps"):
                _write_maps(sp.stage1, p)
            _send(sock, planmod.SYNC_USERMAP_ACK)
        elif typ == planmod.SYNC_TIMENS_PLS:
            # linux.timeOffsets with a user namespace: written by us, privileged (runc >= 1.2)
            try:
                _write_proc(sp.stage1, "timens_offsets", payload)
            except OSError as e:
                raise SpawnError(f"write /proc/{sp.stage1}/timens_offsets: {e.strerror}")
            _send(sock, planmod.SYNC_TIMENS_ACK)
        elif typ == planmod.SYNC_PID:
            sp.init_pid = val
            trace.name_process(val, "container init")
            os.waitpid(sp.stage1, 0)
            sp.stage1 = None
            st["pid"] = val
            info = proc_start_time(val)
            st["init_start"] = info[0] if info else 0
            with trace.step("state: creating.json (init pid)"):
                cdir.write_state({**st, "created": st["created"]}, name=CREATING_FILE)
            after_pid()  # stage-1 is gone: the init is the container's only process
        elif typ == planmod.SYNC_HOOKS_PLS:
            if p.hooks.get("prestart") or p.hooks.get("createRuntime"):
                _prestart_hooks(p, st)
            # createContainer hooks run in the container during create: "creating", as runc
            _send(sock, planmod.SYNC_HOOKS_ACK, 0, json.dumps(spec_state(st, "creating")).encode())
        elif typ == planmod.SYNC_READY:
            # runc procRun lesson: the state is on disk before the init may go on
            with trace.step("state: state.json"):
                cdir.write_state(st)
            try:
                os.unlink(CREATING_FILE, dir_fd=cdir.fd)
            except FileNotFoundError:
                pass
            # startContainer hooks see "created" (runc): start has not finished when they run
            _send(sock, planmod.SYNC_RUN, 0, json.dumps(spec_state(st, "created")).encode())
            running = True
        else:
            raise SpawnError(f"unexpected message 0x{typ:x} from the container init")


def _idmap_tree(tree, userns, p, i):
    """An idmapped bind whose source is inside the root: the init cloned it in the container's mount
    namespace (after the earlier mounts); the mapping is set here, where its user namespace and the
    privilege over the source's filesystem are (runc's parent does the same)."""
    from ociruntime._shim import lib
    userns_fd, recursive = userns
    rc = lib.oci_idmap_tree(tree, userns_fd, int(recursive))
    if rc == 0:
        return
    m = p.config["mounts"][i]
    if rc == -errno.EINVAL:
        raise SpawnError(f"/mounts/{i}: cannot idmap the mount of {m.get('source')} on {m.get('destination')}: "
                         f"its filesystem{' (or that of a mount below it)' if recursive else ''} does not support "
                         "idmapped mounts on this kernel (mount_setattr MOUNT_ATTR_IDMAP: Invalid argument)")
    raise SpawnError(f"/mounts/{i}: set the id mapping of {m.get('source')} (for {m.get('destination')}): "
                     f"{os.strerror(-rc)}")


def _prestart_hooks(p, st):
    from ociruntime import hooks  # subprocess: imported only when there are hooks to run
    with trace.step("hooks: prestart, createRuntime"):
        # prestart (deprecated) sees "created", as runtime-tools checks; createRuntime sees
        # "creating" (runtime.md lifecycle step 6)
        hooks.run(p.hooks, "prestart", json.dumps(spec_state(st, "created")).encode(), cwd=st["bundle"])
        hooks.run(p.hooks, "createRuntime", json.dumps(spec_state(st, "creating")).encode(), cwd=st["bundle"])


def _init_error(payload, err, p):
    """The init's error text; with --trace/--debug also its step, the config field and errno (the step
    context follows a NUL, csrc/init/trace.c step_context)."""
    msg, _, ctx = payload.partition(b"\0")
    text = msg.decode(errors="replace")
    if ctx and trace.active():
        name, idx, detail = (ctx.decode(errors="replace").split("\t") + ["-1", ""])[:3]
        ptr = planmod.step_pointer(getattr(p, "config", {}), name, int(idx or -1), detail)
        en = errno.errorcode.get(err) if err > 0 else None
        text += (f" (step {name!r}" + (f" {detail}" if detail else "") + (f", config {ptr}" if ptr else "")
                 + (f", errno {en}" if en else "") + ")")
        trace.add("error", time.monotonic_ns(), 0, "runtime", os.getpid(),
                  {"step": name, "detail": detail, "pointer": ptr, "errno": en, "message": msg.decode(errors="replace")})
    return text


def _why_dead(sp):
    if sp.stage1:
        try:
            _, status = os.waitpid(sp.stage1, 0)
            sp.stage1 = None
            return f"container init setup exited unexpectedly (status {os.waitstatus_to_exitcode(status)})"
        except ChildProcessError:
            pass
    return "container init exited unexpectedly"


def wait_exit_code(pid):
    """Wait for pid, reaping any other child that ends first (we are the subreaper of run and of a
    foreground restore); its exit code as a shell gives it (128+signal), 255 when it is not our child."""
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if wpid == pid:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def forward_signals(pid):
    """Foreground run/exec: every signal we get goes on to pid (runc signals.go)."""
    def fwd(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for s in range(1, signal.NSIG):
        if s in (signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGWINCH, signal.SIGURG):
            continue
        try:
            signal.signal(s, fwd)
        except (OSError, ValueError):
            pass


def cmd_create(ctx):
    try:
        create(ctx)
    except OciError as e:
        e.args = (f"{ctx.argv0} create failed: {e}",)
        raise
    return 0


def cmd_run(ctx):
    with trace.step("import control"):
        from ociruntime.lifecycle import control as lifecycle
    detach = ctx.flag("detach")
    own_console = None
    if not detach and ctx.flag("console-socket"):
        raise OciError(f"{ctx.argv0} run failed: cannot use console socket if runc will not detach or allocate tty")
    try:
        if not detach:
            # a foreground terminal: we are the console socket's peer ourselves
            from ociruntime.lean import socket as _socket
            own_console, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            ctx.internal_console = theirs
        with trace.step("create"):
            st = create(ctx, detach_checks=detach)
    except OciError as e:
        e.args = (f"{ctx.argv0} run failed: {e}",)
        raise
    theirs = getattr(ctx, "internal_console", None)
    if theirs is not None and theirs.fileno() != -1:
        theirs.close()  # no terminal in the config: nothing will come on our console socket
        own_console.close()
        own_console = None
    cid = st["id"]
    pid = st["pid"]
    with trace.step("subreaper, signal forwarding"):
        if not detach and not ctx.flag("no-subreaper"):
            from ociruntime._shim import lib
            lib.oci_set_child_subreaper()
        if not detach:
            forward_signals(pid)
    try:
        with trace.step("start"):
            lifecycle.start(ctx.root, cid)
    except OciError as e:
        lifecycle.delete(ctx.root, cid, force=True)
        raise OciError(f"{ctx.argv0} run failed: {e}")
    if detach:
        return 0
    if own_console is not None:
        from ociruntime import console as conmod
        master = conmod.recv_master(own_console)
        own_console.close()
        code = conmod.relay(master, pid)
        if not ctx.flag("keep"):
            lifecycle.delete(ctx.root, cid, force=True)
        return code
    with trace.step("wait for the container's exit"):
        code = wait_exit_code(pid)
    if not ctx.flag("keep"):
        with trace.step("delete"):
            lifecycle.delete(ctx.root, cid, force=True)
    return code
