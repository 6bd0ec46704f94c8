"""Linux security modules: is AppArmor / SELinux / resctrl there, and which attr file gets which bytes.

Detection reads a few small files (no imports beyond os), as runc does:
* AppArmor (runc libcontainer/apparmor isEnabled): /sys/kernel/security/apparmor exists and
  /sys/module/apparmor/parameters/enabled starts with "Y"; when /sys/kernel/security/lsm lists the active
  modules, "apparmor" must be among them.
* SELinux (go-selinux getEnabled): a writable selinuxfs is mounted (only looked for when /proc/filesystems
  lists selinuxfs) and our own context is not "kernel"; the lsm list, when present, must name "selinux".
* resctrl (Intel RDT, runc libcontainer/intelrdt): /proc/filesystems lists resctrl and it is mounted.

What the init writes, just before the execve of the container process (see csrc/init/main.c, lsm.c):
* AppArmor: "exec <profile>" to /proc/thread-self/attr/apparmor/exec, or to the older /proc/thread-self/
  attr/exec when the kernel has no per-LSM directory (libapparmor aa_change_onexec, runc changeOnExec).
* SELinux: the label itself to /proc/thread-self/attr/exec (go-selinux SetExecLabel).
The procfs is the container's /proc, verified by fstatfs (CVE-2019-16884, CVE-2025-52881).

TEST ONLY: OCIRUNTIME_TEST_FAKE_LSM_PROC=<absolute path inside the container>. When set, AppArmor and
SELinux process labels are written to <path>/thread-self/attr/... (regular files the test prepared) instead
of the container's /proc, so that a test can check the exact bytes on a host that has neither LSM. It is
read by this Python module only (never by the init), and it is refused on a host where AppArmor or SELinux is
enabled, so it can never stand in for a real label. It changes nothing else (mountLabel still needs SELinux).
"""
import os

FAKE_PROC_ENV = "OCIRUNTIME_TEST_FAKE_LSM_PROC"

LSM_APPARMOR, LSM_SELINUX = 1, 2   # csrc/plan.h LSM_*
LSM_FAKE_PROC = 1                  # csrc/plan.h LSM_F_FAKE_PROC: test-only, see above


def _read(path, n=4096):
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return None


def _exists(path):
    return os.path.exists(path)


def _active():
    """The active LSMs from securityfs, or None when the list is not readable."""
    data = _read("/sys/kernel/security/lsm")
    if data is None:
        return None
    return set(data.decode(errors="replace").strip().split(","))


def _filesystems():
    return (_read("/proc/filesystems", 65536) or b"").decode(errors="replace")


def apparmor_enabled():
    if not _exists("/sys/kernel/security/apparmor"):
        return False
    buf = _read("/sys/module/apparmor/parameters/enabled", 16)
    if not buf or buf[:1] != b"Y":
        return False
    active = _active()
    return active is None or "apparmor" in active


def _mounted(fstype, writable=False):
    data = (_read("/proc/self/mountinfo", 1 << 20) or b"").decode(errors="replace")
    for line in data.splitlines():
        pre, sep, post = line.partition(" - ")
        fields = post.split()
        if sep and fields and fields[0] == fstype:
            opts = pre.split()[5].split(",") if len(pre.split()) > 5 else []
            if not writable or "ro" not in opts:
                return True
    return False


def selinux_enabled():
    if "\tselinuxfs\n" not in _filesystems():
        return False
    active = _active()
    if active is not None and "selinux" not in active:
        return False
    if not _mounted("selinuxfs", writable=True):
        return False
    cur = _read("/proc/thread-self/attr/current", 4096)
    return (cur or b"").rstrip(b"\0\n") != b"kernel"


def resctrl_available():
    return "\tresctrl\n" in _filesystems() and _mounted("resctrl")


def intel_rdt(linux):
    """linux.intelRdt: runc puts the container into a resctrl group for any intelRdt object (even {}), so it
    needs resctrl; with resctrl this runtime would still have to create the group (closID or the container
    id) under /sys/fs/resctrl, write schemata/l3CacheSchema/memBwSchema, add the init's pid to its tasks
    and remove the group on delete: not done yet, so it is refused either way, saying why."""
    from ociruntime.errors import ConfigError
    if linux.get("intelRdt") is None:
        return
    if not resctrl_available():
        raise ConfigError("/linux/intelRdt", "Intel RDT needs the resctrl filesystem, which is not available "
                                             "on this host (no resctrl in /proc/filesystems, or not mounted)")
    raise ConfigError("/linux/intelRdt", "Intel RDT is not supported by this runtime yet (resctrl is mounted, "
                                         "but ociruntime does not manage resctrl groups)")


def apparmor_attr():
    """The attr file below /proc/thread-self that takes "exec <profile>" (runc setProcAttr's fallback)."""
    if _exists("/proc/self/attr/apparmor/exec"):
        return "attr/apparmor/exec"
    return "attr/exec"


def _fake_proc():
    from ociruntime.errors import OciError
    fake = os.environ.get(FAKE_PROC_ENV)
    if not fake:
        return None
    if not fake.startswith("/") or "\0" in fake:
        raise OciError(f"{FAKE_PROC_ENV} (test only) must be an absolute path inside the container")
    if apparmor_enabled() or selinux_enabled():
        raise OciError(f"{FAKE_PROC_ENV} is a test-only setting and is refused on a host where AppArmor or "
                       "SELinux is enabled")
    return fake


def _check_label(value, pointer, source, what):
    from ociruntime.errors import ConfigError
    if any(c in value for c in "\0\n") or value != value.strip():
        raise ConfigError(pointer, f"invalid {what} {value!r}", source=source)


def process_labels(proc, pointer_base="/process", source="config.json", defaults=None):
    """-> [(lsm, flags, procroot, subpath, bytes)] for the init, or ConfigError when the field asks for an
    LSM this host does not have. defaults: the container's own labels (exec inherits them, as runc)."""
    from ociruntime.errors import ConfigError
    defaults = defaults or {}
    profile = proc.get("apparmorProfile") or defaults.get("apparmorProfile") or ""
    label = proc.get("selinuxLabel") or defaults.get("selinuxLabel") or ""
    if not profile and not label:
        return []
    fake = _fake_proc()
    out = []
    if profile:
        ptr = pointer_base + "/apparmorProfile"
        _check_label(profile, ptr, source, "AppArmor profile name")
        if not fake and not apparmor_enabled():
            raise ConfigError(ptr, "AppArmor is not enabled on this host, cannot apply the profile", source=source)
        out.append((LSM_APPARMOR, LSM_FAKE_PROC if fake else 0, fake or "/proc",
                    "thread-self/" + apparmor_attr(), ("exec " + profile).encode()))
    if label:
        ptr = pointer_base + "/selinuxLabel"
        _check_label(label, ptr, source, "SELinux label")
        if not fake and not selinux_enabled():
            raise ConfigError(ptr, "SELinux is not enabled on this host, cannot apply the label", source=source)
        out.append((LSM_SELINUX, LSM_FAKE_PROC if fake else 0, fake or "/proc", "thread-self/attr/exec",
                    label.encode()))
    return out


def mount_label(linux):
    """linux.mountLabel, checked: '' when absent. SELinux must be enabled (no test override)."""
    from ociruntime.errors import ConfigError
    label = linux.get("mountLabel") or ""
    if not label:
        return ""
    if any(c in label for c in '\0\n"\\') or label != label.strip():
        raise ConfigError("/linux/mountLabel", f"invalid SELinux mount label {label!r}")
    if not selinux_enabled():
        raise ConfigError("/linux/mountLabel", "SELinux is not enabled on this host, cannot apply the mount label")
    return label


def format_mount_label(data, label):
    """go-selinux FormatMountLabel: the label as a quoted context= option appended to the mount data."""
    if not label:
        return data
    opt = f'context="{label}"'
    return f"{data},{opt}" if data else opt


# runc: proc and sysfs are mounted without a label, mqueue gets it as the label of its root directory
# (setxattr security.selinux) instead, cgroup mounts have their own path; every other filesystem (tmpfs,
# devpts, the masked-directory tmpfs, ...) gets context="<label>". Bind mounts take no mount data.
NO_CONTEXT_FS = frozenset(("proc", "sysfs", "mqueue", "cgroup", "cgroup2"))
