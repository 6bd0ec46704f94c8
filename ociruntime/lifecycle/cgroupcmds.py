"""pause, resume, ps, update, events: the commands that act on a container's cgroup
(runc pause.go, ps.go, update.go, events.go; cli-contract.md §6.9-§6.12)."""
import json
import os
import re
import sys
import time

from ociruntime import cgroups
from ociruntime.errors import NotFound, OciError, StateError
from ociruntime.state import Store, status_of


def _open(ctx, lock=True):
    c = Store(ctx.root).open(ctx.args[0], lock=lock)
    st = c.read_state()
    if st is None:
        c.close()
        raise NotFound()
    return c, st


def container_status(c, st):
    """runc refreshState: a frozen cgroup means "paused" whatever else holds."""
    mgr = cgroups.manager_of(st)
    if mgr.is_frozen() and mgr.exists():
        return "paused"
    return status_of(c, st)


def _flag(ctx, *names, default=None):
    for n in names:
        v = ctx.flag(n)
        if v is not None:
            return v
    return default


# --- pause / resume -------------------------------------------------------------------------------

def cmd_pause(ctx):
    c, st = _open(ctx)
    try:
        status = container_status(c, st)
        if status not in ("running", "created"):
            raise StateError("container not running")
        cgroups.manager_of(st).freeze()
    finally:
        c.close()
    return 0


def cmd_resume(ctx):
    c, st = _open(ctx)
    try:
        if container_status(c, st) != "paused":
            raise StateError("container not paused")
        cgroups.manager_of(st).thaw()
    finally:
        c.close()
    return 0


# --- ps ---------------------------------------------------------------------------------------------

def cmd_ps(ctx):
    fmt = _flag(ctx, "format", "force", default="table")  # -f is aliased to "force" by the parser
    c, st = _open(ctx, lock=False)
    c.close()
    mgr = cgroups.manager_of(st)
    pids = mgr.all_pids() if mgr.exists() else []
    if fmt == "json":
        sys.stdout.write(json.dumps(pids or None) + "\n")
        return 0
    if fmt != "table":
        raise OciError("invalid format option")
    import subprocess
    args = ctx.args[1:] or ["-ef"]
    try:
        p = subprocess.run(["ps", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise OciError(f'exec: "ps": {e.strerror}')
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise OciError(f"exit status {p.returncode}: {out}")
    lines = out.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise OciError("couldn't find PID field in ps output")
    idx = titles.index("PID")
    want = set(pids)
    res = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        fields = line.split()
        try:
            pid = int(fields[idx])
        except (IndexError, ValueError):
            raise OciError(f'unable to parse pid: strconv.Atoi: parsing "{fields[idx] if idx < len(fields) else ""}": invalid syntax')
        if pid in want:
            res.append(line)
    sys.stdout.write("\n".join(res) + "\n")
    return 0


# --- update -------------------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def ram_in_bytes(s):
    """docker/go-units RAMInBytes: "64m", "1g", "1.5GiB", "1024" (binary multiples)."""
    m = _SIZE_RE.match(s)
    if not m:
        raise OciError(f"invalid size: '{s}'")
    try:
        v = float(m.group(1))
    except ValueError:
        raise OciError(f"invalid size: '{s}'")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}.get((m.group(2) or "").lower(), 1)
    return int(v * mult)


def _parse_go_int(s, what, unsigned):
    try:
        v = int(s, 10)
    except ValueError:
        raise OciError(f'invalid value for {what}: strconv.Parse{"Uint" if unsigned else "Int"}: parsing "{s}": invalid syntax')
    if unsigned and v < 0:
        raise OciError(f'invalid value for {what}: strconv.ParseUint: parsing "{s}": invalid syntax')
    return v


def _update_request(ctx):
    """The LinuxResources of the request, as runc's update builds it."""
    src = _flag(ctx, "resources", "r")
    if src:
        try:
            if src == "-":
                data = sys.stdin.read()
            else:
                with open(src) as f:
                    data = f.read()
        except OSError as e:
            raise OciError(f"open {src}: {e.strerror.lower() if e.strerror else e}")
        try:
            r = json.JSONDecoder().raw_decode(data.lstrip())[0] if data.strip() else None
        except ValueError as e:
            raise OciError(f"invalid resources JSON: {e}")
        if r is None:
            raise OciError("EOF")
        if not isinstance(r, dict):
            raise OciError("json: cannot unmarshal resources into Go value of type specs.LinuxResources")
        return r
    r = {"memory": {}, "cpu": {}, "blockIO": {}, "pids": {}}
    w = ctx.flag("blkio-weight")
    if w:
        r["blockIO"]["weight"] = w
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        v = ctx.flag(flag)
        if v:
            r["cpu"][key] = v
    v = ctx.flag("cpu-idle")
    if v:
        r["cpu"]["idle"] = _parse_go_int(v, "cpu-idle", False)
    for flag, key in (("cpu-burst", "burst"), ("cpu-period", "period"), ("cpu-rt-period", "realtimePeriod"),
                      ("cpu-share", "shares")):
        v = ctx.flag(flag)
        if v:
            r["cpu"][key] = _parse_go_int(v, flag, True)
    for flag, key in (("cpu-quota", "quota"), ("cpu-rt-runtime", "realtimeRuntime")):
        v = ctx.flag(flag)
        if v:
            r["cpu"][key] = _parse_go_int(v, flag, False)
    for flag, key in (("memory", "limit"), ("memory-swap", "swap"), ("kernel-memory", "kernel"),
                      ("kernel-memory-tcp", "kernelTCP"), ("memory-reservation", "reservation")):
        v = ctx.flag(flag)
        if v:
            try:
                r["memory"][key] = -1 if v == "-1" else ram_in_bytes(v)
            except OciError as e:
                raise OciError(f"invalid value for {flag}: {e}")
    if ctx.flag("pids-limit") is not None:
        r["pids"]["limit"] = ctx.flag("pids-limit")
    return r


def _saved_resources(st):
    """The resources the cgroup was last given: saved by a previous update, else the ones of the
    config the container was created from."""
    if "resources" in st:
        return st["resources"] or {}
    try:
        with open(os.path.join(st["bundle"], "config.json")) as f:
            cfg = json.load(f)
        return ((cfg.get("linux") or {}).get("resources")) or {}
    except (OSError, ValueError, KeyError, AttributeError):
        return {}


# the field a flag of update sets (a refused field is named with its flag)
_FLAG_OF = {"/blockIO/weight": "blkio-weight", "/cpu/realtimeRuntime": "cpu-rt-runtime",
            "/cpu/realtimePeriod": "cpu-rt-period"}


def cmd_update(ctx):
    from ociruntime.cgroups.resources import KERNEL_MEMORY_WARNING, merge_update
    from ociruntime.log import log
    req = _update_request(ctx)
    for flag in ("l3-cache-schema", "mem-bw-schema"):
        if ctx.flag(flag):
            what = "l3 cache schema" if flag.startswith("l3") else "memory bandwidth schema"
            raise OciError(f"Intel RDT/{'CAT' if flag.startswith('l3') else 'MBA'}: {what} is not enabled")
    mem = req.get("memory") or {}
    if mem.get("kernel") is not None or mem.get("kernelTCP") is not None:
        log.warning(KERNEL_MEMORY_WARNING)
        mem.pop("kernel", None)
        mem.pop("kernelTCP", None)
    c, st = _open(ctx)
    try:
        if container_status(c, st) == "stopped":
            raise StateError("container not running")
        mgr = cgroups.manager_of(st)
        saved = _saved_resources(st)
        merged = merge_update(saved, req)
        # a setting this kernel lacks is named in the request: "update --resources: /blockIO/weight: ..."
        # (a flag's: "update --cpu-rt-runtime: /cpu/realtimeRuntime: ...")
        source = "update --resources" if _flag(ctx, "resources", "r") else "update"
        try:
            mgr.set(merged, skip_devices=True, source=source, pointer_base="")
        except OciError as e:
            try:
                mgr.set(saved, skip_devices=True, warn=lambda m: None)
            except OciError as e2:
                log.warning(f"Setting back cgroup configs failed due to error: {e2}, your state.json and "
                            f"actual configs might be inconsistent.")
            flag = _FLAG_OF.get(getattr(e, "pointer", None))
            if source == "update" and flag and ctx.flag(flag) is not None:
                from ociruntime.errors import ConfigError
                raise ConfigError(e.pointer, e.reason, source=f"update --{flag}") from None
            raise
        st["resources"] = merged
        c.write_state(st)
    finally:
        c.close()
    return 0


# --- events ---------------------------------------------------------------------------------------------

_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR_RE = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(s):
    """Go time.ParseDuration, in seconds."""
    orig = s
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1
    if s[:1] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if not s:
        raise OciError(f'time: invalid duration "{orig}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DUR_RE.match(s, pos)
        if not m:
            if re.fullmatch(r"[\d.]+", s[pos:]):
                raise OciError(f'time: missing unit in duration "{orig}"')
            um = re.match(r"[\d.]+([^\d.]+)", s[pos:])
            if um:
                raise OciError(f'time: unknown unit "{um.group(1)}" in duration "{orig}"')
            raise OciError(f'time: invalid duration "{orig}"')
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def _emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cmd_events(ctx):
    from ociruntime.log import log
    interval = 5.0
    iv = ctx.flag("interval")
    if iv is not None:
        try:
            interval = parse_duration(iv)
        except OciError as e:
            raise OciError(f'invalid value "{iv}" for flag -interval: {e}')
    if interval <= 0:
        raise OciError("duration interval must be greater than 0")
    c, st = _open(ctx, lock=False)
    status = container_status(c, st)
    c.close()
    cid = st["id"]
    if status == "stopped":
        raise OciError(f"container with id {cid} is not running")
    mgr = cgroups.manager_of(st)
    if ctx.flag("stats"):
        _emit({"type": "stats", "id": cid, "data": mgr.stats()})
        return 0
    notifier = mgr.oom_notifier()
    import select
    try:
        next_stats = time.monotonic() + interval
        while True:
            timeout = max(0.0, next_stats - time.monotonic())
            if notifier.fileno() is not None:
                select.select([notifier.fileno()], [], [], timeout)
            else:
                time.sleep(min(timeout, 0.1))
            n, gone = notifier.poll()
            for _ in range(n):
                _emit({"type": "oom", "id": cid})
            if gone:
                return 0
            if time.monotonic() >= next_stats:
                next_stats += interval
                try:
                    _emit({"type": "stats", "id": cid, "data": mgr.stats()})
                except OciError as e:
                    log.error(str(e))
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    finally:
        notifier.close()
