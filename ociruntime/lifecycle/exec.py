"""exec: run a new process in a running (or created) container through the same C path as create:
the init binary joins every namespace of the container (user first), enters its cgroup, applies the
process's user, caps, rlimits, NNP and cwd, and execs. Python never joins a namespace."""
from ociruntime.lean import signal
import os
from ociruntime.lean import struct

from ociruntime import plan as planmod
from ociruntime.errors import ConfigError, OciError, SpawnError
from ociruntime.log import log
from ociruntime.lifecycle.control import _open
from ociruntime.state import status_of

NS_FILES = [("user", planmod.CLONE_NEWUSER), ("ipc", planmod.CLONE_NEWIPC), ("uts", planmod.CLONE_NEWUTS),
            ("net", planmod.CLONE_NEWNET), ("pid", planmod.CLONE_NEWPID), ("mnt", planmod.CLONE_NEWNS),
            ("cgroup", planmod.CLONE_NEWCGROUP), ("time", planmod.CLONE_NEWTIME)]


def parse_user(s):
    """uid[:gid], numeric only, in range (CVE-2016-3697, CVE-2026-30892)."""
    parts = s.split(":")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise OciError(f"invalid --user {s!r}: want uid[:gid] with numeric ids")
    ids = [int(p) for p in parts]
    if any(i > 0xFFFFFFFE for i in ids):
        raise OciError(f"invalid --user {s!r}: id out of range")
    return ids[0], (ids[1] if len(ids) > 1 else None)


def namespace_joins(pid):
    """The container init's namespaces that differ from ours, as (flag, /proc/<pid>/ns/<x>) paths.
    Fails closed: a namespace this kernel has that cannot be read for the init (it died meanwhile, or
    the pid is not its own any more) is an error, never skipped (that would run the process in the
    runtime's namespace of that kind, as runc refuses too)."""
    joins = []
    for name, flag in NS_FILES:
        try:
            ours = os.stat(f"/proc/self/ns/{name}")
        except FileNotFoundError:
            continue  # this kernel has no such namespace (time before 5.6, cgroup before 4.6)
        path = f"/proc/{pid}/ns/{name}"
        try:
            theirs = os.stat(path)
        except OSError as e:
            raise OciError(f"namespace path: lstat {path}: {e.strerror.lower()}") from None
        if (ours.st_ino, ours.st_dev) != (theirs.st_ino, theirs.st_dev):
            joins.append((flag, path))
    return joins


def take_target(st):
    """The container's init, taken once: a pidfd, then the start-time check (a reused pid fails it).
    Everything about the init is read while the pidfd shows it alive, and the C init joins through it."""
    from ociruntime.state import init_alive
    try:
        pidfd = os.pidfd_open(st["pid"])
    except ProcessLookupError:
        raise OciError("cannot exec in a stopped container") from None
    if not init_alive(st):
        os.close(pidfd)
        raise OciError("cannot exec in a stopped container")
    return pidfd


def target_alive(pidfd):
    import select
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return not p.poll(0)


def target_root(pid, pidfd, joins):
    """Without a mount namespace of its own the container's processes are confined by a chroot, as its
    init: the init's root as an O_PATH fd, opened while the pidfd shows the init alive. None when the
    container has a mount namespace (joining it gives its root)."""
    if any(flag == planmod.CLONE_NEWNS for flag, _ in joins):
        return None
    fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if not target_alive(pidfd):
        os.close(fd)
        raise OciError("cannot exec in a stopped container")
    return fd


def build_process(ctx, st):
    from ociruntime import config as cfgmod, validate
    pfile = ctx.flag("process")
    if pfile:
        from ociruntime import schema  # only a process.json is schema-checked (start-up cost otherwise)
        proc = cfgmod.load_process(pfile)
        validate.runc_leniency(proc, where="")
        schema.validate_process(proc)
        validate.check_process(proc)
        return proc
    cfg = cfgmod.load(os.path.join(st["bundle"], "config.json"))
    proc = dict(cfg.get("process") or {})
    args = ctx.args[1:]
    if not args:
        raise OciError("exec args cannot be empty")
    proc["args"] = args
    proc["terminal"] = bool(ctx.flag("tty"))
    if ctx.flag("env"):
        proc["env"] = list(proc.get("env") or []) + ctx.flag("env")
    if ctx.flag("cwd"):
        proc["cwd"] = ctx.flag("cwd")
    user = dict(proc.get("user") or {})
    user.setdefault("uid", 0)  # Go's zero values, as runc (create has warned about it already)
    user.setdefault("gid", 0)
    if ctx.flag("user"):
        uid, gid = parse_user(ctx.flag("user"))
        user["uid"] = uid
        if gid is not None:
            user["gid"] = gid
    for g in ctx.flag("additional-gids") or ():
        try:
            gid = int(g, 0)
        except ValueError:
            gid = -1
        if gid < 0:
            raise OciError("additional-gids must be a positive number")
        user.setdefault("additionalGids", []).append(gid)
    proc["user"] = user
    if ctx.flag("no-new-privs"):
        proc["noNewPrivileges"] = True
    caps = ctx.flag("cap") or ()
    if caps:
        c = {k: list(v) for k, v in (proc.get("capabilities") or {}).items()}
        for cap in caps:
            for k in ("bounding", "effective", "permitted"):
                if cap not in c.setdefault(k, []):
                    c[k].append(cap)
            if cap in c.get("inheritable", []) and cap not in c.setdefault("ambient", []):
                c["ambient"].append(cap)  # never inheritable (CVE-2022-29162)
        proc["capabilities"] = c
    if ctx.flag("apparmor"):
        proc["apparmorProfile"] = ctx.flag("apparmor")
    if ctx.flag("process-label"):
        proc["selinuxLabel"] = ctx.flag("process-label")
    validate.check_process(proc)
    return proc


def exec_cgroup_paths(paths, specs):
    """--cgroup [CTRL[,CTRL]:]PATH (repeatable): run in an existing sub-cgroup of the container's. As
    runc (path.Join): PATH is below the container's cgroup even when it starts with "/", so "/" (or "")
    is the container's own cgroup; a PATH that climbs out of it is refused."""
    out = dict(paths)
    for spec in specs:
        ctrls, sep, sub = spec.rpartition(":")
        if sep and not ctrls:
            raise OciError(f"invalid --cgroup argument: {spec} (empty <controller> prefix)")
        wanted = set(ctrls.split(",")) if sep else None
        matched = False
        for key, path in paths.items():
            names = {"unified"} if key == "" else set(key.split(","))
            if wanted is None or names & wanted:
                joined = os.path.normpath(os.path.join(path, sub.lstrip("/")))
                if joined != path and not joined.startswith(path.rstrip("/") + "/"):
                    raise OciError(f"bad sub cgroup path: {sub}")
                out[key] = joined
                matched = True
                if not os.path.isdir(out[key]):
                    raise OciError(f"--cgroup {spec!r}: {out[key]} does not exist")
        if not matched:
            raise OciError(f"--cgroup {spec!r}: the container has no such controller")
    return out


def _setgroups_allowed(pid, joins, additional_gids):
    """Whether the exec'd process may call setgroups (runc setupUser: not when rootless, nor in a
    user namespace whose setgroups is "deny"). A rootless exec asking for extra groups fails, as runc."""
    if os.geteuid() != 0:
        if additional_gids:
            raise OciError("cannot set any additional groups in a rootless container")
        return False
    if any(flag == planmod.CLONE_NEWUSER for flag, _ in joins):
        try:
            with open(f"/proc/{pid}/setgroups") as f:
                return f.read().strip() != "deny"
        except OSError:
            pass
    return True


def spawn_with_affinity(spawn, data, slots, base, initial, where):
    """execCPUAffinity.initial: the runtime's thread that starts the process runs on those CPUs, so the
    process has them from its first instruction until it joins the container's cgroup (config.md); the
    thread's own affinity is restored afterwards."""
    if not initial:
        return spawn(data, slots, base)
    saved = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, initial)
    except OSError as e:
        raise ConfigError(where[1], f"cannot run on CPUs {_cpu_text(initial)}: {e.strerror} (this process may "
                          f"use CPUs {_cpu_text(sorted(saved))})", source=where[0]) from None
    try:
        return spawn(data, slots, base)
    finally:
        try:
            os.sched_setaffinity(0, saved)
        except OSError:
            pass  # a CPU went away meanwhile: this short-lived process keeps the initial list


def _cpu_text(ids):
    out, start = [], None
    for i, n in enumerate(ids):
        if start is None:
            start = n
        if i + 1 == len(ids) or ids[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(out)


def cmd_exec(ctx):
    try:
        return _exec(ctx)
    except OciError as e:
        e.args = (f"exec failed: {e}",)
        e.exit_code = 255
        raise


def _exec(ctx):
    from ociruntime import cgroups
    cgroups.prewarm_attach()  # see there: hides the grace period of the cgroup.procs write below
    from ociruntime.lifecycle.create import connect_console
    c, st = _open(ctx.root, ctx.args[0], lock=False)
    status = status_of(c, st)
    c.close()
    if status == "stopped":
        raise OciError("cannot exec in a stopped container")
    if status == "paused" and not ctx.flag("ignore-paused"):
        raise OciError("cannot exec in a paused container (use --ignore-paused to override)")
    pid_file = ctx.flag("pid-file")
    if pid_file:
        pid_file = os.path.abspath(pid_file)
    detach = ctx.flag("detach")
    proc = build_process(ctx, st)
    console = ctx.flag("console-socket")
    if proc.get("terminal") and detach and not console:
        raise OciError("cannot allocate tty if runc will detach without setting console socket")
    if console and not (proc.get("terminal") and detach):
        raise OciError("cannot use console socket if runc will not detach or allocate tty")
    npreserve = ctx.flag("preserve-fds", 0)
    for i in range(npreserve):
        try:
            os.fstat(3 + i)
        except OSError as e:
            raise OciError(f"unable to stat preserved-fd {i} (of {npreserve}): {e.strerror}")
    base = 3 + npreserve
    fds = {"sync": base, "close_from": base}
    own_console = None
    console_fd = None
    if proc.get("terminal"):
        fds["console"] = base + 2
        if console:
            console_fd = connect_console(console)
        else:
            from ociruntime import console as conmod
            own_console, theirs = conmod.socketpair()
            console_fd = theirs.detach()
    seccomp = st.get("seccomp")
    target = take_target(st)
    try:
        return _exec_in(ctx, st, proc, fds, base, console_fd, own_console, detach, pid_file, seccomp, target)
    finally:
        os.close(target)


def _exec_in(ctx, st, proc, fds, base, console_fd, own_console, detach, pid_file, seccomp, target):
    from ociruntime.lifecycle.create import spawn, write_pid_file, recv_msg, forward_seccomp_fd
    from ociruntime.lean import socket as _socket
    joins = namespace_joins(st["pid"])
    rootfd = target_root(st["pid"], target, joins)
    if not target_alive(target):
        raise OciError("cannot exec in a stopped container")
    setgroups = _setgroups_allowed(st["pid"], joins, (proc.get("user") or {}).get("additionalGids"))
    # as runc: the container's scheduler and I/O priority unless the process sets its own
    for key, skey in (("scheduler", "scheduler"), ("ioPriority", "io_priority")):
        if not proc.get(key) and st.get(skey):
            proc = dict(proc, **{key: st[skey]})
    # the process's own execCPUAffinity, else the container's (runc); validated already
    aff = proc.get("execCPUAffinity") or st.get("exec_cpu_affinity")
    initial, final = planmod.exec_cpu_affinity(aff)
    where = ("process.json", "/execCPUAffinity/initial") if ctx.flag("process") and proc.get("execCPUAffinity") \
        else ("config.json", "/process/execCPUAffinity/initial")
    linux = {"personality": st.get("personality"), "memoryPolicy": st.get("memory_policy")}
    from ociruntime.lean import trace
    sock, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    slots = [child.fileno(), None] + ([console_fd] if console_fd is not None else [])
    slots.append(target)
    fds["target"] = (base + len(slots) - 1, -1)
    if rootfd is not None:
        slots.append(rootfd)
        fds["target"] = (fds["target"][0], base + len(slots) - 1)
    try:
        with trace.step("plan"):
            data = planmod.build_exec(proc, fds, joins, seccomp, linux, (initial, final), labels=st.get("lsm"),
                                      setgroups=setgroups, relay_tty=own_console is not None,
                                      trace=trace.active())
        with trace.step("spawn init"):
            pid, pidfd = spawn_with_affinity(spawn, data, slots, base, initial, where)
        trace.name_process(pid, "exec stage-1 (setup)")
    except BaseException:
        sock.close()
        raise
    finally:
        child.close()
        if rootfd is not None:
            os.close(rootfd)
    if console_fd is not None:
        os.close(console_fd)
    stage1, exec_pid = pid, None
    try:
        from ociruntime import cgroups
        # rootless: a hierarchy we may not join is skipped, as runc ignores join errors there
        with trace.step("cgroups: attach"):
            cgroups.apply(exec_cgroup_paths(st.get("cgroup_paths") or {}, ctx.flag("cgroup") or ()), stage1,
                          rootless=bool(st.get("rootless")))
        sync_step = trace.step("sync: the exec init sets up")
        sync_step.__enter__()
        sock.send(struct.pack("=Ii", planmod.SYNC_GO, 0))
        while True:
            typ, val, payload, rfds = recv_msg(sock)
            if typ == planmod.SYNC_TRACE:
                trace.init_records(payload, exec_pid or stage1)
                continue
            if typ is None:
                if exec_pid is None:
                    raise SpawnError("exec setup exited unexpectedly")
                break  # EOF after READY: the sync socket was closed by a successful execve
            if typ == planmod.SYNC_SECCOMP_FD and rfds:
                forward_seccomp_fd(sock, rfds[0], seccomp, st, status="running", process_pid=exec_pid)
                continue
            if typ == planmod.SYNC_ERROR:
                msg = payload.partition(b"\0")[0]  # after a NUL: the init's step (csrc/init/trace.c)
                raise SpawnError("unable to start container process: " + msg.decode(errors="replace"))
            if typ == planmod.SYNC_WARNING:
                log.warning(payload.decode(errors="replace"))
            elif typ == planmod.SYNC_PID:
                exec_pid = val
                trace.name_process(val, "exec'd process")
                os.waitpid(stage1, 0)
                stage1 = None
            elif typ != planmod.SYNC_READY:
                raise SpawnError(f"unexpected message 0x{typ:x} from the exec init")
        sync_step.__exit__(None, None, None)
    except BaseException:
        for p in (exec_pid, stage1):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                    os.waitpid(p, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        raise
    finally:
        sock.close()
        os.close(pidfd)
    if ctx.flag("pidfd-socket"):
        from ociruntime.lifecycle.create import send_pidfd
        send_pidfd(ctx.flag("pidfd-socket"), exec_pid, b"setns")
    if pid_file:
        try:
            write_pid_file(pid_file, exec_pid)
        except OSError as e:
            # runc terminates the process it started when the pid file cannot be written
            try:
                os.kill(exec_pid, signal.SIGKILL)
                os.waitpid(exec_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            raise OciError(f"write pid file {pid_file}: {e.strerror}")
    if detach:
        return 0
    if own_console is not None:
        from ociruntime import console as conmod
        master = conmod.recv_master(own_console)
        own_console.close()
        return conmod.relay(master, exec_pid)
    with trace.step("wait for exit"):
        return wait_forwarding(exec_pid)


def wait_forwarding(pid):
    """Foreground: forward signals to pid, return its exit code (128+signal when killed)."""
    from ociruntime.lifecycle.create import forward_signals
    forward_signals(pid)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
