"""cgroup v1 manager: linux.resources written to the per-controller hierarchies.

File names, write order and value conversions follow runc's fs driver (opencontainers/cgroups
fs/*.go); subsystems are visited in runc's order. A setting whose controller is not mounted fails
with runc's "cannot set <controller> limit: container could not join or create cgroup".
"""
import errno
import os
import time

from ociruntime.cgroups import devices, files
from ociruntime.cgroups.files import CgroupError, HostLacks, NoPath
from ociruntime.cgroups.resources import KERNEL_MEMORY_WARNING, Resources, device_rules
from ociruntime.errors import OciError


def controller_path(paths, ctrl):
    """The container's directory in the hierarchy carrying ``ctrl`` ('' if not mounted)."""
    for key, path in paths.items():
        if key and ctrl in key.split(","):
            return path
    return ""


# --- memory -------------------------------------------------------------------------------------

def _set_memory_limit(path, val):
    if val == 0:
        return
    try:
        files.write(path, "memory.limit_in_bytes", str(val))
    except CgroupError as e:
        if e.errno != errno.EBUSY:
            raise
        usage = files.read_uint(path, "memory.usage_in_bytes")
        peak = files.read_uint(path, "memory.max_usage_in_bytes")
        raise OciError(f"unable to set memory limit to {val} (current usage: {usage}, peak usage: {peak})")


def _set_swap(path, val):
    if val != 0:
        files.write(path, "memory.memsw.limit_in_bytes", str(val))


def set_memory(path, r, warn):
    memory, swap = r.memory, r.memory_swap
    if memory == -1 and swap == 0 and os.path.exists(os.path.join(path, "memory.memsw.limit_in_bytes")):
        swap = -1  # unlimited memory also means unlimited memory+swap
    done = False
    if memory != 0 and swap != 0:
        cur = files.read_uint(path, "memory.limit_in_bytes")
        # write in the order the kernel accepts: memsw must stay >= limit at every step
        if swap == -1 or cur < swap:
            _set_swap(path, swap)
            _set_memory_limit(path, memory)
            done = True
    if not done:
        _set_memory_limit(path, memory)
        _set_swap(path, swap)
    if r.kernel_tcp is not None:
        # kernel memory (kmem.limit_in_bytes) is gone from current kernels; the TCP buffer limit
        # is still enforced by v1, so apply it where the file exists.
        if os.path.exists(os.path.join(path, "memory.kmem.tcp.limit_in_bytes")):
            files.write(path, "memory.kmem.tcp.limit_in_bytes", str(r.kernel_tcp))
        elif r.kernel is None:
            warn(KERNEL_MEMORY_WARNING)
    if r.memory_reservation != 0:
        files.write(path, "memory.soft_limit_in_bytes", str(r.memory_reservation))
    if r.oom_kill_disable:
        files.write(path, "memory.oom_control", "1")
    if r.use_hierarchy is not None and os.path.exists(os.path.join(path, "memory.use_hierarchy")):
        want = "1" if r.use_hierarchy else "0"
        if files.read(path, "memory.use_hierarchy").strip() != want:
            try:
                files.write(path, "memory.use_hierarchy", want)
            except CgroupError as e:
                if e.errno != errno.EINVAL:
                    raise
                # since Linux 5.16 the hierarchy is always on (writing 0 is EINVAL)
                warn("memory.useHierarchy=false is not supported by this kernel (hierarchy is always on); ignored")
    if r.swappiness is None or r.swappiness == -1:
        return
    if 0 <= r.swappiness <= 100:
        files.write(path, "memory.swappiness", str(r.swappiness))
    else:
        raise OciError(f"invalid memory swappiness value: {r.swappiness} (valid range is 0-100)")


def _memory_needed(r):
    return bool(r.memory or r.memory_swap or r.memory_reservation or r.oom_kill_disable
                or r.kernel_tcp is not None or (r.swappiness is not None and r.swappiness != -1)
                or r.use_hierarchy is not None)


# --- cpu ----------------------------------------------------------------------------------------

_NO_RT = ("this kernel has no real-time group scheduling (no cpu.rt_runtime_us: CONFIG_RT_GROUP_SCHED is "
          "unset or disabled)")


def _check_rt_sched(path, r):
    """realtimeRuntime/realtimePeriod need RT group scheduling: without it the cpu hierarchy has no
    cpu.rt_* files (runc fails on the write with ENOENT). Checked before anything of cpu is written."""
    if (r.cpu_rt_runtime or r.cpu_rt_period) and not os.path.exists(os.path.join(path, "cpu.rt_runtime_us")):
        raise HostLacks(("cpu", "realtimeRuntime" if r.cpu_rt_runtime else "realtimePeriod"), _NO_RT)


def set_rt_sched(path, r):
    period = ""
    if r.cpu_rt_period:
        period = str(r.cpu_rt_period)
        try:
            files.write(path, "cpu.rt_period_us", period)
            period = ""
        except CgroupError as e:
            # period and runtime depend on each other: retry the period after the runtime
            if e.errno != errno.EINVAL or not r.cpu_rt_runtime:
                raise
    if r.cpu_rt_runtime:
        files.write(path, "cpu.rt_runtime_us", str(r.cpu_rt_runtime))
        if period:
            files.write(path, "cpu.rt_period_us", period)


def set_cpu(path, r):
    _check_rt_sched(path, r)
    if r.cpu_shares:
        files.write(path, "cpu.shares", str(r.cpu_shares))
        got = files.read_uint(path, "cpu.shares")
        if r.cpu_shares > got:
            raise OciError(f"the maximum allowed cpu-shares is {got}")
        if r.cpu_shares < got:
            raise OciError(f"the minimum allowed cpu-shares is {got}")
    period = ""
    if r.cpu_period:
        period = str(r.cpu_period)
        try:
            files.write(path, "cpu.cfs_period_us", period)
            period = ""
        except CgroupError as e:
            if e.errno != errno.EINVAL or not r.cpu_quota:
                raise
    burst = ""
    if r.cpu_burst is not None:
        burst = str(r.cpu_burst)
        try:
            files.write(path, "cpu.cfs_burst_us", burst)
            burst = ""
        except CgroupError as e:
            if e.errno == errno.ENOENT:
                burst = ""  # no burst knob on this kernel
            elif e.errno != errno.EINVAL or not r.cpu_quota:
                raise
    if r.cpu_quota:
        files.write(path, "cpu.cfs_quota_us", str(r.cpu_quota))
        if period:
            files.write(path, "cpu.cfs_period_us", period)
        if burst:
            files.write(path, "cpu.cfs_burst_us", burst)
    if r.cpu_idle is not None:
        files.write(path, "cpu.idle", str(r.cpu_idle))
    set_rt_sched(path, r)


def _cpu_needed(r):
    return bool(r.cpu_shares or r.cpu_period or r.cpu_quota or r.cpu_burst is not None
                or r.cpu_idle is not None or r.cpu_rt_period or r.cpu_rt_runtime)


# --- the rest -----------------------------------------------------------------------------------

def set_cpuset(path, r):
    if r.cpuset_cpus:
        files.write(path, "cpuset.cpus", r.cpuset_cpus)
    if r.cpuset_mems:
        files.write(path, "cpuset.mems", r.cpuset_mems)


def set_pids(path, r):
    if r.pids_limit is None:
        return
    # 0 is mapped to 1 (as systemd's TasksMax); negative means unlimited
    val = str(r.pids_limit) if r.pids_limit > 0 else ("1" if r.pids_limit == 0 else "max")
    files.write(path, "pids.max", val)


_NO_WEIGHT = "this kernel has no blkio {} (BFQ not available)"
_NO_LEAF = "this kernel has no blkio {} (only the CFQ scheduler had leaf weights; it is gone since Linux 5.0)"


def blkio_weight_files(path):
    """(weight, weight_device, leaf_weight, leaf_weight_device): the files of the blkio directory
    ``path`` for them, None where this kernel has none. blkio.weight* came with CFQ (removed in Linux
    5.0), blkio.bfq.weight* come with the BFQ scheduler (a host without it has only throttle files)."""
    def have(name):
        return name if os.path.exists(os.path.join(path, name)) else None
    if have("blkio.weight"):
        return "blkio.weight", have("blkio.weight_device"), have("blkio.leaf_weight"), have("blkio.leaf_weight_device")
    return have("blkio.bfq.weight"), have("blkio.bfq.weight_device"), None, None


def _check_blkio_weights(r, wfile, wdfile, lfile, ldfile):
    """The first weight setting (in runc's write order) this kernel has no file for: a clear error
    naming the field, before anything is written (runc fails on the write with ENOENT)."""
    if r.blkio_weight and not wfile:
        raise HostLacks(("blockIO", "weight"), _NO_WEIGHT.format("weight"))
    if r.blkio_leaf_weight and not lfile:
        raise HostLacks(("blockIO", "leafWeight"), _NO_LEAF.format("leaf weight"))
    for i, (_major, _minor, weight, leaf) in enumerate(r.blkio_weight_device):
        if weight and not wdfile:
            raise HostLacks(("blockIO", "weightDevice", i, "weight"), _NO_WEIGHT.format("weight_device"))
        if leaf and not ldfile:
            raise HostLacks(("blockIO", "weightDevice", i, "leafWeight"), _NO_LEAF.format("leaf_weight_device"))


def set_blkio(path, r):
    wfile, wdfile, lfile, ldfile = blkio_weight_files(path)
    _check_blkio_weights(r, wfile, wdfile, lfile, ldfile)
    if r.blkio_weight:
        files.write(path, wfile, str(r.blkio_weight))
    if r.blkio_leaf_weight:
        files.write(path, lfile, str(r.blkio_leaf_weight))
    for major, minor, weight, leaf in r.blkio_weight_device:
        if weight:
            files.write(path, wdfile, f"{major}:{minor} {weight}")
        if leaf:
            files.write(path, ldfile, f"{major}:{minor} {leaf}")
    for key, fname in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                       ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                       ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                       ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
        for major, minor, rate in r.throttle[key]:
            files.write(path, fname, f"{major}:{minor} {rate}")


def _blkio_needed(r):
    return bool(r.blkio_weight or r.blkio_leaf_weight or r.blkio_weight_device
                or any(r.throttle.values()))


def _page_bytes(size):
    """"64KB" -> 65536 (hugetlb's page size names), for ordering."""
    try:
        return int(size[:-2]) << {"KB": 10, "MB": 20, "GB": 30}.get(size[-2:], 0)
    except ValueError:
        return 0


def check_hugetlb_sizes(path, r, suffix):
    """Each hugepageLimits[i].pageSize needs its hugetlb.<size>.<suffix> file: a size this kernel does not
    have (1GB pages on a host without them, 64KB on x86) is a clear error naming the entry and the sizes
    the host has, before anything is written (runc fails on the write with ENOENT)."""
    for i, (size, _limit) in enumerate(r.hugetlb):
        if not os.path.exists(os.path.join(path, f"hugetlb.{size}.{suffix}")):
            try:
                have = sorted({n.split(".")[1] for n in os.listdir(path)
                               if n.startswith("hugetlb.") and n.endswith("." + suffix) and n.count(".") == 2},
                              key=_page_bytes)
            except OSError:
                have = []
            raise HostLacks(("hugepageLimits", i, "pageSize"),
                            f"this kernel has no {size} huge pages (no hugetlb.{size}.{suffix}; this host's "
                            f"sizes: {', '.join(have) or 'none'})")


def set_hugetlb(path, r):
    check_hugetlb_sizes(path, r, "limit_in_bytes")
    skip_rsvd = False
    for size, limit in r.hugetlb:
        prefix = f"hugetlb.{size}"
        files.write(path, prefix + ".limit_in_bytes", str(limit))
        if skip_rsvd:
            continue
        try:
            files.write(path, prefix + ".rsvd.limit_in_bytes", str(limit))
        except CgroupError as e:
            if e.errno != errno.ENOENT:
                raise
            skip_rsvd = True


def set_net_cls(path, r):
    if r.net_cls_classid:
        files.write(path, "net_cls.classid", str(r.net_cls_classid))


def set_net_prio(path, r):
    for name, prio in r.net_prio_ifpriomap:
        files.write(path, "net_prio.ifpriomap", f"{name} {prio}")


def rdma_line(dev, handles, objects):
    s = dev
    if handles is not None:
        s += f" hca_handle={handles}"
    if objects is not None:
        s += f" hca_object={objects}"
    return s


def set_rdma(path, r):
    for dev, (handles, objects) in r.rdma.items():
        files.write(path, "rdma.max", rdma_line(dev, handles, objects))


class NoController(NoPath):
    """The container has no directory on the hierarchy of ``ctrl`` (runc's text). The caller tells a
    host without that hierarchy (then ``field``, the setting that needs it, is named) from a hierarchy
    the container was not given (rootless)."""

    def __init__(self, ctrl, field):
        super().__init__(f"cannot set {ctrl} limit: container could not join or create cgroup")
        self.ctrl = ctrl
        self.field = field


def _controller_field(ctrl, r):
    """The linux.resources field (path) that made ``ctrl`` needed."""
    if ctrl == "net_cls":
        return ("network", "classID")
    if ctrl == "net_prio":
        return ("network", "priorities")
    if ctrl == "cpuset":
        return ("cpu", "cpus" if r.cpuset_cpus else "mems")
    return ({"hugetlb": "hugepageLimits", "blkio": "blockIO"}.get(ctrl, ctrl),)


def set_resources(paths, res, warn, skip_devices=False, ignore_devices=False):
    """Apply ``res`` (a LinuxResources dict) to the container's v1 cgroups. ignore_devices (rootless):
    the device rules are tried, and their failure (or a devices hierarchy we have no path in) ignored."""
    r = Resources(res)
    if r.unified:
        raise OciError("invalid configuration: cannot use unified on cgroup v1")
    if r.kernel is not None:
        warn(KERNEL_MEMORY_WARNING)
    steps = [
        ("cpuset", set_cpuset, bool(r.cpuset_cpus or r.cpuset_mems)),
        ("devices", None, not skip_devices),
        ("memory", lambda p, rr: set_memory(p, rr, warn), _memory_needed(r)),
        ("cpu", set_cpu, _cpu_needed(r)),
        ("pids", set_pids, r.pids_limit is not None),
        ("blkio", set_blkio, _blkio_needed(r)),
        ("hugetlb", set_hugetlb, bool(r.hugetlb)),
        ("net_cls", set_net_cls, bool(r.net_cls_classid)),
        ("net_prio", set_net_prio, bool(r.net_prio_ifpriomap)),
        ("rdma", set_rdma, bool(r.rdma)),
    ]
    for ctrl, fn, needed in steps:
        if not needed:
            continue
        path = controller_path(paths, ctrl)
        if ctrl == "devices" and ignore_devices:
            if path:
                try:
                    devices.set_v1(path, device_rules(res))
                except (OciError, OSError):
                    pass
            continue
        if not path:
            raise NoController(ctrl, _controller_field(ctrl, r))
        if ctrl == "devices":
            devices.set_v1(path, device_rules(res))
        else:
            fn(path, r)


# --- freezer ------------------------------------------------------------------------------------

def freeze(paths):
    path = controller_path(paths, "freezer")
    if not path:
        raise OciError("cannot toggle freezer: cgroups not configured for container")
    try:
        for i in range(1000):
            if i % 50 == 49:
                # a task stuck in FREEZING (e.g. in vfork) needs a thaw to make progress
                files.write(path, "freezer.state", "THAWED")
                time.sleep(0.01)
            files.write(path, "freezer.state", "FROZEN")
            if i % 25 == 24:
                time.sleep(0.00001)
            state = files.read(path, "freezer.state").strip()
            if state == "FREEZING":
                continue
            if state == "FROZEN":
                return
            raise OciError(f"unexpected state {state} while freezing")
        raise OciError("unable to freeze")
    except BaseException:
        try:
            files.write(path, "freezer.state", "THAWED")
        except OciError:
            pass
        raise


def thaw(paths):
    path = controller_path(paths, "freezer")
    if not path:
        raise OciError("cannot toggle freezer: cgroups not configured for container")
    files.write(path, "freezer.state", "THAWED")
