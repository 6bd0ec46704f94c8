"""Container statistics in runc's ``events`` shape (runc types/events.go ``Stats``).

Collected as runc's fs (v1) and fs2 (v2) GetStats do; encoded with Go's encoding/json rules for
the struct tags (``omitempty``: zero numbers, empty strings/slices/maps vanish; ``omitzero``: a
struct whose fields are all zero vanishes).
"""
import os

from ociruntime.cgroups import files
from ociruntime.cgroups.files import CgroupError

U64MAX = (1 << 64) - 1


def _clock_ticks():
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def _mem_entry(limit=0, usage=0, max_=0, failcnt=0):
    e = {"limit": limit}
    if usage:
        e["usage"] = usage
    if max_:
        e["max"] = max_
    e["failcnt"] = failcnt
    return e


def _zero_entry(e):
    return not (e.get("limit") or e.get("usage") or e.get("max") or e.get("failcnt"))


def _blkio_entries(lst):
    out = []
    for major, minor, op, value in lst:
        e = {}
        if major:
            e["major"] = major
        if minor:
            e["minor"] = minor
        if op:
            e["op"] = op
        if value:
            e["value"] = value
        out.append(e)
    return out


def _psi(d, name):
    s = files.read_opt(d, name)
    if s is None:
        return None
    out = {}
    for line in s.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        data = {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0}
        for kv in parts[1:]:
            k, _, v = kv.partition("=")
            if k == "total":
                data[k] = int(v)
            elif k in data:
                data[k] = float(v)
        if any(data.values()):
            out[parts[0]] = data
    return out


class _Acc:
    """Mutable collection of what the controllers report, encoded at the end."""

    def __init__(self):
        self.cpu_usage = {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [], "kernel": 0, "user": 0}
        self.throttling = {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}
        self.cpu_psi = None
        self.cpuset = None
        self.mem_cache = 0
        self.mem = {}
        self.mem_raw = {}
        self.mem_psi = None
        self.pids = {"current": 0, "limit": 0}
        self.blkio = {}
        self.blkio_psi = None
        self.hugetlb = {}

    def encode(self):
        cpu = {}
        u = self.cpu_usage
        usage = {}
        for k in ("total", "percpu", "percpu_kernel", "percpu_user"):
            if u[k]:
                usage[k] = u[k]
        usage["kernel"] = u["kernel"]
        usage["user"] = u["user"]
        if any(u.values()):
            cpu["usage"] = usage
        thr = {k: v for k, v in self.throttling.items() if v}
        if thr:
            cpu["throttling"] = thr
        if self.cpu_psi is not None:
            cpu["psi"] = self.cpu_psi
        cs = self.cpuset or {}
        cpuset = {}
        for k, default in (("cpus", None), ("cpu_exclusive", 0), ("mems", None), ("mem_hardwall", 0),
                           ("mem_exclusive", 0), ("memory_migrate", 0), ("memory_spread_page", 0),
                           ("memory_spread_slab", 0), ("memory_pressure", 0), ("sched_load_balance", 0),
                           ("sched_relax_domain_level", 0)):
            v = cs.get(k, default)
            if default is None:
                if v:
                    cpuset[k] = v
            else:
                cpuset[k] = v
        mem = {}
        if self.mem_cache:
            mem["cache"] = self.mem_cache
        for key in ("usage", "swap", "kernel", "kernelTCP"):
            e = self.mem.get(key)
            if e and not _zero_entry(e):
                mem[key] = e
        if self.mem_raw:
            mem["raw"] = dict(sorted(self.mem_raw.items()))
        if self.mem_psi is not None:
            mem["psi"] = self.mem_psi
        pids = {k: v for k, v in self.pids.items() if v}
        blkio = {k: _blkio_entries(v) for k, v in self.blkio.items() if v}
        if self.blkio_psi is not None:
            blkio["psi"] = self.blkio_psi
        return {"cpu": cpu, "cpuset": cpuset, "memory": mem, "pids": pids, "blkio": blkio,
                "hugetlb": dict(sorted(self.hugetlb.items())), "intel_rdt": {}, "network_interfaces": None}


# --- v1 -----------------------------------------------------------------------------------------

def _v1_cpuset(path, acc):
    def lst(name):
        s = (files.read_opt(path, name) or "").strip()
        out = []
        for part in filter(None, s.split(",")):
            a, _, b = part.partition("-")
            out.extend(range(int(a), int(b or a) + 1))
        return out
    cs = {"cpus": lst("cpuset.cpus"), "mems": lst("cpuset.mems")}
    for k in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page",
              "memory_spread_slab", "memory_pressure", "sched_load_balance"):
        cs[k] = files.read_uint_opt(path, "cpuset." + k, 0)
    s = files.read_opt(path, "cpuset.sched_relax_domain_level")
    cs["sched_relax_domain_level"] = int(s) if s and s.strip().lstrip("-").isdigit() else 0
    acc.cpuset = cs


def _v1_memory_data(path, name):
    mod = "memory" + ("." + name if name else "")
    usage = files.read_uint_opt(path, mod + ".usage_in_bytes")
    if usage is None:
        return None
    return _mem_entry(limit=files.read_uint_opt(path, mod + ".limit_in_bytes", 0), usage=usage,
                      max_=files.read_uint_opt(path, mod + ".max_usage_in_bytes", 0),
                      failcnt=files.read_uint_opt(path, mod + ".failcnt", 0))


def _v1_memory(path, acc):
    raw = files.read_keyed(path, "memory.stat")
    acc.mem_raw = raw
    acc.mem_cache = raw.get("cache", 0)
    for key, name in (("usage", ""), ("swap", "memsw"), ("kernel", "kmem"), ("kernelTCP", "kmem.tcp")):
        e = _v1_memory_data(path, name)
        if e is not None:
            acc.mem[key] = e


def _v1_cpu(path, acc):
    st = files.read_keyed(path, "cpu.stat")
    acc.throttling["periods"] = st.get("nr_periods", 0)
    acc.throttling["throttledPeriods"] = st.get("nr_throttled", 0)
    acc.throttling["throttledTime"] = st.get("throttled_time", 0)


def _v1_cpuacct(path, acc):
    if not os.path.isdir(path):
        return
    ticks = _clock_ticks()
    st = files.read_keyed(path, "cpuacct.stat")
    u = acc.cpu_usage
    u["user"] = st.get("user", 0) * 1_000_000_000 // ticks
    u["kernel"] = st.get("system", 0) * 1_000_000_000 // ticks
    u["total"] = files.read_uint_opt(path, "cpuacct.usage", 0)
    u["percpu"] = [int(x) for x in (files.read_opt(path, "cpuacct.usage_percpu") or "").split()]
    all_ = files.read_opt(path, "cpuacct.usage_all")
    if all_:
        for line in all_.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                u["percpu_user"].append(int(f[1]))
                u["percpu_kernel"].append(int(f[2]))


def _v1_pids(path, acc):
    if not os.path.isdir(path):
        return
    acc.pids["current"] = files.read_uint_opt(path, "pids.current", 0)
    mx = files.read_uint_opt(path, "pids.max", 0)
    acc.pids["limit"] = 0 if mx == U64MAX else mx


def _v1_blkio_file(path, name):
    s = files.read_opt(path, name)
    if s is None:
        return None
    out = []
    for line in s.splitlines():
        f = line.replace(":", " ").split()
        if len(f) < 3:
            continue
        op = f[2] if len(f) == 4 else ""
        out.append((int(f[0]), int(f[1]), op, int(f[3] if len(f) == 4 else f[2])))
    return out


_BLKIO_GROUPS = (
    (("blkio.bfq.sectors_recursive", "sectorsRecursive"),
     ("blkio.bfq.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.bfq.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.bfq.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.bfq.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.bfq.time_recursive", "ioTimeRecursive"),
     ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.sectors_recursive", "sectorsRecursive"),
     ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.time_recursive", "ioTimeRecursive"),
     ("blkio.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive")),
)


def _v1_blkio(path, acc):
    """runc BlkioGroup.GetStats: the first group of files that exists wins (bfq debug, bfq, cfq,
    throttle recursive, throttle)."""
    for group in _BLKIO_GROUPS:
        first = _v1_blkio_file(path, group[0][0])
        if not first:
            continue
        acc.blkio[group[0][1]] = first
        for name, key in group[1:]:
            acc.blkio[key] = _v1_blkio_file(path, name) or []
        return


def hugepage_sizes():
    out = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return out
    for n in names:
        if n.startswith("hugepages-") and n.endswith("kB"):
            try:
                kb = int(n[len("hugepages-"):-2])
            except ValueError:
                continue
            out.append(size_name(kb * 1024))
    return out


def size_name(b):
    """2097152 -> "2MB" (docker/go-units CustomSize("%g%s", 1024, B KB MB GB TB PB))."""
    units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"]
    v = float(b)
    i = 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:g}{units[i]}"


def _v1_hugetlb(path, acc):
    if not os.path.isdir(path):
        return
    for size in hugepage_sizes():
        pre = f"hugetlb.{size}"
        usage = files.read_uint_opt(path, pre + ".rsvd.usage_in_bytes")
        if usage is not None:
            pre += ".rsvd"
        else:
            usage = files.read_uint_opt(path, pre + ".usage_in_bytes", 0)
        e = {}
        if usage:
            e["usage"] = usage
        mx = files.read_uint_opt(path, pre + ".max_usage_in_bytes", 0)
        if mx:
            e["max"] = mx
        e["failcnt"] = files.read_uint_opt(path, pre + ".failcnt", 0)
        acc.hugetlb[size] = e


def collect_v1(paths):
    from ociruntime.cgroups.fs1 import controller_path
    acc = _Acc()
    for ctrl, fn in (("cpuset", _v1_cpuset), ("memory", _v1_memory), ("cpu", _v1_cpu),
                     ("cpuacct", _v1_cpuacct), ("pids", _v1_pids), ("blkio", _v1_blkio),
                     ("hugetlb", _v1_hugetlb)):
        p = controller_path(paths, ctrl)
        if p:
            fn(p, acc)
    return acc.encode()


# --- v2 -----------------------------------------------------------------------------------------

def collect_v2(path):
    acc = _Acc()
    # pids
    cur = files.read_uint_opt(path, "pids.current")
    if cur is None:
        procs = files.read_opt(path, "cgroup.procs") or ""
        acc.pids["current"] = len(procs.split())
    else:
        acc.pids["current"] = cur
        mx = files.read_uint_opt(path, "pids.max", 0)
        acc.pids["limit"] = 0 if mx == U64MAX else mx
    # memory
    raw = files.read_keyed(path, "memory.stat")
    if raw:
        acc.mem_raw = raw
        acc.mem_cache = raw.get("file", 0)
    usage = files.read_uint_opt(path, "memory.current")
    if usage is not None:
        mem = _mem_entry(limit=files.read_uint_opt(path, "memory.max", 0), usage=usage,
                         max_=files.read_uint_opt(path, "memory.peak", 0))
        acc.mem["usage"] = mem
        susage = files.read_uint_opt(path, "memory.swap.current")
        if susage is not None:
            slimit = files.read_uint_opt(path, "memory.swap.max", 0)
            total_limit = slimit if slimit == U64MAX else slimit + mem["limit"]
            acc.mem["swap"] = _mem_entry(limit=min(total_limit, U64MAX), usage=susage + usage)
    acc.mem_psi = _psi(path, "memory.pressure")
    # io
    io = files.read_opt(path, "io.stat")
    if io:
        ops = {"rbytes": ("Read", "ioServiceBytesRecursive"), "wbytes": ("Write", "ioServiceBytesRecursive"),
               "rios": ("Read", "ioServicedRecursive"), "wios": ("Write", "ioServicedRecursive")}
        for line in io.splitlines():
            parts = line.split()
            if not parts or ":" not in parts[0]:
                continue
            major, minor = (int(x) for x in parts[0].split(":"))
            for item in parts[1:]:
                k, _, v = item.partition("=")
                if k in ops:
                    op, table = ops[k]
                    acc.blkio.setdefault(table, []).append((major, minor, op, int(v)))
    acc.blkio_psi = _psi(path, "io.pressure")
    # cpu
    st = files.read_keyed(path, "cpu.stat")
    u = acc.cpu_usage
    u["total"] = st.get("usage_usec", 0) * 1000
    u["user"] = st.get("user_usec", 0) * 1000
    u["kernel"] = st.get("system_usec", 0) * 1000
    acc.throttling["periods"] = st.get("nr_periods", 0)
    acc.throttling["throttledPeriods"] = st.get("nr_throttled", 0)
    acc.throttling["throttledTime"] = st.get("throttled_usec", 0) * 1000
    acc.cpu_psi = _psi(path, "cpu.pressure")
    # hugetlb
    for size in hugepage_sizes():
        pre = f"hugetlb.{size}"
        usage = files.read_uint_opt(path, pre + ".rsvd.current")
        if usage is None:
            usage = files.read_uint_opt(path, pre + ".current")
        if usage is None:
            continue
        e = {}
        if usage:
            e["usage"] = usage
        ev = files.read_keyed(path, pre + ".events")
        e["failcnt"] = ev.get("max", 0)
        acc.hugetlb[size] = e
    return acc.encode()


def collect(paths):
    from ociruntime.cgroups import is_v2
    try:
        if is_v2(paths):
            return collect_v2(paths[""])
        return collect_v1(paths)
    except CgroupError as e:
        from ociruntime.errors import OciError
        raise OciError(f"unable to get container cgroup stats: {e}")
