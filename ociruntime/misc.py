"""spec and features."""
import json
import os
import sys

from ociruntime import OCI_VERSION, __version__
from ociruntime.errors import OciError

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def _unified_cgroup_host():
    """cgroup v2 alone (runc cgroups.IsCgroup2UnifiedMode): /sys/fs/cgroup is the unified hierarchy."""
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def default_spec(rootless=False, cgroupns=None):
    """The example config `runc spec` writes (runc 1.4 libcontainer/specconv/example.go): no ambient
    capabilities, and a cgroup namespace only on a cgroup v2 (unified) host, unless ``cgroupns`` says.
    The one default spec: the test harness's ``ociruntime.testing.default_config`` derives from it."""
    if cgroupns is None:
        cgroupns = _unified_cgroup_host()
    spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ociruntime",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount") + ("cgroup",) * cgroupns],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        # runc specconv.ToRootless: no network namespace, a user namespace mapping only our own ids,
        # /sys as a read-only rbind (sysfs needs a network namespace of our own), no uid=/gid= mount
        # options, no cgroup limits
        uid, gid = os.geteuid(), os.getegid()
        lx = spec["linux"]
        lx["namespaces"] = [n for n in lx["namespaces"] if n["type"] not in ("network", "user")] + [{"type": "user"}]
        lx["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        lx["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        del lx["resources"]
        for m in spec["mounts"]:
            if m["destination"] == "/sys":
                m.update({"type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
            elif "options" in m:
                m["options"] = [o for o in m["options"] if not o.startswith(("uid=", "gid="))]
    return spec


def cmd_spec(ctx):
    bundle = ctx.flag("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise OciError("File config.json exists. Remove it first")
    data = json.dumps(default_spec(ctx.flag("rootless")), indent="\t")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise OciError(f"open {path}: {e.strerror}")
    with os.fdopen(fd, "w") as f:
        f.write(data)
    return 0


def _kernel_at_least(major, minor):
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def _criu_min():
    """The least CRIU checkpoint/restore accepts here (4.1 on kernels >= 6.13), without importing the
    RPC client (protobuf) for `features`."""
    rel = os.uname().release.split("-")[0].split(".")
    try:
        new = (int(rel[0]), int(rel[1])) >= (6, 13)
    except (ValueError, IndexError):
        new = True
    return "4.1" if new else "3.15"


def features():
    """What this build implements, no more (runtime-spec features.md)."""
    from ociruntime import plan, seccomp
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": plan.MOUNT_OPTIONS,
        "linux": {
            "namespaces": sorted(plan.NAMESPACES),
            "capabilities": list(plan.CAPS),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True, "rdma": True},
            "seccomp": {
                "enabled": True,
                "actions": sorted(seccomp.ACTIONS),
                "operators": sorted(seccomp.OPS),
                "archs": list(seccomp.ARCHS),
                "knownFlags": sorted(seccomp.FLAGS),
                "supportedFlags": seccomp.supported_flags(),
            },
            # features-linux.md: whether the runtime implements them, irrelevant to the host (this one may
            # have neither: configs that ask for them are then refused, saying so; ociruntime/lsm.py)
            "apparmor": {"enabled": True},
            "selinux": {"enabled": True},
            "memoryPolicy": {"modes": sorted(plan.MPOL_MODES), "flags": sorted(plan.MPOL_FLAGS)},
            "intelRdt": {"enabled": False},
            # idmapped bind mounts (mounts[].uidMappings/gidMappings, idmap/ridmap): mount_setattr, Linux 5.12
            "mountExtensions": {"idmap": {"enabled": _kernel_at_least(5, 12)}},
            "netDevices": {"enabled": True},
        },
        "annotations": {"org.opencontainers.runc.version": __version__,
                        "io.github.ociruntime.version": __version__,
                        # checkpoint/restore through CRIU (runc's key); the CRIU it needs on this kernel
                        "org.opencontainers.runc.checkpoint.enabled": "true",
                        "io.github.ociruntime.criu.minVersion": _criu_min()},
    }


def cmd_features(ctx):
    sys.stdout.write(json.dumps(features(), indent=4) + "\n")
    return 0
