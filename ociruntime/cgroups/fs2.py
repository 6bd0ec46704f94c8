"""cgroup v2 manager (pure unified hierarchy): linux.resources written to one directory.

Follows runc's fs2 driver (opencontainers/cgroups fs2/*.go): v1-style values are converted
(cpu.shares -> cpu.weight, memory+swap -> memory.swap.max, blkio weight -> io.weight), device rules
become an eBPF program, and the ``unified`` map is written last, as given.
"""
import errno
import os
import time

from ociruntime.cgroups import devices, files
from ociruntime.cgroups.files import CgroupError, HostLacks
from ociruntime.cgroups.resources import (KERNEL_MEMORY_WARNING, Resources, blkio_weight_to_io,
                                          device_rules, swap_to_v2)
from ociruntime.errors import OciError
from ociruntime.cgroups.fs1 import set_cpuset, set_pids  # identical files and values on v2


def enable_controllers(path, mount):
    """Enable every available controller in the subtree_control of each ancestor of ``path``
    below (and including) the mount root, so that the leaf gets the controllers' files. A cgroup
    with processes of its own cannot delegate domain controllers: those writes fail and are
    ignored here (as runc does); the limits needing them then fail with a clear error."""
    try:
        avail = files.read(mount, "cgroup.controllers").split()
    except CgroupError:
        return
    if not avail:
        return
    rel = os.path.relpath(path, mount)
    parts = [] if rel == "." else rel.split("/")
    cur = mount
    for part in parts:
        try:
            files.write(cur, "cgroup.subtree_control", " ".join("+" + c for c in avail))
        except CgroupError:
            for c in avail:
                try:
                    files.write(cur, "cgroup.subtree_control", "+" + c)
                except CgroupError:
                    pass
        cur = os.path.join(cur, part)


def needs_controllers(res, mount="/sys/fs/cgroup"):
    """runc fs2 needAnyControllers: whether ``res`` sets a limit of a controller this host has (pids,
    memory, io, cpu, cpuset, hugetlb; not the devices/freezer pseudo-controllers). True when the
    host's controllers cannot be read."""
    if not res:
        return False
    try:
        avail = set(files.read(mount, "cgroup.controllers").split())
    except CgroupError:
        return True
    r = Resources(res)
    wanted = {
        "pids": bool(r.pids_limit),
        "memory": bool(r.memory_reservation or r.memory or r.memory_swap),
        "io": bool(r.blkio_weight or r.blkio_weight_device or any(r.throttle.values())),
        "cpu": bool(r.cpu_weight or r.cpu_quota or r.cpu_period),
        "cpuset": bool(r.cpuset_cpus or r.cpuset_mems),
        "hugetlb": bool(r.hugetlb),
    }
    return any(w and c in avail for c, w in wanted.items())


def _num(v):
    if v == 0:
        return ""
    if v == -1:
        return "max"
    return str(v)


def check_memory_usage(path, r):
    if not r.check_before_update or (r.memory <= 0 and r.memory_swap <= 0):
        return
    try:
        usage = files.read_uint(path, "memory.current")
    except CgroupError:
        return
    if r.memory_swap > 0 and r.memory_swap <= usage:
        raise OciError(f"rejecting memory+swap limit {r.memory_swap} <= usage {usage}")
    if r.memory > 0 and r.memory <= usage:
        raise OciError(f"rejecting memory limit {r.memory} <= usage {usage}")


def set_memory(path, r, warn):
    if r.kernel_tcp is not None:
        warn(KERNEL_MEMORY_WARNING)
    if not (r.memory_reservation or r.memory or r.memory_swap):
        return
    check_memory_usage(path, r)
    swap = swap_to_v2(r.memory_swap, r.memory)
    s = _num(swap)
    if s == "" and swap == 0 and r.memory_swap > 0:
        s = "0"  # memory+swap == memory: no swap at all
    if s:
        try:
            files.write(path, "memory.swap.max", s)
        except CgroupError as e:
            # no swap accounting: "no swap" and "unlimited" are what the kernel does anyway
            if not (e.errno == errno.ENOENT and s in ("max", "0")):
                raise
    s = _num(r.memory)
    if s:
        files.write(path, "memory.max", s)
    s = _num(r.memory_reservation)
    if s:
        files.write(path, "memory.low", s)


def set_io(path, r):
    if not (r.blkio_weight or r.blkio_weight_device or any(r.throttle.values())):
        return
    bfq = None
    try:
        if r.blkio_weight or r.blkio_weight_device:
            try:
                bfq = os.open(os.path.join(path, "io.bfq.weight"), os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                bfq = None
            except OSError as e:
                raise CgroupError(f"openat2 {os.path.join(path, 'io.bfq.weight')}: {files.strerror(e.errno)}", e.errno)
        if r.blkio_weight:
            if bfq is not None:
                _fd_write(bfq, path, "io.bfq.weight", str(r.blkio_weight))
            elif os.path.exists(os.path.join(path, "io.weight")):
                files.write(path, "io.weight", str(blkio_weight_to_io(r.blkio_weight)))
            else:
                raise HostLacks(("blockIO", "weight"), "this kernel has no io weight (neither BFQ nor "
                                                       "blk-iocost available)")
        if bfq is not None and _bfq_device_weight_supported(bfq):
            for major, minor, weight, _leaf in r.blkio_weight_device:
                try:
                    _fd_write(bfq, path, "io.bfq.weight", f"{major}:{minor} {weight}\n")
                except CgroupError as e:
                    raise OciError(f'setting device weight "{major}:{minor} {weight}": {e}')
    finally:
        if bfq is not None:
            os.close(bfq)
    for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for major, minor, rate in r.throttle[key]:
            files.write(path, "io.max", f"{major}:{minor} {name}={rate}")


def _fd_write(fd, path, name, data):
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise CgroupError(f'failed to write "{data}": write {os.path.join(path, name)}: {files.strerror(e.errno)}', e.errno)


def _bfq_device_weight_supported(fd):
    """Old kernels show a bare number in io.bfq.weight and take no per-device weights."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 32)
    except OSError:
        return False
    try:
        int(data.strip())
        return False
    except ValueError:
        return True


def set_cpu(path, r):
    if not (r.cpu_weight or r.cpu_quota or r.cpu_period or r.cpu_idle is not None or r.cpu_burst is not None):
        return
    if r.cpu_idle is not None:
        files.write(path, "cpu.idle", str(r.cpu_idle))
    if r.cpu_weight:
        files.write(path, "cpu.weight", str(r.cpu_weight))
    burst = ""
    if r.cpu_burst is not None:
        burst = str(r.cpu_burst)
        try:
            files.write(path, "cpu.max.burst", burst)
            burst = ""
        except CgroupError as e:
            if e.errno != errno.EINVAL or not r.cpu_quota:
                raise
    if r.cpu_quota or r.cpu_period:
        s = str(r.cpu_quota) if r.cpu_quota > 0 else "max"
        s += " " + str(r.cpu_period or 100000)
        files.write(path, "cpu.max", s)
        if burst:
            files.write(path, "cpu.max.burst", burst)


def _check_controller(path, ctrl, field, probe):
    """A setting whose controller this cgroup lacks (``probe``, one of its files, is missing and the
    controller is not in cgroup.controllers): a clear error naming the field (runc: ENOENT of the file)."""
    if os.path.exists(os.path.join(path, probe)):
        return
    avail = (files.read_opt(path, "cgroup.controllers") or "").split()
    if ctrl not in avail:
        raise HostLacks(field, f"no {ctrl} cgroup controller for this cgroup: it is not in "
                               f"{os.path.join(path, 'cgroup.controllers')} (the kernel lacks it, or the "
                               f"parent cgroup does not delegate it)")


def set_hugetlb(path, r):
    if not r.hugetlb:
        return
    from ociruntime.cgroups.fs1 import check_hugetlb_sizes
    _check_controller(path, "hugetlb", ("hugepageLimits",), f"hugetlb.{r.hugetlb[0][0]}.max")
    check_hugetlb_sizes(path, r, "max")
    skip_rsvd = False
    for size, limit in r.hugetlb:
        prefix = f"hugetlb.{size}"
        files.write(path, prefix + ".max", str(limit))
        if skip_rsvd:
            continue
        try:
            files.write(path, prefix + ".rsvd.max", str(limit))
        except CgroupError as e:
            if e.errno != errno.ENOENT:
                raise
            skip_rsvd = True


def set_unified(path, unified):
    if not unified:
        return
    controllers = None
    for key, val in unified.items():
        if "/" in key:
            raise OciError(f"unified resource {key!r} must be a file name (no slashes)")
        try:
            files.write_lines(path, key, val)
        except CgroupError as e:
            if e.errno in (errno.EPERM, errno.ENOENT, errno.EACCES):
                ctrl, dot, _ = key.partition(".")
                if not dot:
                    raise OciError(f"unified resource {key!r} must be in the form CONTROLLER.PARAMETER")
                if controllers is None:
                    controllers = (files.read_opt(path, "cgroup.controllers") or "").split()
                if ctrl not in controllers and ctrl != "cgroup":
                    raise OciError(f"unified resource {key!r} can't be set: controller {ctrl!r} not available")
            raise OciError(f"unable to set unified resource {key!r}: {e}")


def set_resources(path, res, warn, skip_devices=False, ignore_devices=False):
    """Apply ``res`` (a LinuxResources dict) to the container's v2 cgroup directory."""
    from ociruntime.cgroups.fs1 import rdma_line
    r = Resources(res)
    if r.kernel is not None:
        warn(KERNEL_MEMORY_WARNING)
    if r.net_cls_classid or r.net_prio_ifpriomap:
        # net_cls/net_prio do not exist on cgroup v2 (runc silently ignores them there)
        warn("linux.resources.network is not supported on cgroup v2 (net_cls/net_prio); ignored")
    set_pids(path, r)
    set_memory(path, r, warn)
    set_io(path, r)
    set_cpu(path, r)
    if not skip_devices:
        try:
            devices.set_v2(path, device_rules(res))
        except (OciError, OSError):
            if not ignore_devices:  # rootless: the BPF device filter needs privileges we lack
                raise
    set_cpuset(path, r)
    set_hugetlb(path, r)
    if r.rdma:
        _check_controller(path, "rdma", ("rdma",), "rdma.max")
    for dev, (handles, objects) in r.rdma.items():
        files.write(path, "rdma.max", rdma_line(dev, handles, objects))
    set_unified(path, r.unified)


# --- freezer / kill -------------------------------------------------------------------------------

def freeze(path):
    try:
        files.write(path, "cgroup.freeze", "1")
    except CgroupError as e:
        raise OciError(f"freezer not supported: {e}")
    for _ in range(1000):
        ev = files.read_opt(path, "cgroup.events") or ""
        for line in ev.splitlines():
            if line.startswith("frozen "):
                if line.split()[1] == "1":
                    return
        time.sleep(0.01)
    raise OciError("timeout of 10s reached waiting for the cgroup to freeze")


def thaw(path):
    try:
        files.write(path, "cgroup.freeze", "0")
    except CgroupError as e:
        if e.errno not in (errno.ENOENT, errno.ENODEV):
            raise
