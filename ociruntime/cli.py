"""runc's command line: Go `flag` syntax (-flag == --flag, =value or separate value), urfave/cli v1
argument reordering (flags may follow the container id, except for exec and ps), runc's messages and
exit codes. Each command's module is imported only when that command runs (start-up time matters).
"""
from ociruntime.lean import posix
import sys

from ociruntime import __version__, OCI_VERSION

B, S, I, L = "bool", "str", "int", "list"  # flag kinds

GLOBAL_FLAGS = {
    "root": (S, None), "log": (S, ""), "log-format": (S, "text"), "debug": (B, False), "trace": (S, ""),
    "systemd-cgroup": (B, False), "rootless": (S, "auto"), "criu": (S, ""),
    "help": (B, False), "h": (B, False), "version": (B, False), "v": (B, False),
}

_CREATE_FLAGS = {
    "bundle": (S, ""), "b": (S, ""), "console-socket": (S, ""), "pidfd-socket": (S, ""),
    "pid-file": (S, ""), "no-pivot": (B, False), "no-new-keyring": (B, False), "preserve-fds": (I, 0),
}

# name: (module, function, flags, (min args, max args), skip_reorder, usage line, description)
COMMANDS = {
    "create": ("lifecycle.create", "cmd_create", _CREATE_FLAGS, (1, 1), False,
               "create [command options] <container-id>", "create a container"),
    "run": ("lifecycle.create", "cmd_run",
            {**_CREATE_FLAGS, "detach": (B, False), "d": (B, False), "keep": (B, False),
             "no-subreaper": (B, False)}, (1, 1), False,
            "run [command options] <container-id>", "create and run a container"),
    "exec": ("lifecycle.exec", "cmd_exec",
             {"console-socket": (S, ""), "pidfd-socket": (S, ""), "cwd": (S, ""), "env": (L, None), "e": (L, None),
              "tty": (B, False), "t": (B, False), "user": (S, ""), "u": (S, ""), "additional-gids": (L, None),
              "g": (L, None), "process": (S, ""), "p": (S, ""), "detach": (B, False), "d": (B, False),
              "pid-file": (S, ""), "process-label": (S, ""), "apparmor": (S, ""), "no-new-privs": (B, False),
              "cap": (L, None), "c": (L, None), "preserve-fds": (I, 0), "cgroup": (L, None),
              "ignore-paused": (B, False)}, (1, None), True,
             "exec [command options] <container-id> <command> [command options]",
             "execute new process inside the container"),
    "start": ("lifecycle.control", "cmd_start", {}, (1, 1), False, "start <container-id>",
              "executes the user defined process in a created container"),
    "state": ("lifecycle.control", "cmd_state", {}, (1, 1), False, "state <container-id>",
              "output the state of a container"),
    "kill": ("lifecycle.control", "cmd_kill", {"all": (B, False), "a": (B, False)}, (1, 2), False,
             "kill [command options] <container-id> [signal]",
             "kill sends the specified signal (default: SIGTERM) to the container's init process"),
    "delete": ("lifecycle.control", "cmd_delete", {"force": (B, False), "f": (B, False)}, (1, 1), False,
               "delete [command options] <container-id>",
               "delete any resources held by the container often used with detached container"),
    "list": ("lifecycle.control", "cmd_list", {"format": (S, "table"), "f": (S, "table"), "quiet": (B, False),
                                       "q": (B, False)}, (0, 0), False,
             "list [command options]", "lists containers started by ociruntime with the given root"),
    "spec": ("misc", "cmd_spec", {"bundle": (S, ""), "b": (S, ""), "rootless": (B, False)}, (0, 0), False,
             "spec [command options]", "create a new specification file"),
    "check": ("check", "cmd_check", {"bundle": (S, ""), "b": (S, ""), "strict": (B, False), "format": (S, "text"),
                                     "plan": (B, False)}, (0, 0), False,
              "check [command options]",
              "report every problem of a bundle before running it (schema, host, security); runs nothing"),
    "features": ("misc", "cmd_features", {}, (0, 0), False, "features",
                 "show the enabled features"),
    "pause": ("lifecycle.cgroupcmds", "cmd_pause", {}, (1, 1), False, "pause <container-id>",
              "pause suspends all processes inside the container"),
    "resume": ("lifecycle.cgroupcmds", "cmd_resume", {}, (1, 1), False, "resume <container-id>",
               "resumes all processes that have been previously paused"),
    "ps": ("lifecycle.cgroupcmds", "cmd_ps", {"format": (S, "table"), "f": (S, "table")}, (1, None), True,
           "ps [command options] <container-id> [ps options]",
           "ps displays the processes running inside a container"),
    "update": ("lifecycle.cgroupcmds", "cmd_update",
               {"resources": (S, ""), "r": (S, ""), "blkio-weight": (I, 0), "cpu-period": (S, ""),
                "cpu-quota": (S, ""), "cpu-burst": (S, ""), "cpu-share": (S, ""), "cpu-rt-period": (S, ""),
                "cpu-rt-runtime": (S, ""), "cpuset-cpus": (S, ""), "cpuset-mems": (S, ""),
                "kernel-memory": (S, ""), "kernel-memory-tcp": (S, ""), "memory": (S, ""),
                "cpu-idle": (S, ""), "memory-reservation": (S, ""), "memory-swap": (S, ""),
                "pids-limit": (I, 0), "l3-cache-schema": (S, ""), "mem-bw-schema": (S, "")}, (1, 1), False,
               "update [command options] <container-id>", "update container resource constraints"),
    "events": ("lifecycle.cgroupcmds", "cmd_events", {"interval": (S, "5s"), "stats": (B, False)}, (1, 1), False,
               "events [command options] <container-id>",
               "display container events such as OOM notifications, cpu, memory, and IO usage statistics"),
}
_CRIU_FLAGS = {
    "image-path": (S, ""), "work-path": (S, ""), "tcp-established": (B, False), "ext-unix-sk": (B, False),
    "shell-job": (B, False), "file-locks": (B, False), "manage-cgroups-mode": (S, ""), "empty-ns": (L, None),
    "auto-dedup": (B, False), "lazy-pages": (B, False),
}
COMMANDS["checkpoint"] = (
    "lifecycle.checkpoint", "cmd_checkpoint",
    {**_CRIU_FLAGS, "parent-path": (S, ""), "leave-running": (B, False), "page-server": (S, ""),
     "status-fd": (I, -1), "pre-dump": (B, False)}, (1, 1), False,
    "checkpoint [command options] <container-id>", "checkpoint a running container")
COMMANDS["restore"] = (
    "lifecycle.checkpoint", "cmd_restore",
    {**_CRIU_FLAGS, "console-socket": (S, ""), "bundle": (S, ""), "b": (S, ""), "detach": (B, False),
     "d": (B, False), "pid-file": (S, ""), "no-subreaper": (B, False), "no-pivot": (B, False),
     "lsm-profile": (S, ""), "lsm-mount-context": (S, "")}, (1, 1), False,
    "restore [command options] <container-id>", "restore a container from a previous checkpoint")
ALIASES = {"b": "bundle", "d": "detach", "f": "force", "a": "all", "q": "quiet", "h": "help", "v": "version",
           "e": "env", "t": "tty", "u": "user", "g": "additional-gids", "p": "process", "c": "cap"}
LIST_ALIASES = {"f": "format"}  # `list -f` is --format, not --force


class FlagError(Exception):
    pass


def _parse_int(s, name="?"):
    """Go's strconv.ParseInt(s, 0, 64): 0x.., 0o.., 0b.. and a leading 0 for octal."""
    t = s[1:] if s[:1] in "+-" else s
    try:
        if len(t) > 1 and t[0] == "0" and t.isdigit() and t.isascii():
            v = int(t, 8)
            return -v if s[0] == "-" else v
        if not s.isascii():
            raise ValueError
        return int(s, 0)
    except ValueError:
        raise FlagError(f'invalid value "{s}" for flag -{name}: parse error')


def parse_flags(args, spec, reorder, aliases=ALIASES):
    """Returns (values, positionals). Go flag rules; urfave reordering unless reorder is False."""
    vals = {}
    pos = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            pos.extend(args[i:])
            break
        if len(a) < 2 or a[0] != "-":
            pos.append(a)
            if not reorder:
                pos.extend(args[i:])
                break
            continue
        name = a[2:] if a.startswith("--") else a[1:]
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name not in spec:
            raise FlagError(f"flag provided but not defined: -{name}")
        kind = spec[name][0]
        canon = aliases.get(name, name) if name not in ("h",) else "help"
        if kind == B:
            if value is None:
                v = True
            elif value.lower() in ("1", "t", "true"):
                v = True
            elif value.lower() in ("0", "f", "false"):
                v = False
            else:
                raise FlagError(f'invalid boolean value "{value}" for -{name}')
        else:
            if value is None:
                if i >= len(args):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = args[i]
                i += 1
            v = _parse_int(value, name) if kind == I else value
        if kind == L:
            vals.setdefault(canon, []).append(v)
        else:
            vals[canon] = v
    return vals, pos


def _usage(cmd=None):
    if cmd is None:
        lines = [
            "NAME:", "   ociruntime - Open Container Initiative runtime (runc-compatible)", "",
            "USAGE:", "   ociruntime [global options] command [command options] [arguments...]", "",
            f"VERSION:", f"   {__version__}", f"spec: {OCI_VERSION}", "",
            "COMMANDS:",
        ]
        for name, c in COMMANDS.items():
            lines.append(f"   {name:<10} {c[6]}")
        lines += [
            "", "GLOBAL OPTIONS:",
            "   --root value        root directory for storage of container state (default: \"/run/ociruntime\",",
            "                       or \"$XDG_RUNTIME_DIR/ociruntime\" when run as a non-root user)",
            "   --log value         set the log file to write ociruntime logs to (default is stderr)",
            "   --log-format value  set the log format ('text' (default), or 'json') (default: \"text\")",
            "   --debug             enable debug logging (with the runtime's and the init's steps)",
            "   --trace value       write a step timeline (Chrome Trace Event Format: Perfetto,",
            "                       chrome://tracing) to this file; also $OCIRUNTIME_TRACE",
            "   --systemd-cgroup    enable systemd cgroup support (cgroupsPath as slice:prefix:name)",
            "   --criu value        path to the criu binary used for checkpoint and restore (default: \"criu\" on $PATH)",
            "   --rootless value    ignore cgroup permission errors ('true', 'false', or 'auto': true when",
            "                       run as a non-root user or inside a user namespace) (default: \"auto\")",
            "   --help, -h          show help",
            "   --version, -v       print the version",
        ]
        return "\n".join(lines) + "\n"
    c = COMMANDS[cmd]
    lines = ["NAME:", f"   ociruntime {cmd} - {c[6]}", "", "USAGE:", f"   ociruntime {c[5]}", ""]
    if c[2]:
        lines.append("OPTIONS:")
        for name, (kind, default) in c[2].items():
            if len(name) == 1:
                continue
            arg = "" if kind == B else " value"
            lines.append(f"   --{name}{arg}")
    return "\n".join(lines) + "\n"


class Context:
    def __init__(self, gflags, flags, args, argv0):
        self.g = gflags
        self.flags = flags
        self.args = args
        self.argv0 = argv0

    def flag(self, name, default=None):
        return self.flags.get(name, default)

    @property
    def root(self):
        from ociruntime.state import default_root
        return self.g.get("root") or default_root()


def _commit_line():
    """`commit: <git describe>` as runc prints it (Docker and go-runc read it), when the build
    recorded one (ociruntime.launcher.write_commit)."""
    try:
        with open(__file__.rpartition("/")[0] + "/libexec/commit") as f:
            commit = f.read().strip()
    except OSError:
        return ""
    return f"commit: {commit}\n" if commit else ""


def main(argv=None, t0=None):
    """t0: time.monotonic_ns() at the launcher's first line (the trace's "python start-up" step)."""
    argv = list(sys.argv if argv is None else argv)
    from ociruntime.log import log
    argv0 = argv[0].rpartition("/")[2] if argv else "ociruntime"
    try:
        g, rest = parse_flags(argv[1:], GLOBAL_FLAGS, reorder=False)
    except FlagError as e:
        sys.stdout.write(f"Incorrect Usage. {e}\n\n" + _usage())
        log.error(str(e))
        return 1
    try:
        log.configure(g.get("log") or None, g.get("log-format", "text"), g.get("debug", False))
    except ValueError as e:
        log.error(str(e))
        return 1
    except OSError as e:
        sys.stderr.write(f"open {g.get('log')}: {e.strerror}\n")
        return 1
    if g.get("version"):
        sys.stdout.write(f"ociruntime version {__version__}\n{_commit_line()}spec: {OCI_VERSION}\n")
        return 0
    if g.get("help") or not rest or rest[0] == "help":
        if rest and rest[0] == "help" and len(rest) > 1:
            if rest[1] not in COMMANDS:
                log.error(f"No help topic for '{rest[1]}'")
                return 3
            sys.stdout.write(_usage(rest[1]))
            return 0
        sys.stdout.write(_usage())
        return 0
    cmd, cargs = rest[0], rest[1:]
    if cmd not in COMMANDS:
        log.error(f"No help topic for '{cmd}'")
        return 3
    modname, fn, spec, (amin, amax), skip_reorder, _, _ = COMMANDS[cmd]
    spec = {**spec, "help": (B, False), "h": (B, False)}
    try:
        flags, pos = parse_flags(cargs, spec, reorder=not skip_reorder,
                                 aliases=({**ALIASES, **LIST_ALIASES} if cmd == "list" else ALIASES))
    except FlagError as e:
        sys.stdout.write(f"Incorrect Usage: {e}\n\n" + _usage(cmd))
        log.error(str(e))
        return 1
    if flags.get("help"):
        sys.stdout.write(_usage(cmd))
        return 0
    if len(pos) < amin or (amax is not None and len(pos) > amax):
        sys.stdout.write("Incorrect Usage.\n\n" + _usage(cmd))
        if amin == amax:
            what = f"exactly {amin}"
        elif len(pos) < amin:
            what = f"a minimum of {amin}"
        else:
            what = f"a maximum of {amax}"
        log.error(f'{argv0}: "{cmd}" requires {what} argument(s)')
        return 1
    # __import__, not importlib.import_module: `importlib` (and the `warnings` it pulls in) is ≈0.6 ms of
    # start-up on every command; fromlist makes it return the submodule itself
    if g.get("trace") or g.get("debug") or b"OCIRUNTIME_TRACE" in posix.environ:
        return _traced(g, cmd, modname, fn, flags, pos, argv0, t0)
    mod = __import__(f"ociruntime.{modname}", fromlist=(fn,))
    return _run(mod, fn, Context(g, flags, pos, argv0), cmd, g)


def _traced(g, cmd, modname, fn, flags, pos, argv0, t0):
    """--trace FILE / $OCIRUNTIME_TRACE / --debug: the command as steps (ociruntime/trace.py)."""
    import time
    from ociruntime import trace
    trace.configure(g.get("trace") or None, g.get("debug", False))
    if not trace.active():
        mod = __import__(f"ociruntime.{modname}", fromlist=(fn,))
        return _run(mod, fn, Context(g, flags, pos, argv0), cmd, g)
    pid = posix.getpid()
    trace.name_process(pid, f"ociruntime {cmd}")
    t_main = time.monotonic_ns()
    if t0:
        trace.add("python start-up, imports, flags", t0, t_main - t0, "runtime", pid)
    t_root = t0 or t_main
    try:
        with trace.step("import " + modname):
            mod = __import__(f"ociruntime.{modname}", fromlist=(fn,))
        with trace.step(cmd) as s:
            rc = _run(mod, fn, Context(g, flags, pos, argv0), cmd, g)
            s.arg(exit_status=rc)
        return rc
    finally:
        trace.add(f"ociruntime {cmd}", t_root, time.monotonic_ns() - t_root, "runtime", pid, {"root": True})
        try:
            trace.flush()
        except OSError as e:
            from ociruntime.log import log
            log.warning(f"--trace {trace.path}: {e.strerror}")


def _run(mod, fn, ctx, cmd, g):
    from ociruntime.errors import OciError
    from ociruntime.log import log
    if g.get("debug"):
        log.debug(f"{cmd}: flags {ctx.flags} args {ctx.args}")
    try:
        return getattr(mod, fn)(ctx) or 0
    except OciError as e:
        log.error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        # an unexpected system error still gets one line (and a traceback with --debug)
        if g.get("debug"):
            import traceback
            log.debug(traceback.format_exc())
        log.error(f"{cmd}: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return 1


GC_THRESHOLD = 20000


def run_and_exit(argv=None, t0=None):
    """The launcher's entry: main(), then _exit without the interpreter's finalization (module
    teardown and a last GC cost several ms on every call; nothing of ours needs it: the log writes
    unbuffered, state files are closed, stdio is flushed here)."""
    # Young-generation collections every 20000 (not 700) net allocations: a command then rarely
    # collects at all (create: ≈1.5 ms less CPU; a collection after the init is cloned also writes
    # to every copy-on-write page the GC headers sit on). Still bounded for the long-running ones.
    import gc
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    try:
        rc = main(argv) if t0 is None else main(argv, t0)
    except SystemExit as e:
        rc = e.code
    if rc is None:
        rc = 0
    elif not isinstance(rc, int):
        sys.stderr.write(f"{rc}\n")
        rc = 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    posix._exit(rc & 0xff)


if __name__ == "__main__":
    sys.exit(main())
