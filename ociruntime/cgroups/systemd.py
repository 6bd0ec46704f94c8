"""The systemd cgroup driver (runc's libcontainer/cgroups/systemd): the container's cgroup is a
transient unit that systemd creates and owns.

``linux.cgroupsPath`` is ``slice:prefix:name``: the unit ``<prefix>-<name>.scope`` in ``<slice>``
(a name ending in ``.slice`` makes that slice instead); an empty path means ``:runc:<id>``, an
empty slice ``system.slice`` (rootless: ``user.slice`` of the user's own systemd instance).
The unit is started over D-Bus (sdbus.py) with ``Delegate=true``, the init's pid,
``DefaultDependencies=false``, accounting on, every resource systemd understands as a unit property
for the host's cgroup version, and ``org.systemd.property.<Name>`` annotations; the rest is written
through cgroupfs by the v1/v2 code, as runc does. ``update`` = SetUnitProperties + cgroupfs;
``delete`` = StopUnit (+ ResetFailedUnit).
"""
import os
import re

from ociruntime import cgroups
from ociruntime.cgroups.resources import Resources, device_rules, swap_to_v2
from ociruntime.errors import OciError

UINT64_MAX = (1 << 64) - 1
DEFAULT_CPU_QUOTA_PERIOD = 100000  # µs


# --- names -----------------------------------------------------------------------------------------

def parse_cgroups_path(path, cid):
    """(slice, prefix, name) as runc's specconv: "" -> ("", "runc", id)."""
    if not path:
        return "", "runc", cid
    parts = path.split(":")
    if len(parts) != 3:
        raise OciError(f'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups, '
                       f'got "{path}" instead')
    return parts[0], parts[1], parts[2]


def unit_name(prefix, name):
    """runc getUnitName: a scope unless the name is a slice."""
    if name.endswith(".slice"):
        return name
    return f"{prefix}-{name}.scope"


def expand_slice(slice_):
    """runc ExpandSlice: "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice" ("-.slice" is the root)."""
    suffix = ".slice"
    if len(slice_) < len(suffix) or not slice_.endswith(suffix) or "/" in slice_:
        raise OciError(f"invalid slice name: {slice_}")
    if slice_ == "-.slice":
        return "/"
    base = slice_[:-len(suffix)]
    if "--" in base or base.startswith("-") or base.endswith("-"):
        raise OciError(f"invalid slice name: {slice_}")
    path, prefix = "", ""
    for comp in base.split("-"):
        path += f"/{prefix}{comp}{suffix}"
        prefix += comp + "-"
    return path


# --- annotations: org.systemd.property.<Name> ---------------------------------------------------------

_PREFIX = "org.systemd.property."
_TYPED = {"boolean": "b", "byte": "y", "int16": "n", "uint16": "q", "int32": "i", "uint32": "u",
          "int64": "x", "uint64": "t", "double": "d", "string": "s", "objectpath": "o"}
_INT_SIGS = "ynqiuxt"


def _parse_variant(text):
    """The GVariant text form runc accepts (godbus ParseVariant), for what a unit property takes:
    true/false, integers (int32 unless typed: "uint64 5", "@t 5"), doubles, 'strings' and
    ["string", …] arrays. Returns (signature, value)."""
    s = text.strip()
    sig = None
    m = re.match(r"^@([a-z]+)\s+(.*)$", s, re.S)
    if m:
        sig, s = m.group(1), m.group(2).strip()
    else:
        m = re.match(r"^(%s)\s+(.*)$" % "|".join(_TYPED), s, re.S)
        if m:
            sig, s = _TYPED[m.group(1)], m.group(2).strip()
    if s in ("true", "false"):
        if sig not in (None, "b"):
            raise ValueError("type mismatch")
        return "b", s == "true"
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return (sig or "s"), s[1:-1]
    if s.startswith("[") and s.endswith("]"):
        items = [x.strip() for x in s[1:-1].split(",") if x.strip()]
        vals = [_parse_variant(x) for x in items]
        if any(v[0] != "s" for v in vals):
            raise ValueError("only arrays of strings are supported")
        return "as", [v[1] for v in vals]
    if re.fullmatch(r"[+-]?\d+", s):
        sig = sig or "i"
        if sig not in _INT_SIGS + "d":
            raise ValueError("type mismatch")
        return sig, (float(s) if sig == "d" else int(s))
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", s):
        return "d", float(s)
    raise ValueError(f"cannot parse {text!r}")


def annotation_properties(annotations):
    """runc initSystemdProps: [(Name, (sig, value))]; "…Sec" names with a lowercase letter before
    "Sec" become "…USec" with the value in µs."""
    out = []
    for key in sorted(annotations or {}):
        if not key.startswith(_PREFIX):
            continue
        name, value = key[len(_PREFIX):], annotations[key]
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
            raise OciError(f"annotation {key} name incorrect: bad property name {name!r} (want [A-Z][A-Za-z0-9]*)")
        try:
            sig, val = _parse_variant(value)
        except ValueError as e:
            raise OciError(f"annotation {key}={value} value parse error: {e}")
        if name.endswith("Sec") and len(name) > 3 and "a" <= name[-4] <= "z":
            if sig not in _INT_SIGS + "d":
                raise OciError(f"annotation {key}={value} value parse error: not a number")
            name, sig, val = name[:-3] + "USec", "t", int(val * 1000000)
        out.append((name, (sig, val)))
    return out


# --- resources as unit properties --------------------------------------------------------------------

def _range_to_bits(spec):
    """"0-2,4" -> the little-endian byte mask systemd's AllowedCPUs/AllowedMemoryNodes take."""
    mask = 0
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            lo, hi = int(a), int(b)
            if hi < lo:
                raise OciError(f"invalid range {part!r}")
        else:
            lo = hi = int(part)
        for i in range(lo, hi + 1):
            mask |= 1 << i
    out = bytearray()
    while mask:
        out.append(mask & 0xFF)
        mask >>= 8
    return bytes(out or b"\0")


def _cpu_quota(props, quota, period):
    """runc addCpuQuota: CPUQuotaPeriodUSec when a period is given, CPUQuotaPerSecUSec rounded up
    to 10 ms (systemd's own granularity); "max" when only a period is."""
    if not quota and not period:
        return
    per_sec = UINT64_MAX
    if period:
        props.append(("CPUQuotaPeriodUSec", ("t", period)))
    if quota > 0:
        period = period or DEFAULT_CPU_QUOTA_PERIOD
        per_sec = quota * 1000000 // period
        if per_sec % 10000:
            per_sec = (per_sec // 10000 + 1) * 10000
    props.append(("CPUQuotaPerSecUSec", ("t", per_sec)))


def _cpuset(props, r):
    try:
        if r.cpuset_cpus:
            props.append(("AllowedCPUs", ("ay", _range_to_bits(r.cpuset_cpus))))
        if r.cpuset_mems:
            props.append(("AllowedMemoryNodes", ("ay", _range_to_bits(r.cpuset_mems))))
    except ValueError:
        raise OciError(f"invalid cpuset {r.cpuset_cpus!r}/{r.cpuset_mems!r}")


def _device_group(t, major):
    """The name of a major number in /proc/devices ("Character devices:" / "Block devices:")."""
    want = "Character devices:" if t == "c" else "Block devices:"
    try:
        with open("/proc/devices") as f:
            section = None
            for line in f:
                line = line.strip()
                if line.endswith("devices:"):
                    section = line
                    continue
                parts = line.split()
                if section == want and len(parts) == 2 and parts[0] == str(major):
                    return parts[1]
    except OSError:
        pass
    return None


def device_properties(res, warn):
    """runc generateDeviceProperties: DevicePolicy=strict and a DeviceAllow list built from the
    final allow list (systemd has no deny rules); allow-all -> DevicePolicy=auto."""
    from ociruntime.cgroups.devices import Emulator, set_to_perms
    from ociruntime.cgroups.resources import WILDCARD
    emu = Emulator.from_rules(device_rules(res))
    if emu.default_allow:
        if not emu.rules:
            return [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]
        warn("systemd doesn't support blacklist device rules -- applying temporary deny-all rule")
        return [("DevicePolicy", ("s", "strict")), ("DeviceAllow", ("a(ss)", []))]
    allow = []
    for (t, major, minor), perms in sorted(emu.rules.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        kind = "char" if t == "c" else "block"
        if major == WILDCARD:
            if minor != WILDCARD:
                warn("systemd does not support wildcard-major device rules; skipping")
                continue
            path = f"{kind}-*"
        elif minor == WILDCARD:
            group = _device_group(t, major)
            if not group:
                warn(f"could not find device group for '{t} {major}:*' in /proc/devices -- temporarily ignoring rule")
                continue
            path = f"{kind}-{group}"
        else:
            path = f"/dev/{kind}/{major}:{minor}"
            sysfs = f"/sys/dev/{kind}/{major}:{minor}"  # as runc: the kernel's view (no udev needed)
            if not os.path.exists(sysfs):
                warn(f"skipping device {path} for systemd: stat {sysfs}: no such file or directory")
                continue
        allow.append((path, set_to_perms(perms)))
    return [("DevicePolicy", ("s", "strict")), ("DeviceAllow", ("a(ss)", allow))]


def resource_properties(resources, v2, warn, devices=True):
    """The unit properties for linux.resources (runc genV2ResourcesProperties /
    genV1ResourcesProperties); the rest is cgroupfs's."""
    r = Resources(resources)
    props = device_properties(resources, warn) if devices else []
    if v2:
        if r.memory:
            props.append(("MemoryMax", ("t", r.memory & UINT64_MAX)))
        if r.memory_reservation:
            props.append(("MemoryLow", ("t", r.memory_reservation & UINT64_MAX)))
        swap = swap_to_v2(r.memory_swap, r.memory)
        if swap:
            props.append(("MemorySwapMax", ("t", swap & UINT64_MAX)))
        if r.cpu_weight:
            props.append(("CPUWeight", ("t", r.cpu_weight)))
        unified = r.unified or {}
        if "memory.high" in unified:
            v = unified["memory.high"].strip()
            props.append(("MemoryHigh", ("t", UINT64_MAX if v == "max" else int(v))))
        if r.blkio_weight:
            from ociruntime.cgroups.resources import blkio_weight_to_io
            props.append(("IOWeight", ("t", blkio_weight_to_io(r.blkio_weight))))
    else:
        if r.memory:
            props.append(("MemoryLimit", ("t", r.memory & UINT64_MAX)))
        if r.cpu_shares:
            props.append(("CPUShares", ("t", r.cpu_shares)))
        if r.blkio_weight:
            props.append(("BlockIOWeight", ("t", r.blkio_weight)))
    _cpu_quota(props, r.cpu_quota, r.cpu_period)
    if r.pids_limit is not None and (r.pids_limit > 0 or r.pids_limit == -1):
        props.append(("TasksMax", ("t", r.pids_limit & UINT64_MAX)))
    _cpuset(props, r)
    return props


# --- the manager -------------------------------------------------------------------------------------

def _warn(msg):
    from ociruntime.log import log
    log.warning(msg)


_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\-]+\.(scope|slice)")


class SystemdManager(cgroups.Manager):
    """runc's systemd legacyManager (v1/hybrid) and unifiedManager (v2) in one: the unit is
    systemd's, the cgroupfs paths below it are read and written by the v1/v2 code."""

    driver = "systemd"

    def __init__(self, paths, made, unit, slice_, rootless, annotations_props=(), started=False):
        super().__init__(paths, made, rootless=rootless)
        self.unit = unit
        self.slice = slice_
        self.extra = list(annotations_props)
        self.started = started
        self.resources = {}

    @property
    def v2(self):
        return cgroups.is_v2(self.paths)

    @classmethod
    def for_create(cls, cid, cgroups_path, rootless, annotations):
        if not os.path.isdir("/run/systemd/system"):
            raise OciError("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); "
                           "use the cgroupfs driver (omit --systemd-cgroup)")
        slice_, prefix, name = parse_cgroups_path(cgroups_path, cid)
        slice_ = slice_ or ("user.slice" if rootless else "system.slice")
        unit = unit_name(prefix, name)
        extra = annotation_properties(annotations)
        hs = cgroups.hierarchies()
        if rootless and not ("" in hs and len(hs) == 1):
            raise OciError("--systemd-cgroup: rootless containers need cgroup v2 for the systemd driver "
                           "(a user's systemd instance cannot delegate v1 controllers)")
        rel = expand_slice(slice_)
        if rootless:
            with _bus(True) as bus:
                manager_cg = str(bus.manager_property("ControlGroup"))
            rel = manager_cg.rstrip("/") + rel
        rel = os.path.normpath(rel + "/" + unit)
        if "" in hs and len(hs) == 1:
            paths = {"": os.path.join(hs[""][0], rel.lstrip("/"))}
        else:
            # v1/hybrid: the unit's directory on every v1 hierarchy (systemd makes those it
            # manages, we make the others), the unified one of a hybrid host only joined
            paths = {k: os.path.join(mp, rel.lstrip("/")) for k, (mp, _own) in hs.items() if k}
        return cls(paths, [], unit, slice_, rootless, extra)

    @classmethod
    def from_state(cls, st):
        sd = st.get("systemd") or {}
        unit = sd.get("unit", "")
        if not isinstance(unit, str) or not _UNIT_RE.fullmatch(unit):
            raise OciError(f"state: systemd unit {unit!r} is not a unit of ours (a .scope or .slice)")
        return cls(st.get("cgroup_paths") or {}, st.get("cgroup_made") or [], sd.get("unit", ""),
                   sd.get("slice", ""), bool(sd.get("rootless")), started=True)

    def state(self):
        return {"cgroup_paths": self.paths, "cgroup_made": self.made,
                "systemd": {"unit": self.unit, "slice": self.slice, "rootless": self.rootless}}

    # --- create
    def prepare(self, resources):
        self.resources = resources or {}
        if self.v2:
            swap_to_v2(Resources(self.resources).memory_swap, Resources(self.resources).memory)
        # checked before anything is made (runc converts them when it builds its config)
        self._start_props = resource_properties(self.resources, self.v2, _warn)

    def _unit_props(self, pid):
        props = [("Description", ("s", f"libcontainer container {self.unit}"))]
        if self.unit.endswith(".slice"):
            props.append(("Wants", ("as", [self.slice])))
        else:
            props.append(("Slice", ("s", self.slice)))
            props.append(("Delegate", ("b", True)))
        if pid != -1:
            props.append(("PIDs", ("au", [pid])))
        props += [("MemoryAccounting", ("b", True)), ("CPUAccounting", ("b", True)),
                  ("IOAccounting" if self.v2 else "BlockIOAccounting", ("b", True)),
                  ("TasksAccounting", ("b", True)), ("DefaultDependencies", ("b", False))]
        return props + self.extra + self._start_props

    def apply(self, pid):
        from ociruntime.cgroups.sdbus import DBusError
        with _bus(self.rootless) as bus:
            try:
                bus.start_transient_unit(self.unit, self._unit_props(pid))
            except DBusError as e:
                # a unit of that name that is not ours (another container's) is never stopped by our
                # rollback; any other failure may have left our unit behind (a failed job)
                self.started = e.name != "org.freedesktop.systemd1.UnitExists"
                raise
            self.started = True  # from here on a failure stops the unit (rollback)
        if self.v2:
            from ociruntime.cgroups.fs2 import enable_controllers
            enable_controllers(self.paths[""], cgroups._mountpoint_of(self.paths[""]))
        else:
            # v1: systemd made the directories of the controllers it manages; the others are ours
            made = []
            try:
                for key, path in self.paths.items():
                    if not os.path.isdir(path):  # systemd's own (already holding the init) stay as they are
                        cgroups._create_one(key, path, made)
            except OSError as e:
                raise OciError(f"create cgroup: {e.filename}: {e.strerror}")
            finally:
                self.made.extend(made)
            cgroups.apply(self.paths, pid)
        # everything systemd does not cover (and the rest again: cgroupfs has the last word, as in runc)
        cgroups.set_resources(self.paths, self.resources, rootless=self.rootless)

    def mount_paths(self):
        return self.paths

    def uses_procs_writes(self):
        return False

    def rollback(self):
        """A create that failed at any step leaves no unit behind (and no directory it made)."""
        if self.started:
            try:
                self._stop()
            except OciError as e:
                _warn(str(e))
        from ociruntime.cgremove import destroy_dirs
        try:
            destroy_dirs(self.made, timeout=2.0)
        except OciError:
            pass

    def _stop(self):
        with _bus(self.rootless) as bus:
            bus.stop_unit(self.unit)
            bus.reset_failed_unit(self.unit)

    # --- afterwards
    def set(self, resources, create=False, skip_devices=False, warn=None, source="config.json",
            pointer_base="/linux/resources"):
        """update: the unit's properties, then cgroupfs (runc Set)."""
        props = resource_properties(resources, self.v2, warn or _warn, devices=not skip_devices)
        if props:
            with _bus(self.rootless) as bus:
                try:
                    bus.set_unit_properties(self.unit, props)
                except OciError as e:
                    raise OciError(f"unable to set unit properties: {e}")
        cgroups.set_resources(self.paths, resources, skip_devices=skip_devices, warn=warn, rootless=self.rootless,
                              source=source, pointer_base=pointer_base)

    def oom_notifier(self):
        return (cgroups.Fs2Manager if self.v2 else cgroups.FsManager).oom_notifier(self)

    def _gone(self, wait=3.0):
        """Whether systemd already collected the unit: a scope whose processes are all gone ends by
        itself (inactive, not failed) and systemd removes its cgroup. Waits a little for that."""
        import time
        probe = self.paths.get("") or self.paths.get("systemd") or next(iter(self.paths.values()), None)
        if not probe or not self.unit.endswith(".scope"):
            return False
        deadline = time.monotonic() + wait
        while os.path.isdir(probe):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def destroy(self):
        """StopUnit (systemd removes the unit's cgroups), then whatever directory we made ourselves.
        A scope systemd already collected (its processes are gone, its cgroup removed) needs no call:
        a loaded systemd was seen leaving that late StopUnit unanswered for minutes."""
        if not self._gone():
            self._stop()
        from ociruntime.cgremove import destroy
        return destroy(self.paths, self.made)


def _bus(rootless):
    from ociruntime.cgroups.sdbus import Systemd
    return Systemd(rootless=rootless)
