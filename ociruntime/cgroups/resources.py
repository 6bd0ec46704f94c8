"""linux.resources (runtime-spec config-linux.md) as the cgroup managers consume it.

The managers read the spec's own JSON shape (``LinuxResources``); this module holds what both
hierarchies share: the v1 -> v2 value conversions runc applies, the device rule list (the config's
rules followed by runc's default allow list), and the merge ``update`` performs.
"""
import math

from ociruntime.errors import OciError

WILDCARD = -1

# runc libcontainer/specconv AllowedDevices: appended after the config's rules, always.
# (type, major, minor, access)
DEFAULT_ALLOWED = (
    ("c", WILDCARD, WILDCARD, "m"),
    ("b", WILDCARD, WILDCARD, "m"),
    ("c", 1, 3, "rwm"),      # /dev/null
    ("c", 1, 8, "rwm"),      # /dev/random
    ("c", 1, 7, "rwm"),      # /dev/full
    ("c", 5, 0, "rwm"),      # /dev/tty
    ("c", 1, 5, "rwm"),      # /dev/zero
    ("c", 1, 9, "rwm"),      # /dev/urandom
    ("c", 136, WILDCARD, "rwm"),  # /dev/pts/*
    ("c", 5, 2, "rwm"),      # /dev/ptmx
    ("c", 10, 200, "rwm"),   # /dev/net/tun (kept by runc for compatibility)
)

KERNEL_MEMORY_WARNING = "Kernel memory settings are ignored and will be removed"


def shares_to_weight(shares):
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000] (runc ConvertCPUSharesToCgroupV2Value: a
    quadratic fit through log2 that maps 2->1, 1024->100 and 262144->10000)."""
    if not shares:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    exponent = (lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0
    return int(math.ceil(10 ** exponent))


def swap_to_v2(swap, memory):
    """memory+swap (v1 memsw) -> memory.swap.max (swap only); runc ConvertMemorySwapToCgroupV2Value."""
    if memory == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if memory == -1:
        return swap
    if memory == 0:
        raise OciError("unable to set swap limit without memory limit")
    if memory < 0:
        raise OciError(f"invalid memory value: {memory}")
    if swap < memory:
        raise OciError("memory+swap limit should be >= memory limit")
    return swap - memory


def blkio_weight_to_io(weight):
    """blkio.weight [10, 1000] -> io.weight [1, 10000] (runc ConvertBlkIOToIOWeightValue)."""
    if not weight:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def _int(v, default=0):
    return default if v is None else int(v)


class Resources:
    """Read-only view of a LinuxResources dict with runc's defaults (0 = unset)."""

    def __init__(self, res):
        res = res or {}
        self.raw = res
        mem = res.get("memory") or {}
        self.memory = _int(mem.get("limit"))
        self.memory_reservation = _int(mem.get("reservation"))
        self.memory_swap = _int(mem.get("swap"))
        self.kernel_set = mem.get("kernel") is not None or mem.get("kernelTCP") is not None
        self.kernel = mem.get("kernel")
        self.kernel_tcp = mem.get("kernelTCP")
        self.swappiness = mem.get("swappiness")
        self.oom_kill_disable = bool(mem.get("disableOOMKiller"))
        self.use_hierarchy = mem.get("useHierarchy")
        self.check_before_update = bool(mem.get("checkBeforeUpdate"))
        cpu = res.get("cpu") or {}
        self.cpu_shares = _int(cpu.get("shares"))
        self.cpu_weight = shares_to_weight(self.cpu_shares)
        self.cpu_quota = _int(cpu.get("quota"))
        self.cpu_period = _int(cpu.get("period"))
        self.cpu_burst = cpu.get("burst")
        self.cpu_rt_runtime = _int(cpu.get("realtimeRuntime"))
        self.cpu_rt_period = _int(cpu.get("realtimePeriod"))
        self.cpuset_cpus = cpu.get("cpus") or ""
        self.cpuset_mems = cpu.get("mems") or ""
        self.cpu_idle = cpu.get("idle")
        pids = res.get("pids")
        self.pids_limit = None if not pids or pids.get("limit") is None else int(pids["limit"])
        bio = res.get("blockIO") or {}
        self.blkio_weight = _int(bio.get("weight"))
        self.blkio_leaf_weight = _int(bio.get("leafWeight"))
        self.blkio_weight_device = [(int(d["major"]), int(d["minor"]), _int(d.get("weight")),
                                     _int(d.get("leafWeight"))) for d in bio.get("weightDevice") or []]
        self.throttle = {}
        for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                    "throttleWriteIOPSDevice"):
            self.throttle[key] = [(int(d["major"]), int(d["minor"]), int(d.get("rate") or 0))
                                  for d in bio.get(key) or []]
        self.hugetlb = [(h["pageSize"], int(h["limit"])) for h in res.get("hugepageLimits") or []]
        net = res.get("network") or {}
        self.net_cls_classid = _int(net.get("classID"))
        self.net_prio_ifpriomap = [(p["name"], int(p["priority"])) for p in net.get("priorities") or []]
        self.rdma = {k: (v.get("hcaHandles"), v.get("hcaObjects")) for k, v in (res.get("rdma") or {}).items()}
        self.unified = res.get("unified")
        self.devices = res.get("devices")


def device_rules(res, defaults=True):
    """[(type, major, minor, access, allow)] in application order: the config's rules, then runc's
    default allow list (which a config cannot remove)."""
    out = []
    for i, d in enumerate((res or {}).get("devices") or []):
        t = d.get("type") or "a"
        if t not in ("a", "b", "c"):
            raise OciError(f"invalid cgroup device type {t!r}")
        access = d.get("access")
        if access is None or access == "":
            raise OciError(f"device access at {i} field cannot be empty")
        major = d.get("major")
        minor = d.get("minor")
        out.append((t, WILDCARD if major is None else int(major), WILDCARD if minor is None else int(minor),
                    access, bool(d.get("allow"))))
    if defaults:
        out.extend((t, ma, mi, acc, True) for t, ma, mi, acc in DEFAULT_ALLOWED)
    return out


def _upsert(lst, entry, fields):
    """runc upsertWeightDevice/upsertThrottleDevice: update the last entry for the same device or
    append a new one."""
    for cur in reversed(lst):
        if cur.get("major") == entry.get("major") and cur.get("minor") == entry.get("minor"):
            for f in fields:
                if entry.get(f) is not None:
                    cur[f] = entry[f]
            return
    lst.append({k: v for k, v in entry.items() if v is not None})


def merge_update(saved, new):
    """runc update.go: fold the LinuxResources of an update into the saved ones. Returns the new
    saved resources (what the cgroup then holds; devices are never updated)."""
    import copy  # update only: keep create's imports lean
    r = copy.deepcopy(saved or {})
    new = new or {}
    nmem = new.get("memory") or {}
    ncpu = new.get("cpu") or {}
    nbio = new.get("blockIO") or {}
    mem = r.setdefault("memory", {})
    cpu = r.setdefault("cpu", {})
    bio = r.setdefault("blockIO", {})
    # fix-ups runc applies before merging
    if nmem.get("limit") == -1 and nmem.get("swap") is None:
        nmem = dict(nmem, swap=0)
    if ncpu.get("idle") is not None and ncpu.get("shares") is None:
        ncpu = dict(ncpu, shares=0)
    if nbio.get("weight") is not None:
        bio["weight"] = nbio["weight"]
    if nbio.get("leafWeight") is not None:
        bio["leafWeight"] = nbio["leafWeight"]
    for wd in nbio.get("weightDevice") or []:
        _upsert(bio.setdefault("weightDevice", []), dict(wd), ("weight", "leafWeight"))
    for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                "throttleWriteIOPSDevice"):
        for td in nbio.get(key) or []:
            _upsert(bio.setdefault(key, []), dict(td), ("rate",))
    p = ncpu.get("period") or 0
    q = ncpu.get("quota") or 0
    if (p == 0 and q == 0) or (p != 0 and q != 0):
        _set_or_drop(cpu, "period", p)
        _set_or_drop(cpu, "quota", q)
    elif p != 0:
        cpu["period"] = p
    else:
        cpu["quota"] = q
    _set_or_drop(cpu, "burst", ncpu.get("burst"), keep_zero=True)
    if ncpu.get("shares") is not None:
        _set_or_drop(cpu, "shares", ncpu["shares"])
    if ncpu.get("realtimePeriod") is not None:
        cpu["realtimePeriod"] = ncpu["realtimePeriod"]
    if ncpu.get("realtimeRuntime") is not None:
        cpu["realtimeRuntime"] = ncpu["realtimeRuntime"]
    _set_or_drop(cpu, "cpus", ncpu.get("cpus") or "")
    _set_or_drop(cpu, "mems", ncpu.get("mems") or "")
    _set_or_drop(cpu, "idle", ncpu.get("idle"), keep_zero=True)
    for k in ("limit", "reservation", "swap"):
        if nmem.get(k) is not None:
            mem[k] = nmem[k]
    mem.pop("kernel", None)  # never re-applied (runc's configs have no kernel memory fields)
    mem["checkBeforeUpdate"] = bool(nmem.get("checkBeforeUpdate"))
    npids = new.get("pids") or {}
    if npids.get("limit") is not None:
        r["pids"] = {"limit": npids["limit"]}
    else:
        r.pop("pids", None)
    if new.get("unified"):
        r["unified"] = dict(new["unified"])
    else:
        r.pop("unified", None)
    for k in ("memory", "cpu", "blockIO"):
        if not r[k]:
            del r[k]
    return r


def _set_or_drop(d, key, value, keep_zero=False):
    if value is None or (value == 0 and not keep_zero) or value == "":
        d.pop(key, None)
    else:
        d[key] = value
