"""Step trace of every lifecycle call: `--trace FILE` (or $OCIRUNTIME_TRACE=FILE, for clients that cannot
pass flags: containerd, podman) writes a Chrome Trace Event Format timeline (Perfetto, chrome://tracing);
`--debug` logs the same steps as log lines.

* Python steps: complete events (``ph: "X"``, microseconds) with ``cat: "runtime"``, one track per
  runtime process (``step("load")`` … as a context manager; a step that raises records the error);
* the C init's steps (csrc/init/trace.c) arrive over the sync socket (SYNC_TRACE, only when the plan
  has OP_TRACE) as ``cat: "init"`` events on the tracks of stage-1 and of the container init;
* the exec fifo wait outlives the sync socket: create writes it with ``args.open``; `start` completes it
  (the fifo write ends it) and adds "start hooks + execve" until the init has exec'd.

Timestamps are CLOCK_MONOTONIC (time.monotonic_ns here, clock_gettime in C), so the processes of one
container line up. The file is one JSON object ``{"traceEvents": [...]}``; each command merges its
events in under an flock when it ends (valid JSON at every moment a command is not writing).

Off (the default), ``step()`` returns a shared no-op object: one global read per step.
"""
import time

from ociruntime.lean import posix

ENV = "OCIRUNTIME_TRACE"
path = None          # the trace file, when tracing
debug = False        # --debug: steps as log lines
events = []
_open_fix = []       # (init pid, end ns) of open exec-fifo-wait events to complete in the file
_names = {}          # pid -> process name (metadata events)


def configure(trace_path=None, debug_steps=False):
    global path, debug
    if not trace_path:
        trace_path = posix.environ.get(ENV.encode(), b"").decode() or None
    path = trace_path
    debug = debug_steps


def active():
    return path is not None or debug


class _Null:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        return False

    def arg(self, **kw):
        pass


NULL = _Null()


class _Span:
    __slots__ = ("name", "args", "t0")

    def __init__(self, name, args):
        self.name, self.args = name, args

    def __enter__(self):
        self.t0 = time.monotonic_ns()
        return self

    def arg(self, **kw):
        self.args.update(kw)

    def __exit__(self, et, ev, tb):
        t1 = time.monotonic_ns()
        if ev is not None:
            self.args["error"] = str(ev)
        add(self.name, self.t0, t1 - self.t0, "runtime", posix.getpid(), self.args)
        return False


def step(name, **args):
    """A runtime step: ``with trace.step("plan"): ...``. No-op unless tracing or --debug."""
    if path is None and not debug:
        return NULL
    return _Span(name, args)


def add(name, t0_ns, dur_ns, cat, pid, args=None, tid=None):
    ev = {"name": name, "cat": cat, "ph": "X", "ts": t0_ns / 1000, "dur": max(dur_ns, 0) / 1000,
          "pid": pid, "tid": tid or pid}
    if args:
        ev["args"] = args
    events.append(ev)
    if debug:
        from ociruntime.log import log
        log.debug(f"{cat} step: {name}", ms=f"{dur_ns / 1e6:.3f}", pid=pid, **(args or {}))


def name_process(pid, name):
    _names[pid] = name


def init_records(payload, pid, pointer_of=None):
    """SYNC_TRACE payload (csrc/init/trace.c) -> init events on pid's track. Returns the records
    as (name, index, detail, start, dur, errno)."""
    out = []
    for line in payload.decode(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 6:
            continue
        name, index, detail, t0, dur, err = parts[0], int(parts[1]), parts[2], int(parts[3]), int(parts[4]), int(parts[5])
        out.append((name, index, detail, t0, dur, err))
        args = {}
        if index >= 0:
            args["index"] = index
        if detail:
            args["detail"] = detail
        ptr = pointer_of(name, index, detail) if pointer_of else None
        if ptr:
            args["pointer"] = ptr
        if err:
            import errno as _errno
            args["errno"] = _errno.errorcode.get(err, str(err)) if err > 0 else "-"
        if dur < 0:
            args["open"] = True  # the exec fifo wait: completed by `start`
        add(name, t0, dur, "init", pid, args)
    return out


def complete_open(init_pid, end_ns):
    """`start`: the exec fifo wait of init_pid ended now (found in the file when flushing)."""
    for ev in events:
        if ev["pid"] == init_pid and (ev.get("args") or {}).get("open"):
            ev["dur"] = max(end_ns / 1000 - ev["ts"], 0)
            del ev["args"]["open"]
            return
    _open_fix.append((init_pid, end_ns))


def flush():
    """Merge this command's events into the trace file (flock; created as {"traceEvents": []})."""
    global events
    if path is None or not (events or _open_fix):
        events = []
        return
    import fcntl
    from ociruntime import fastjson  # not `json`: it pulls in re, enum, functools (ms of start-up)
    meta = [{"name": "process_name", "ph": "M", "pid": pid, "tid": pid, "args": {"name": name}}
            for pid, name in _names.items()]
    fd = posix.open(path, posix.O_RDWR | posix.O_CREAT | posix.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        chunks = []
        while True:
            chunk = posix.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        try:
            doc = fastjson.loads(data.decode()) if data.strip() else {}
        except (ValueError, StopIteration):
            doc = {}
        if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
            doc = {"traceEvents": [], "displayTimeUnit": "ms"}
        evs = doc["traceEvents"]
        for init_pid, end_ns in _open_fix:
            for ev in evs:
                if ev.get("pid") == init_pid and (ev.get("args") or {}).get("open"):
                    ev["dur"] = max(end_ns / 1000 - ev["ts"], 0)
                    del ev["args"]["open"]
        have = {(e.get("pid"), e.get("name")) for e in evs if e.get("ph") == "M"}
        evs.extend(m for m in meta if (m["pid"], m["name"]) not in have)
        evs.extend(events)
        out = fastjson.dumps(doc).encode()
        posix.lseek(fd, 0, 0)
        posix.ftruncate(fd, 0)
        posix.write(fd, out)
    finally:
        posix.close(fd)
    events = []
    _open_fix.clear()
