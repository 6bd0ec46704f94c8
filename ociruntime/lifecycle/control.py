"""start, state, kill, delete, list: the light commands. None of them imports the config
validators, the planner or the C shim: they read state.json and /proc."""
from ociruntime.lean import signal as _signal
from ociruntime.lean import posix
import sys
import time

from ociruntime import OCI_VERSION
from ociruntime import fastjson as json
from ociruntime.errors import NotFound, OciError, StateError
from ociruntime.log import log
from ociruntime.state import Store, FIFO, status_of, init_alive, spec_state, is_frozen, getenv

SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
           "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
           "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
           "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31}


def parse_signal(s):
    """A number 0..64, a name with or without SIG in any case, or RTMIN+n / RTMAX-n."""
    if s.isdigit() and s.isascii():
        n = int(s)
        if 0 <= n <= 64:
            return n
        raise OciError(f'unknown signal "{s}"')
    name = s.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name in SIGNALS:
        return SIGNALS[name]
    for base, rt, sign in (("RTMIN", 34, 1), ("RTMAX", 64, -1)):
        if name == base:
            return rt
        if name.startswith(base) and name[len(base):len(base) + 1] == ("+" if sign > 0 else "-") \
                and name[len(base) + 1:].isdigit():
            n = rt + sign * int(name[len(base) + 1:])
            if 34 <= n <= 64:
                return n
    raise OciError(f'unknown signal "{s}"')


def _open(root, cid, lock=True):
    c = Store(root).open(cid, lock=lock)
    st = c.read_state()
    if st is None:
        c.close()
        raise NotFound()
    return c, st


def state_json(st, status, indent=True, owner=None):
    out = {"ociVersion": OCI_VERSION, "id": st.get("id", ""), "pid": st["pid"] if status != "stopped" else 0,
           "status": status, "bundle": st.get("bundle", ""), "rootfs": st.get("rootfs", ""),
           "created": st.get("created", "")}
    if st.get("annotations"):
        out["annotations"] = dict(sorted(st["annotations"].items()))  # a Go map: sorted keys
    out["owner"] = owner if owner is not None else ""
    return out


def cmd_state(ctx):
    c, st = _open(ctx.root, ctx.args[0], lock=False)
    status = status_of(c, st)
    c.close()
    sys.stdout.buffer.write(json.go_dumps(state_json(st, status), indent=2).encode())
    return 0


def start(root, cid):
    c, st = _open(root, cid)
    try:
        status = status_of(c, st)
        if status == "stopped":
            raise StateError("cannot start a container that has stopped")
        if status == "running":
            raise StateError("cannot start an already running container")
        if status == "paused":
            raise StateError("cannot start a container in the paused state")
        notify = None
        notify_socket = getenv("NOTIFY_SOCKET")
        if st.get("notify_socket") and notify_socket:
            from ociruntime import notify as notifymod
            notify = notifymod.bind(c.path)
        try:
            fd = posix.open(FIFO, posix.O_WRONLY | posix.O_NONBLOCK | posix.O_CLOEXEC, dir_fd=c.fd)
        except OSError:
            # ENXIO: no reader left; the init died while waiting
            raise StateError("container process is already dead")
        from ociruntime.lean import trace as tr  # a no-op unless the CLI turned tracing on
        try:
            posix.write(fd, b"0")
        finally:
            posix.close(fd)
        if tr.active():
            t_go = time.monotonic_ns()
            tr.complete_open(st["pid"], t_go)  # the init's exec fifo wait ends here
        posix.unlink(FIFO, dir_fd=c.fd)
        with tr.step("wait for execve"):
            execed = _wait_exec(st)
        if tr.active():
            tr.add("startContainer hooks + execve", t_go, time.monotonic_ns() - t_go, "init", st["pid"],
                   {"pointer": "/process/args/0", "observed": "by start: /proc/<pid>/exe"})
        if not execed:
            # the init died between the fifo and execve: a startContainer hook (or the execve) failed;
            # its own message went to the container's stderr
            raise StateError("container init exited before running the process: a startContainer hook or "
                             "the process's execve failed (see the container's stderr)")
        if notify is not None:
            notifymod.forward_ready(notify, st["pid"], notify_socket)
        hooks = st.get("hooks") or {}
        if hooks.get("poststart"):
            from ociruntime import hooks as hookmod
            log.debug(f"start {cid}: poststart hooks")
            try:
                hookmod.run(hooks, "poststart", json.dumps(spec_state(st, "running")).encode(), cwd=st["bundle"])
            except OciError:
                try:
                    _signal_init(st, _signal.SIGKILL)
                except StateError:
                    pass  # the process is already gone: the hook's error is what to report
                raise
    finally:
        c.close()


def _wait_exec(st, timeout=5.0):
    """Return once the init has execve'd the user process (its exe is no longer our sealed memfd):
    poststart hooks must run after the process is executed, and a signal sent right after `start`
    must reach the user's program, not the init about to exec it. False when the init is a zombie that
    never got there (its name is still ours: startContainer hooks or the execve failed); True otherwise
    (also when it is already reaped: nothing left to tell)."""
    path = f"/proc/{st['pid']}/exe"
    deadline = time.monotonic() + timeout
    delay = 0.0001
    while time.monotonic() < deadline:
        try:
            if not posix.readlink(path).startswith("/memfd:ociruntime-init"):
                return True
        except OSError:
            return not _died_in_init(st)
        time.sleep(delay)
        delay = min(delay * 2, 0.005)
    return True


def _died_in_init(st, timeout=1.0):
    """The init is a zombie (same start time) still named by the C init: it exited before execve. Its
    exe link goes before it is a zombie (exit_mm): wait for the zombie state a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{st['pid']}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return False  # reaped already: nothing left to tell
        head, _, rest = data.rpartition(b")")
        fields = rest.split()
        comm = head.partition(b"(")[2]
        try:
            start = int(fields[19])
        except (IndexError, ValueError):
            return False
        if st.get("init_start") not in (None, start):
            return False
        if fields[0] in (b"Z", b"X"):
            return comm.startswith(b"ociruntime:")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)


def cmd_start(ctx):
    start(ctx.root, ctx.args[0])
    return 0


def _signal_init(st, sig):
    """Signal the init through a pidfd opened before re-checking the start time: a reused pid is
    never signalled."""
    pid = st["pid"]
    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        raise StateError("container not running")
    try:
        if not init_alive(st):
            raise StateError("container not running")
        _signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise StateError("container not running")
    finally:
        posix.close(pidfd)
    return pidfd


def _kill_cgroup(st, sig):
    """Signal every process in the container's cgroup (cgroup.kill for SIGKILL where the unified
    hierarchy has it, else freeze / signal each / thaw). False when the cgroup is gone."""
    from ociruntime import cgroups
    return cgroups.manager_of(st).kill_all(sig)


def cmd_kill(ctx):
    cid = ctx.args[0]
    sig = parse_signal(ctx.args[1]) if len(ctx.args) > 1 else _signal.SIGTERM
    c, st = _open(ctx.root, cid)
    try:
        status = status_of(c, st)
        log.debug(f"kill {cid}: signal {sig}, status {status}, all={bool(ctx.flag('all'))}")
        if ctx.flag("all"):
            # every process in the container's cgroup (runc <= 1.1 semantics, what containerd's
            # KillAll and podman expect); a stopped container's leftovers included, never an error
            if not _kill_cgroup(st, sig) and status != "stopped":
                try:
                    _signal_init(st, sig)
                except StateError:
                    pass
            return 0
        private_pidns = bool(st.get("new_ns", 0) & 0x20000000) or st.get("joined_pidns")
        if sig == _signal.SIGKILL and not private_pidns:
            # a shared pid namespace: the kernel kills nobody else when the init dies, so every
            # process of the cgroup goes, even once the init is gone (runc >= 1.2)
            if _kill_cgroup(st, sig):
                return 0
        if status == "stopped":
            raise StateError("container not running")
        _signal_init(st, sig)
        if sig == _signal.SIGKILL:
            if is_frozen(st):
                _thaw(st)  # v1: a SIGKILL does not act on a frozen task until it is thawed
    finally:
        c.close()
    return 0


def _wait_dead(st, timeout=10.0):
    deadline = time.monotonic() + timeout
    while init_alive(st):
        if time.monotonic() > deadline:
            raise OciError("container init still running")
        time.sleep(0.005)


def delete(root, cid, force=False):
    store = Store(root)
    try:
        c = store.open(cid)
    except NotFound:
        if force:
            return
        raise
    try:
        st = c.read_state()
        if st is None:
            # a crashed create: the dir without state.json goes, as in runc, with what the create
            # recorded before it died (its init, its cgroups)
            cr = c.read_creating()
            if cr is not None:
                if init_alive(cr):
                    try:
                        _signal_init(cr, _signal.SIGKILL)
                        _wait_dead(cr)
                    except StateError:
                        pass
                from ociruntime import cgroups
                _kill_cgroup(cr, _signal.SIGKILL)
                cgroups.manager_of(cr).rollback()
            c.remove()
            if force:
                return
            raise NotFound()
        status = status_of(c, st)
        log.debug(f"delete {cid}: status {status}, force={force}")
        if status in ("running", "paused") and not force:
            raise StateError(f"cannot delete container {cid} that is not stopped: {status}")
        if status != "stopped":
            if status == "paused":
                _thaw(st)
            try:
                _signal_init(st, _signal.SIGKILL)
            except StateError:
                pass
            _wait_dead(st)
        private_pidns = bool(st.get("new_ns", 0) & 0x20000000)
        if force or not private_pidns:
            # leftover processes (shared pid namespace, or anything else still in the cgroup)
            _kill_cgroup(st, _signal.SIGKILL)
        from ociruntime.cgremove import destroy_state  # not the cgroups package (start-up cost)
        log.debug(f"delete {cid}: removing cgroups {st.get('cgroup_made') or []}")
        busy = destroy_state(st)
        if st.get("host_mounts") and st.get("rootfs"):
            _unmount_below(st["rootfs"])
        c.remove()  # also when a cgroup stays busy: the container is gone, its state must not linger
        if busy:
            for d, why in busy:
                log.warning(f"container {cid} deleted, but its cgroup {d} stays: {why}")
        hooks = st.get("hooks") or {}
        if hooks.get("poststop"):
            from ociruntime import hooks as hookmod
            try:
                hookmod.run(hooks, "poststop", json.dumps(spec_state(st, "stopped")).encode(), cwd=st["bundle"])
            except OciError as e:
                log.warning(str(e))
    finally:
        c.close()


def _unmount_below(rootfs):
    """Unmount (lazily, deepest first) every mount at or below rootfs in our mount namespace: what a
    container without its own mount namespace mounted there."""
    def unescape(p):
        return p.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
    with open("/proc/self/mountinfo") as f:
        points = [unescape(line.split()[4]) for line in f]
    import os
    root = os.path.realpath(rootfs)
    mine = [p for p in points if p == root or p.startswith(root + "/")]
    if not mine:
        return
    from ociruntime._shim import lib
    for p in sorted(set(mine), key=len, reverse=True):
        lib.oci_umount(p.encode(), 2)  # MNT_DETACH


def _thaw(st):
    for key, path in (st.get("cgroup_paths") or {}).items():
        for name, val in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            p = f"{path}/{name}"  # cgroup paths are normalized (state._well_formed)
            try:
                posix.stat(p)
            except (OSError, ValueError):
                continue
            try:
                with open(p, "w") as f:
                    f.write(val)
            except OSError:
                pass


def cmd_delete(ctx):
    delete(ctx.root, ctx.args[0], force=ctx.flag("force"))
    return 0


def _owner(uid):
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return f"#{uid}"


def cmd_list(ctx):
    fmt = ctx.flag("format", "table")
    quiet = ctx.flag("quiet")
    if fmt not in ("table", "json") and not quiet:
        raise OciError("invalid format option")
    store = Store(ctx.root)
    rows = []
    for cid in store.ids():
        try:
            c = store.open(cid, lock=False)
        except NotFound:
            continue
        st = c.read_state()
        if st is None:
            c.close()
            sys.stderr.write(f"load container {cid}: container does not exist\n")  # runc: report, go on
            continue
        status = status_of(c, st)
        uid = posix.fstat(c.fd).st_uid
        c.close()
        rows.append(state_json(st, status, owner=_owner(uid)))
    if quiet:
        sys.stdout.write("".join(r["id"] + "\n" for r in rows))
    elif fmt == "json":
        sys.stdout.buffer.write((json.go_dumps(rows or None) + "\n").encode())
    else:
        table = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        for r in rows:
            table.append([r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"]])
        widths = [max(12, max(len(row[i]) for row in table) + 3) for i in range(5)]
        out = []
        for row in table:
            out.append("".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + row[5])
        sys.stdout.write("\n".join(out) + "\n")
    return 0
