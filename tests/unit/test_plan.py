"""plan.py (config -> binary plan) and its C decoder (csrc/init/plan.c).

* parse_mount_options: every option of runc's tables (numbers written out here, not taken from
  plan.py), propagation, recursive mount_setattr attributes, unknown options -> fs data;
* caps_mask against the kernel's capability numbers;
* the encoder round trip: plans built by plan.build() are decoded by the real
  `ociruntime-init --check-plan` (record counts) and, field by field, by a dump build of the same
  decoder (csrc/fuzz/plan_fuzz.c -DPLAN_DUMP, with ASan/UBSan when the compiler supports it);
* malformed plans (every truncation, random mutations with a fixed seed, huge lengths, embedded
  NULs, bad headers) are rejected with `error: …` and exit 1 — never a crash.
"""

import copy
import itertools
import json
import os
import random
import re
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from ociruntime import plan
from ociruntime.errors import ConfigError
from ociruntime.misc import default_spec

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
INIT = os.path.join(REPO, "ociruntime", "libexec", "ociruntime-init")
HARNESS = os.path.join(REPO, "csrc", "fuzz", "plan_fuzz.c")
FDS = {"sync": 3, "fifo": 5, "close_from": 3}

# --- Linux constants, written out (independent of plan.py) -------------------------------------
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = \
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_SILENT = 0x100, 0x400, 0x800, 0x1000, 0x4000, 0x8000
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 0x20000, 0x40000, 0x80000, 0x100000
MS_RELATIME, MS_I_VERSION, MS_STRICTATIME, MS_LAZYTIME = 0x200000, 0x800000, 0x1000000, 0x2000000
A_RDONLY, A_NOSUID, A_NODEV, A_NOEXEC, A__ATIME, A_NOATIME, A_STRICTATIME, A_NODIRATIME, A_NOSYMFOLLOW = \
    0x1, 0x2, 0x4, 0x8, 0x70, 0x10, 0x20, 0x80, 0x200000
CLONE = {"mount": 0x20000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
         "user": 0x10000000, "pid": 0x20000000, "network": 0x40000000, "time": 0x80}
S_IFCHR, S_IFBLK, S_IFIFO = 0o020000, 0o060000, 0o010000
ALL_OPS = {v for k, v in vars(plan).items() if k.startswith("OP_")}
SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["getcwd", "chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}


def _seccomp_bpf(sc):
    """The compiled filter, or None when this build cannot compile seccomp profiles."""
    try:
        from ociruntime import seccomp
        return seccomp.compile_profile(sc)[0]
    except Exception:
        return None

# option -> (flags set, flags cleared): runc libcontainer/specconv mountFlags
MOUNT_FLAG_TABLE = {
    "async": (0, MS_SYNCHRONOUS), "atime": (0, MS_NOATIME), "bind": (MS_BIND, 0), "defaults": (0, 0),
    "dev": (0, MS_NODEV), "diratime": (0, MS_NODIRATIME), "dirsync": (MS_DIRSYNC, 0),
    "exec": (0, MS_NOEXEC), "iversion": (MS_I_VERSION, 0), "lazytime": (MS_LAZYTIME, 0),
    "loud": (0, MS_SILENT), "mand": (MS_MANDLOCK, 0), "noatime": (MS_NOATIME, 0),
    "nodev": (MS_NODEV, 0), "nodiratime": (MS_NODIRATIME, 0), "noexec": (MS_NOEXEC, 0),
    "noiversion": (0, MS_I_VERSION), "nolazytime": (0, MS_LAZYTIME), "nomand": (0, MS_MANDLOCK),
    "norelatime": (0, MS_RELATIME), "nostrictatime": (0, MS_STRICTATIME), "nosuid": (MS_NOSUID, 0),
    "nosymfollow": (MS_NOSYMFOLLOW, 0), "rbind": (MS_BIND | MS_REC, 0), "relatime": (MS_RELATIME, 0),
    "remount": (MS_REMOUNT, 0), "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY), "silent": (MS_SILENT, 0),
    "strictatime": (MS_STRICTATIME, 0), "suid": (0, MS_NOSUID), "sync": (MS_SYNCHRONOUS, 0),
    "symfollow": (0, MS_NOSYMFOLLOW),
}
PROPAGATION_TABLE = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# option -> (attr_set, attr_clr) for mount_setattr(AT_RECURSIVE); atime values need all of
# MOUNT_ATTR__ATIME in attr_clr (mount_setattr(2))
RECURSIVE_TABLE = {
    "rro": (A_RDONLY, 0), "rrw": (0, A_RDONLY), "rnosuid": (A_NOSUID, 0), "rsuid": (0, A_NOSUID),
    "rnodev": (A_NODEV, 0), "rdev": (0, A_NODEV), "rnoexec": (A_NOEXEC, 0), "rexec": (0, A_NOEXEC),
    "rnodiratime": (A_NODIRATIME, 0), "rdiratime": (0, A_NODIRATIME),
    "rnosymfollow": (A_NOSYMFOLLOW, 0), "rsymfollow": (0, A_NOSYMFOLLOW),
    "rrelatime": (0, A__ATIME), "rnoatime": (A_NOATIME, A__ATIME), "rstrictatime": (A_STRICTATIME, A__ATIME),
    # not in runc's table in a usable form (runc's "ratime"/"rnostrictatime" clear a partial
    # __ATIME, which mount_setattr rejects with EINVAL); here they select the kernel default relatime
    "ratime": (0, A__ATIME), "rnostrictatime": (0, A__ATIME), "rnorelatime": (0, A__ATIME),
}

KERNEL_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}


# === parse_mount_options =========================================================================

@pytest.mark.parametrize("opt", sorted(MOUNT_FLAG_TABLE))
def test_mount_flag_option(opt):
    s, c = MOUNT_FLAG_TABLE[opt]
    assert plan.parse_mount_options([opt]) == (s, c, [], 0, 0, [], set())


@pytest.mark.parametrize("opt", sorted(PROPAGATION_TABLE))
def test_propagation_option(opt):
    assert plan.parse_mount_options([opt]) == (0, 0, [PROPAGATION_TABLE[opt]], 0, 0, [], set())


@pytest.mark.parametrize("opt", sorted(RECURSIVE_TABLE))
def test_recursive_attr_option(opt):
    s, c = RECURSIVE_TABLE[opt]
    assert plan.parse_mount_options([opt]) == (0, 0, [], s, c, [], set())


def test_tables_cover_the_advertised_options():
    known = set(MOUNT_FLAG_TABLE) | set(PROPAGATION_TABLE) | set(RECURSIVE_TABLE) | {"tmpcopyup", "idmap", "ridmap"}
    assert set(plan.MOUNT_OPTIONS) == known
    assert plan.MOUNT_OPTIONS == sorted(plan.MOUNT_OPTIONS)


def test_none_and_empty():
    assert plan.parse_mount_options(None) == (0, 0, [], 0, 0, [], set())
    assert plan.parse_mount_options([]) == (0, 0, [], 0, 0, [], set())


def test_unknown_options_are_fs_data_in_order():
    opts = ["nosuid", "mode=755", "size=65536k", "newinstance", "ro", "uid=0", "X-mount.mkdir", "idmapx"]
    flags, clear, prop, aset, aclr, data, ext = plan.parse_mount_options(opts)
    assert flags == MS_NOSUID | MS_RDONLY
    assert data == ["mode=755", "size=65536k", "newinstance", "uid=0", "X-mount.mkdir", "idmapx"]
    assert (prop, aset, aclr, ext) == ([], 0, 0, set())


def test_idmap_options_are_extensions():
    # config.md: idmap/ridmap "SHOULD NOT be passed to the underlying mount(2) call"
    assert plan.parse_mount_options(["rbind", "idmap", "ridmap"])[5:] == ([], {"idmap", "ridmap"})


def test_options_are_case_sensitive():
    # runc matches exactly; "RO" is handed to the filesystem (which will refuse it)
    assert plan.parse_mount_options(["RO", "Bind"])[5] == ["RO", "Bind"]


def test_propagation_keeps_every_entry_in_order():
    assert plan.parse_mount_options(["rprivate", "shared", "rslave"])[2] == \
        [MS_PRIVATE | MS_REC, MS_SHARED, MS_SLAVE | MS_REC]


def test_tmpcopyup_is_an_extension():
    assert plan.parse_mount_options(["tmpcopyup", "mode=755"]) == (0, 0, [], 0, 0, ["mode=755"], {"tmpcopyup"})


def test_mount_flags_last_one_wins():
    opts = ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime", "sync", "async",
            "bind", "strictatime", "nostrictatime", "mand", "nomand", "relatime", "norelatime"]
    for seq in itertools.chain(itertools.permutations(opts, 2), itertools.permutations(opts[:8], 3)):
        flags, clear = plan.parse_mount_options(list(seq))[:2]
        want = 0
        for o in seq:
            st, c = MOUNT_FLAG_TABLE[o]
            want = (want | st) & ~c
        assert flags == want, seq
        assert flags & clear == 0, seq


def _apply_attrs(mnt, aset, aclr):
    """The kernel's mount_setattr: validity rules of build_mount_kattr(), then (mnt & ~clr) | set."""
    if aclr & A__ATIME:
        if aclr & A__ATIME != A__ATIME:
            raise OSError("EINVAL: partial MOUNT_ATTR__ATIME in attr_clr")
        if aset & A__ATIME not in (0, A_NOATIME, A_STRICTATIME):
            raise OSError("EINVAL: bad atime value")
    elif aset & A__ATIME:
        raise OSError("EINVAL: atime in attr_set without MOUNT_ATTR__ATIME in attr_clr")
    return (mnt & ~aclr) | aset


_REC = sorted(RECURSIVE_TABLE)


def _check_recursive(seq):
    _, _, _, aset, aclr, data, _ = plan.parse_mount_options(list(seq))
    assert data == []
    for start in (0, A_RDONLY | A_NOSUID | A_NOATIME, A_STRICTATIME | A_NODEV):
        result = _apply_attrs(start, aset, aclr)
        # per attribute, the last option that mentions it decides
        for bit in (A_RDONLY, A_NOSUID, A_NODEV, A_NOEXEC, A_NODIRATIME, A_NOSYMFOLLOW):
            last = [o for o in seq if (RECURSIVE_TABLE[o][0] | RECURSIVE_TABLE[o][1]) & bit]
            if last:
                assert bool(result & bit) == bool(RECURSIVE_TABLE[last[-1]][0] & bit), (seq, bit)
            else:
                assert result & bit == start & bit, (seq, bit)
        atime = [o for o in seq if RECURSIVE_TABLE[o][1] & A__ATIME]
        if atime:
            assert result & A__ATIME == RECURSIVE_TABLE[atime[-1]][0] & A__ATIME, seq
        else:
            assert result & A__ATIME == start & A__ATIME, seq


def test_recursive_attrs_are_valid_for_mount_setattr_and_last_one_wins():
    """Every sequence gives an (attr_set, attr_clr) that mount_setattr accepts, with last-one-wins."""
    for seq in itertools.permutations(["rro", "rrw", "rnoatime", "rstrictatime", "rrelatime", "ratime",
                                       "rnosuid", "rsuid"], 3):
        _check_recursive(seq)
    for seq in itertools.permutations(_REC, 2):
        _check_recursive(seq)
    _check_recursive(["rstrictatime", "rnoatime", "rro", "rrw", "rro"])


def test_random_recursive_sequences_are_valid():
    rnd = random.Random(1)
    for _ in range(3000):
        _check_recursive([rnd.choice(_REC) for _ in range(rnd.randint(1, 6))])


# === caps ========================================================================================

def test_caps_table_matches_kernel_numbers():
    assert plan.CAP_BITS == KERNEL_CAPS
    hdr = "/usr/include/linux/capability.h"
    if os.path.exists(hdr):
        with open(hdr) as f:
            defs = dict(re.findall(r"^#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$", f.read(), re.M))
        for name, bit in plan.CAP_BITS.items():
            if name in defs:
                assert int(defs[name]) == bit, name


def test_caps_mask():
    assert plan.caps_mask(None, "/p") == 0
    assert plan.caps_mask([], "/p") == 0
    assert plan.caps_mask(["CAP_CHOWN"], "/p") == 1
    assert plan.caps_mask(["CAP_KILL", "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"], "/p") == \
        (1 << 5) | (1 << 29) | (1 << 10)
    assert plan.caps_mask(["CAP_KILL", "CAP_KILL"], "/p") == 1 << 5
    assert plan.caps_mask(["CAP_CHECKPOINT_RESTORE"], "/p") == 1 << 40
    assert plan.caps_mask(list(KERNEL_CAPS), "/p") == (1 << 41) - 1


@pytest.mark.parametrize("bad", ["CAP_FOO", "cap_kill", "KILL", "", "CAP_KILL "])
def test_caps_mask_unknown(bad):
    with pytest.raises(ConfigError) as ei:
        plan.caps_mask(["CAP_KILL", bad], "/process/capabilities/bounding")
    assert ei.value.pointer == "/process/capabilities/bounding/1"
    assert "unknown capability" in ei.value.reason


# === building plans ==============================================================================

@pytest.fixture
def bundle(tmp_path):
    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    (b / "data").mkdir()
    return str(b)


def minimal():
    return {"ociVersion": "1.3.0", "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["true"], "env": ["PATH=/bin"]}}


def spec():
    s = default_spec(cgroupns=True)
    s["process"]["terminal"] = False
    return s


def full(bundle):
    """Every op code at least once."""
    s = spec()
    s["hostname"] = "host-ü"
    s["domainname"] = "example.org"
    p = s["process"]
    p["args"] = ["sh", "-c", "echo 'a b' \"c\"\\n", ""]
    p["env"] = ["PATH=/bin", "EMPTY=", "U=ünïcode", "TAB=a\tb"]
    p["cwd"] = "/work dir"
    p["user"] = {"uid": 1000, "gid": 100, "umask": 0o027, "additionalGids": [10, 20, 4294967294]}
    p["oomScoreAdj"] = -500
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 18446744073709551615},
                    {"type": "RLIMIT_RTTIME", "soft": 5, "hard": 6}]
    p["capabilities"] = {"bounding": ["CAP_KILL", "CAP_SYS_ADMIN"], "effective": ["CAP_KILL"],
                         "permitted": ["CAP_KILL", "CAP_CHECKPOINT_RESTORE"], "inheritable": ["CAP_CHOWN"],
                         "ambient": []}
    p["noNewPrivileges"] = True
    p["terminal"] = True
    p["consoleSize"] = {"height": 50, "width": 132}
    p["scheduler"] = {"policy": "SCHED_DEADLINE", "nice": -3, "flags": ["SCHED_FLAG_RESET_ON_FORK",
                                                                       "SCHED_FLAG_UTIL_CLAMP_MAX"],
                      "runtime": 1 << 20, "deadline": 1 << 30, "period": (1 << 62) + 1}
    p["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 7}
    p["execCPUAffinity"] = {"initial": "1", "final": "0-3"}      # exec only: the init's affinity is reset
    lx = s["linux"]
    lx["personality"] = {"domain": "LINUX32"}
    lx["memoryPolicy"] = {"mode": "MPOL_INTERLEAVE", "nodes": "0,63-64,1023", "flags": ["MPOL_F_STATIC_NODES"]}
    if _seccomp_bpf(SECCOMP) is not None:
        lx["seccomp"] = SECCOMP
    lx["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "user"},
                        {"type": "time"}, {"type": "network", "path": "/proc/1/ns/net"},
                        {"type": "ipc", "path": "/run/ipc ns"}]
    lx["netDevices"] = {"eth1": {"name": "ctr%d"}, "veth7": {}, "dummy0": {"name": "d0"}}
    lx["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    lx["timeOffsets"] = {"monotonic": {"secs": -86400, "nanosecs": 5}, "boottime": {"secs": 7, "nanosecs": 999999999}}
    lx["sysctl"] = {"kernel.msgmax": "8192", "net.ipv4.ip_forward": "1"}
    lx["rootfsPropagation"] = "rshared"
    lx["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
                      "uid": 5, "gid": 6},
                     {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
                     {"path": "/dev/myfifo", "type": "p"},
                     {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o644}]
    s["mounts"].append({"destination": "/data", "type": "bind", "source": "data",
                        "options": ["rbind", "ro", "rprivate", "rnosuid", "rnoatime", "nodev"]})
    s["mounts"].append({"destination": "/plain", "type": "none", "source": os.path.join(bundle, "data"),
                        "options": ["bind", "remount", "shared", "slave"]})
    # idmapped: explicit maps (recursive), the container's maps (idmap alone), the first maps again
    idm = {"uidMappings": [{"containerID": 1000, "hostID": 3000, "size": 2}],
           "gidMappings": [{"containerID": 2000, "hostID": 4000, "size": 1}]}
    s["mounts"].append({"destination": "/idm", "type": "bind", "source": "data", "options": ["rbind", "ridmap"],
                        **idm})
    s["mounts"].append({"destination": "/idm2", "source": "data", "options": ["bind", "idmap"]})
    s["mounts"].append({"destination": "/idm3", "type": "bind", "source": "data", "options": ["bind"], **idm})
    s["hooks"] = {
        "prestart": [{"path": "/bin/prestart"}],
        "createContainer": [{"path": "/bin/cc1", "args": ["cc1", "x"], "env": ["A=1"], "timeout": 7},
                            {"path": "/bin/cc2"}],
        "startContainer": [{"path": "/bin/sc", "args": ["sc"], "timeout": -1}],
        "poststart": [{"path": "/bin/poststart"}], "poststop": [{"path": "/bin/poststop"}],
    }
    return s


def build(config, bundle, opts=None, cgroup_paths=None):
    return plan.build(config, bundle, dict(FDS), opts or {}, {} if cgroup_paths is None else cgroup_paths)


def check_plan_many(datas, tmp_path, workers=4):
    """[(rc, stdout)] of `ociruntime-init --check-plan` for each plan (parallel)."""
    d = tmp_path / "check"
    d.mkdir(exist_ok=True)
    paths = []
    for i, data in enumerate(datas):
        p = d / f"{i}.plan"
        p.write_bytes(data)
        paths.append(str(p))

    def one(path):
        r = subprocess.run([INIT, "--check-plan", path], capture_output=True, timeout=30)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, paths))


def check_plan(data, tmp_path):
    return check_plan_many([data], tmp_path)[0]


def counts(line):
    assert line.startswith("ok "), line
    out = {}
    for kv in line.splitlines()[0].split()[1:]:
        k, v = kv.split("=")
        out[k] = int(v, 16) if k == "ns" else int(v)
    return out


def assert_not_crashed(rc, out, err, what=""):
    assert 0 <= rc < 128, f"decoder crashed (exit {rc}) on {what}: {out}{err}"


def assert_rejected(rc, out, err, what=""):
    assert_not_crashed(rc, out, err, what)
    assert rc == 1, f"{what}: accepted: {out}"
    assert out.startswith("error: ") and out.count("\n") == 1, f"{what}: {out!r}"


pytestmark = pytest.mark.skipif(not os.access(INIT, os.X_OK), reason=f"{INIT} not built (make build)")


def test_build_returns_a_plan(bundle):
    p = build(spec(), bundle)
    assert p.data.startswith(b"OCIP" + struct.pack("=I", 1))
    assert p.rootfs == os.path.realpath(os.path.join(bundle, "rootfs"))
    assert p.new_ns == sum(CLONE[t] for t in ("pid", "network", "ipc", "uts", "mount", "cgroup"))
    assert p.terminal is False
    assert p.joins == [] and p.uid_map is None and (p.host_root_uid, p.host_root_gid) == (0, 0)


def test_build_user_namespace_facts(bundle):
    p = build(full(bundle), bundle)
    assert p.uid_map == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert (p.host_root_uid, p.host_root_gid) == (100000, 200000)
    assert p.joins == [(CLONE["network"], "/proc/1/ns/net"), (CLONE["ipc"], "/run/ipc ns")]
    assert set(p.hooks) == {"prestart", "createContainer", "startContainer", "poststart", "poststop"}


def _cfg_dev_bind(bundle):
    s = spec()
    s["mounts"].append({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]})
    return s


def _cfg_no_mountns(bundle):
    s = minimal()
    s["linux"] = {"namespaces": [{"type": "pid"}, {"type": "uts"}]}
    s["hostname"] = "h"
    return s


def _cfg_many(bundle):
    s = spec()
    s["process"]["args"] = [f"arg{i}" for i in range(50)]
    s["process"]["env"] = [f"V{i}={'x' * i}" for i in range(300)]
    s["mounts"] += [{"destination": f"/m{i}", "type": "tmpfs", "source": "tmpfs", "options": ["size=1k"]}
                    for i in range(100)]
    s["linux"]["maskedPaths"] += [f"/proc/m{i}" for i in range(40)]
    s["linux"]["readonlyPaths"] += [f"/proc/r{i}" for i in range(20)]
    return s


def _cfg_cgroup_v2(bundle, cgroupns=True):
    s = spec()
    if not cgroupns:
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "cgroup"]
    return s


def _ns(*types):
    return sum(CLONE[t] for t in types)


DEFAULT_NS = ("pid", "network", "ipc", "uts", "mount", "cgroup")

# (name, config factory, cgroup_paths, expected --check-plan counts)
ROUND_TRIP = [
    ("minimal", lambda b: minimal(), {},
     dict(mounts=0, devices=0, masked=0, readonly=0, args=1, env=1, hooks=0, joins=0, ns=0)),
    ("no-process-env", lambda b: {"root": {"path": "rootfs"}, "process": {"cwd": "/", "args": ["x"]}}, {},
     dict(mounts=0, devices=0, masked=0, readonly=0, args=1, env=0, hooks=0, joins=0, ns=0)),
    ("runc-spec", lambda b: spec(), {},
     dict(mounts=7, devices=6, masked=10, readonly=5, args=1, env=2, hooks=0, joins=0, ns=_ns(*DEFAULT_NS))),
    ("full", full, {},
     dict(mounts=12, devices=9, masked=10, readonly=5, args=4, env=4, hooks=3, joins=2,
          ns=_ns("pid", "mount", "uts", "user", "time"), idmapped=3)),
    ("dev-bind", _cfg_dev_bind, {},
     dict(mounts=8, devices=0, masked=10, readonly=5, args=1, env=2, hooks=0, joins=0, ns=_ns(*DEFAULT_NS))),
    ("no-mountns", _cfg_no_mountns, {},
     dict(mounts=0, devices=0, masked=0, readonly=0, args=1, env=1, hooks=0, joins=0, ns=_ns("pid", "uts"))),
    ("many", _cfg_many, {},
     dict(mounts=107, devices=6, masked=50, readonly=25, args=50, env=300, hooks=0, joins=0,
          ns=_ns(*DEFAULT_NS))),
    ("cgroup-v2-cgroupns", _cfg_cgroup_v2, {"": "/sys/fs/cgroup/x"},
     dict(mounts=7, devices=6, masked=10, readonly=5, args=1, env=2, hooks=0, joins=0, ns=_ns(*DEFAULT_NS))),
    ("cgroup-v2-no-cgroupns", lambda b: _cfg_cgroup_v2(b, False), {"": "/sys/fs/cgroup/x"},
     dict(mounts=7, devices=6, masked=10, readonly=5, args=1, env=2, hooks=0, joins=0,
          ns=_ns("pid", "network", "ipc", "uts", "mount"))),
    ("cgroup-v1", lambda b: spec(),
     {"cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/x", "memory": "/sys/fs/cgroup/memory/x",
      "pids": "/sys/fs/cgroup/pids/x", "": "/sys/fs/cgroup/unified/x"},
     dict(mounts=10, devices=6, masked=10, readonly=5, args=1, env=2, hooks=0, joins=0, ns=_ns(*DEFAULT_NS))),
]


@pytest.mark.parametrize("name, factory, cg, want", ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_check_plan_counts(bundle, tmp_path, name, factory, cg, want):
    p = build(factory(bundle), bundle, cgroup_paths=cg)
    rc, out, err = check_plan(p.data, tmp_path)
    assert rc == 0, out + err
    assert out.count("\n") == 1
    assert counts(out) == {"idmapped": 0, **want}


def test_build_is_deterministic(bundle):
    a = build(full(bundle), bundle).data
    b = build(copy.deepcopy(full(bundle)), bundle).data
    assert a == b


def test_build_does_not_modify_the_config(bundle):
    cfg = full(bundle)
    before = copy.deepcopy(cfg)
    build(cfg, bundle)
    assert cfg == before


# --- build errors ----------------------------------------------------------------------------

def test_mounts_without_a_mount_namespace_are_planned(bundle, tmp_path):
    """No mount namespace: the mounts are still carried out, below the
    rootfs in the runtime's own namespace (delete unmounts them; tests/integration/test_no_mountns.py)."""
    s = _cfg_no_mountns(bundle)
    s["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    p = build(s, bundle)
    rc, out, err = check_plan(p.data, tmp_path)
    assert rc == 0 and "mounts=1" in out, (out, err)


def test_joined_mount_namespace_counts_as_one(bundle, tmp_path):
    s = spec()
    s["linux"]["namespaces"] = [{"type": "mount", "path": "/proc/1/ns/mnt"}]
    p = build(s, bundle)
    rc, out, err = check_plan(p.data, tmp_path)
    assert counts(out)["joins"] == 1 and counts(out)["mounts"] == 7 and counts(out)["ns"] == 0


def test_bind_source_must_exist(bundle):
    s = spec()
    s["mounts"].append({"destination": "/x", "type": "bind", "source": "nosuch", "options": ["rbind"]})
    with pytest.raises(ConfigError) as ei:
        build(s, bundle)
    assert ei.value.pointer == "/mounts/7/source"
    assert os.path.join(bundle, "nosuch") in ei.value.reason


def test_unknown_capability_in_build(bundle):
    s = spec()
    s["process"]["capabilities"]["effective"] = ["CAP_KILL", "CAP_NOPE"]
    with pytest.raises(ConfigError) as ei:
        build(s, bundle)
    assert ei.value.pointer == "/process/capabilities/effective/1"


@pytest.mark.parametrize("where, pointer", [
    (lambda s: s["process"]["env"].append("A=\0"), "/process/env/2"),
    (lambda s: s["process"]["args"].append("a\0b"), "/process/args/1"),
    (lambda s: s["linux"].__setitem__("sysctl", {"kernel.x\0": "1"}), "/linux/sysctl"),
    (lambda s: s["linux"].__setitem__("sysctl", {"kernel.x": "1\0"}), "/linux/sysctl/kernel.x"),
    (lambda s: s["mounts"][0].__setitem__("destination", "/pr\0c"), "/mounts/0/destination"),
    (lambda s: s["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/\0user"}),
     "/linux/namespaces/6/path"),
])
def test_nul_is_a_config_error(bundle, where, pointer):
    s = spec()
    where(s)
    with pytest.raises(ConfigError) as ei:
        build(s, bundle)
    assert ei.value.pointer == pointer


@pytest.mark.parametrize("where", [
    lambda s: s.__setitem__("hostname", "h\0"),
    lambda s: s["process"].__setitem__("cwd", "/\0"),
    lambda s: s["linux"]["maskedPaths"].append("/proc/\0"),
    lambda s: s["mounts"][0].__setitem__("type", "pr\0c"),
    lambda s: s["mounts"][1]["options"].append("mode=\0"),
])
def test_nul_never_reaches_the_plan(bundle, where):
    s = spec()
    where(s)
    with pytest.raises((ValueError, ConfigError)):
        build(s, bundle)


def test_encoder_refuses_nul():
    with pytest.raises(ValueError):
        plan.Encoder.s("a\0b")
    assert plan.Encoder.s("ab") == struct.pack("=I", 3) + b"ab\0"
    assert plan.Encoder.s("") == struct.pack("=I", 1) + b"\0"
    assert plan.Encoder.s("ü") == struct.pack("=I", 3) + "ü".encode() + b"\0"


def _idmap_cfg(bundle, **mount):
    s = spec()
    s["mounts"].append({"destination": "/x", "type": "bind", "source": "data", "options": ["bind"], **mount})
    return s


MAPS = {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}]}


@pytest.mark.parametrize("mount,pointer,reason", [
    ({"type": "tmpfs", "source": "tmpfs", "options": [], **MAPS}, "uidMappings", "only supported for bind mounts"),
    ({"type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}, "options", "only supported for bind mounts"),
    ({"uidMappings": [], "gidMappings": MAPS["gidMappings"]}, "uidMappings", "both uidMappings and gidMappings"),
    ({"uidMappings": MAPS["uidMappings"], "gidMappings": []}, "gidMappings", "both uidMappings and gidMappings"),
    ({"options": ["rbind", "ridmap"]}, "options", "needs a user namespace"),
])
def test_idmap_refused_in_build(bundle, mount, pointer, reason):
    with pytest.raises(ConfigError) as ei:
        build(_idmap_cfg(bundle, **mount), bundle)
    n = len(spec()["mounts"])
    assert ei.value.pointer == f"/mounts/{n}/{pointer}" and reason in ei.value.reason


def test_idmap_joined_userns_uses_the_namespace_itself(bundle):
    s = _idmap_cfg(bundle, options=["bind", "idmap"])
    s["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    p = build(s, bundle)
    assert [k for k, _ in p.idmap_userns] == [("path", "/proc/1/ns/user")]


def test_idmap_mappings_without_userns_and_without_option(bundle):
    # runc: the mappings alone make the mount idmapped; no user namespace is needed
    p = build(_idmap_cfg(bundle, **MAPS), bundle)
    assert [k for k, _ in p.idmap_userns] == [("maps", ((0, 1000, 1),), ((0, 2000, 1),))]
    assert p.data.count(struct.pack("=I", plan.OP_MOUNT_IDMAP)) >= 1


def test_tmpcopyup_is_not_silently_ignored(bundle):
    s = spec()
    s["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]})
    without = build(s, bundle).data
    s["mounts"][-1]["options"].append("tmpcopyup")
    assert "tmpcopyup" in plan.MOUNT_OPTIONS
    assert build(s, bundle).data != without


# === field-level round trip through the C decoder ================================================

def _compiler():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


@pytest.fixture(scope="module")
def plan_dump(tmp_path_factory):
    """csrc/fuzz/plan_fuzz.c built with -DPLAN_DUMP (ASan+UBSan if the compiler has them)."""
    cc = _compiler()
    if not cc:
        pytest.skip("no C compiler (cc/gcc/clang) on this host's PATH")
    out = str(tmp_path_factory.mktemp("dump") / "plan_dump")
    base = [cc, "-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-DPLAN_DUMP", "-o", out, HARNESS]
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    r = subprocess.run(base[:1] + san + base[1:], capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run(base, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return out


def dump_many(tool, datas, tmp_path):
    d = tmp_path / "dump"
    d.mkdir(exist_ok=True)
    paths = []
    for i, data in enumerate(datas):
        p = d / f"{i}.plan"
        p.write_bytes(data)
        paths.append(str(p))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=98")
    lines = []
    # keep argv short
    for i in range(0, len(paths), 500):
        r = subprocess.run([tool, *paths[i:i + 500]], capture_output=True, env=env, timeout=120)
        err = r.stderr.decode(errors="replace")
        assert r.returncode in (0, 1), f"dump tool failed (exit {r.returncode}):\n{err[-4000:]}"
        assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]
        out = r.stdout.decode(errors="surrogateescape")   # accepted mutations may hold any bytes
        assert out.endswith("\n") or not out
        lines += out.split("\n")[:-1]
    assert len(lines) == len(datas)
    return lines


def decode(tool, data, tmp_path):
    (line,) = dump_many(tool, [data], tmp_path)
    assert not line.startswith("error:"), line
    return json.loads(line)


def test_round_trip_all_fields(plan_dump, bundle, tmp_path):
    cfg = full(bundle)
    d = decode(plan_dump, build(cfg, bundle, opts={"no_pivot": True}).data, tmp_path)
    rootfs = os.path.realpath(os.path.join(bundle, "rootfs"))

    assert (d["sync_fd"], d["fifo_fd"], d["console_fd"], d["close_from"]) == (3, 5, -1, 3)
    assert d["joins"] == [{"flag": CLONE["network"], "path": "/proc/1/ns/net"},
                          {"flag": CLONE["ipc"], "path": "/run/ipc ns"}]
    assert d["new_ns"] == _ns("pid", "mount", "uts", "user", "time")
    assert d["timens"] == [-86400, 5, 7, 999999999]
    assert d["oom"] == -500
    assert d["rootfs"] == rootfs
    assert d["root_propagation"] == MS_SHARED | MS_REC
    assert d["root_flags"] == 1 | 2           # readonly, no_pivot

    m = {x["dst"]: x for x in d["mounts"]}
    assert [x["dst"] for x in d["mounts"]] == [x["destination"] for x in cfg["mounts"]]
    assert m["/proc"] == {"src": "proc", "dst": "/proc", "fstype": "proc", "data": "", "flags": 0, "kind": 0,
                          "attr_set": 0, "attr_clr": 0, "pflags": []}
    assert m["/dev"]["data"] == "mode=755,size=65536k"
    assert m["/dev"]["flags"] == MS_NOSUID | MS_STRICTATIME
    assert m["/dev/pts"]["data"] == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert m["/sys"]["flags"] == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY
    # the cgroup mount without cgroup paths: a tmpfs
    assert (m["/sys/fs/cgroup"]["fstype"], m["/sys/fs/cgroup"]["data"]) == ("tmpfs", "mode=755")
    assert m["/sys/fs/cgroup"]["flags"] == MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME
    # kind 2 (rbind), plus MOUNT_FROM_RUNTIME (0x400) where the bundle's dir is out of the container
    # root's reach (pytest's 0700 tmp dirs): cloned by stage 1
    assert m["/data"]["kind"] & 0xff == 2 and m["/data"]["kind"] & ~0x4ff == 0
    assert m["/data"] == {"src": os.path.join(bundle, "data"), "dst": "/data", "fstype": "", "data": "",
                          "flags": MS_BIND | MS_REC | MS_RDONLY | MS_NODEV, "kind": m["/data"]["kind"],
                          "attr_set": A_NOSUID | A_NOATIME, "attr_clr": A__ATIME,
                          "pflags": [MS_PRIVATE | MS_REC]}
    assert m["/plain"]["kind"] & 0xff == 1 and m["/plain"]["flags"] == MS_BIND     # MS_REMOUNT is not passed
    assert m["/plain"]["pflags"] == [MS_SHARED, MS_SLAVE]
    # idmapped mounts: fd slots after the fixed ones (sync 3, fifo 5), one per distinct mapping
    idx = {x["destination"]: i for i, x in enumerate(cfg["mounts"])}
    assert "idmap" not in m["/data"] and "idmap" not in m["/proc"]
    assert m["/idm"]["idmap"] == {"fd": 6, "flags": 1, "index": idx["/idm"]}
    assert m["/idm"]["kind"] == 2 and m["/idm"]["data"] == ""        # ridmap is never mount(2) data
    assert m["/idm2"]["idmap"] == {"fd": 7, "flags": 0, "index": idx["/idm2"]}
    assert m["/idm3"]["idmap"] == {"fd": 6, "flags": 0, "index": idx["/idm3"]}
    p = build(cfg, bundle)
    assert p.idmap_userns == [
        (("maps", ((1000, 3000, 2),), ((2000, 4000, 1),)), f"/mounts/{idx['/idm']}"),
        (("maps", ((0, 100000, 65536),), ((0, 200000, 65536),)), f"/mounts/{idx['/idm2']}")]

    devs = {x["path"]: x for x in d["devices"]}
    assert set(devs) == {"/dev/null", "/dev/random", "/dev/full", "/dev/tty", "/dev/zero", "/dev/urandom",
                         "/dev/fuse", "/dev/sda", "/dev/myfifo"}
    assert devs["/dev/zero"] == {"path": "/dev/zero", "mode": S_IFCHR | 0o666, "major": 1, "minor": 5,
                                 "uid": 0, "gid": 0, "bind": 1}      # user namespace -> bind mounted
    assert devs["/dev/null"]["mode"] == S_IFCHR | 0o644          # the config overrides the default
    # a config device in a new user namespace, made by root in the initial one: stage-1 makes it outside
    # the user namespace (DEVICE_HOSTNODE), owned by the host ids of 5:6
    from ociruntime.state import running_in_userns
    if os.geteuid() == 0 and not running_in_userns():
        assert devs["/dev/fuse"] == {"path": "/dev/fuse", "mode": S_IFCHR | 0o600, "major": 10, "minor": 229,
                                     "uid": 100005, "gid": 200006, "bind": plan.DEVICE_HOSTNODE}
    else:  # the host's node, bind-mounted
        assert devs["/dev/fuse"] == {"path": "/dev/fuse", "mode": S_IFCHR | 0o600, "major": 10, "minor": 229,
                                     "uid": 5, "gid": 6, "bind": 1}
    assert devs["/dev/sda"]["mode"] == S_IFBLK | 0o666 and (devs["/dev/sda"]["major"], devs["/dev/sda"]["minor"]) == (8, 0)
    assert devs["/dev/myfifo"]["mode"] == S_IFIFO | 0o666

    links = [tuple(x) for x in d["symlinks"]]
    for want in [("pts/ptmx", "/dev/ptmx"), ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                 ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]:
        assert want in links
    assert d["masked"] == cfg["linux"]["maskedPaths"]
    assert d["readonly"] == cfg["linux"]["readonlyPaths"]
    assert d["hostname"] == "host-ü" and d["domainname"] == "example.org"
    assert d["sysctls"] == [["kernel.msgmax", "8192"], ["net.ipv4.ip_forward", "1"]]
    assert d["rlimits"] == [[7, 1024, 4096], [4, 0, 18446744073709551615], [15, 5, 6]]
    caps = d["caps"]
    assert caps == [(1 << 5) | (1 << 21), 1 << 5, (1 << 5) | (1 << 40), 1 << 0, 0]
    assert d["user"] == {"uid": 1000, "gid": 100, "umask": 0o027, "flags": 1, "groups": [10, 20, 4294967294]}
    assert d["cwd"] == "/work dir"
    assert d["args"] == cfg["process"]["args"]
    assert d["env"] == cfg["process"]["env"]
    assert d["proc_flags"] == 1
    assert d["hooks"] == [
        {"kind": 1, "timeout": 7, "path": "/bin/cc1", "args": ["cc1", "x"], "env": ["A=1"]},
        # no env of their own: HOOK_F_PROCESS_ENV (0x100), the process's environment (runc)
        {"kind": 0x101, "timeout": 0, "path": "/bin/cc2", "args": [], "env": []},
        {"kind": 0x102, "timeout": -1, "path": "/bin/sc", "args": ["sc"], "env": []},
    ]
    assert d["mkdirs"] == [["/work dir", 0o755]]
    assert d["console"] == [50, 132]
    bpf = _seccomp_bpf(SECCOMP)
    if bpf is None:
        assert d["seccomp"] is None
    else:
        from ociruntime import seccomp
        assert d["seccomp"] == {"flags": seccomp.compile_profile(SECCOMP)[1], "bpf": bpf.hex()}
        assert len(bpf) % 8 == 0
    assert d["netdevs"] == 3   # the init only opens the netlink socket; the names stay with the runtime
    # linux/sched.h SCHED_DEADLINE = 6, SCHED_FLAG_RESET_ON_FORK 0x01 | SCHED_FLAG_UTIL_CLAMP_MAX 0x40
    assert d["sched"] == {"policy": 6, "nice": -3, "priority": 0, "flags": 0x41, "runtime": 1 << 20,
                          "deadline": 1 << 30, "period": (1 << 62) + 1}
    assert d["ioprio"] == [3, 7]                  # IOPRIO_CLASS_IDLE
    assert d["affinity"] == {"flags": 1, "mask": []}, "execCPUAffinity is not for the init: reset"
    assert d["personality"] == 8                 # PER_LINUX32
    # MPOL_INTERLEAVE = 3, MPOL_F_STATIC_NODES = 1 << 15; nodes 0, 63, 64, 1023 as u64 words
    want_words = [1 | 1 << 63, 1] + [0] * 14
    want_words[15] = 1 << 63
    assert d["mempolicy"] == {"mode": 3, "flags": 1 << 15, "nodes": want_words}


def test_round_trip_minimal_defaults(plan_dump, bundle, tmp_path):
    d = decode(plan_dump, build(minimal(), bundle).data, tmp_path)
    assert d["root_flags"] == 4                    # no mount namespace
    assert d["root_propagation"] == MS_SLAVE | MS_REC
    assert d["timens"] is None and d["oom"] is None
    assert d["caps"] == [0, 0, 0, 0, 0], "no process.capabilities: no capabilities at all (runc)"
    assert d["hostname"] is None and d["domainname"] is None
    assert d["user"] == {"uid": 0, "gid": 0, "umask": 0xFFFFFFFF, "flags": 1, "groups": []}
    assert d["sched"] is None and d["ioprio"] is None and d["personality"] is None and d["mempolicy"] is None
    assert d["affinity"] == {"flags": 1, "mask": []}    # the init's CPU affinity is reset (runc >= 1.3.6)
    assert d["mkdirs"] == [] and d["devices"] == [] and d["symlinks"] == []
    assert d["proc_flags"] == 0
    assert d["console"] is None and d["seccomp"] is None
    assert d["netdevs"] == 0


def test_net_devices_in_plan(bundle):
    s = spec()
    s["linux"]["netDevices"] = {"eth1": {"name": "ctr%d"}, "veth7": {}, "eth2": {"name": "c2"}}
    p = build(s, bundle)
    assert p.net_devices == {"eth1": "ctr%d", "veth7": "veth7", "eth2": "c2"}
    assert build(spec(), bundle).net_devices == {}


@pytest.mark.parametrize("prop, want", [("private", MS_PRIVATE | MS_REC), ("rprivate", MS_PRIVATE | MS_REC),
                                        ("slave", MS_SLAVE | MS_REC), ("rslave", MS_SLAVE | MS_REC),
                                        ("shared", MS_SHARED | MS_REC), ("unbindable", MS_UNBINDABLE | MS_REC)])
def test_round_trip_root_propagation(plan_dump, bundle, tmp_path, prop, want):
    s = spec()
    s["linux"]["rootfsPropagation"] = prop
    assert decode(plan_dump, build(s, bundle).data, tmp_path)["root_propagation"] == want


def test_round_trip_cgroup_v1_mounts(plan_dump, bundle, tmp_path):
    v1 = {"cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/x", "memory": "/sys/fs/cgroup/memory/x", "": "/u"}
    # without a cgroup namespace: a tmpfs with the container's own directories bind-mounted read-only
    d = decode(plan_dump, build(_cfg_cgroup_v2(bundle, False), bundle, cgroup_paths=v1).data, tmp_path)
    cg = [m for m in d["mounts"] if m["dst"].startswith("/sys/fs/cgroup")]
    assert [(m["dst"], m["src"], m["kind"]) for m in cg] == [
        ("/sys/fs/cgroup", "tmpfs", 0), ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/x", 1),
        ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/x", 1)]
    for m in cg[1:]:
        assert m["flags"] & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY
    links = [tuple(x) for x in d["symlinks"]]
    assert ("cpu,cpuacct", "/sys/fs/cgroup/cpu") in links and ("cpu,cpuacct", "/sys/fs/cgroup/cpuacct") in links
    # with one: the hierarchies themselves (the namespace roots them at the container's cgroup)
    d = decode(plan_dump, build(spec(), bundle, cgroup_paths=v1).data, tmp_path)
    cg = [m for m in d["mounts"] if m["dst"].startswith("/sys/fs/cgroup")]
    assert [m["dst"] for m in cg] == ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory"]
    for m in cg[1:]:
        assert (m["fstype"], m["data"], m["kind"]) == ("cgroup", m["dst"].rsplit("/", 1)[1], 0)
        assert m["flags"] & MS_RDONLY


def test_round_trip_cgroup_v2_mounts(plan_dump, bundle, tmp_path):
    """runc mountCgroupV2: a fresh cgroup2 with or without a cgroup namespace; the bind the init falls back
    to where the kernel refuses it: the container's own cgroup with a cgroup namespace, /sys/fs/cgroup
    without one; a missing cgroup masks the mount only under the rootless cgroup manager."""
    cg = {"": "/sys/fs/cgroup/c1"}
    for cgroupns, rootless, fallback in ((True, False, "/sys/fs/cgroup/c1"), (False, False, "/sys/fs/cgroup"),
                                         (True, True, "/sys/fs/cgroup/c1"), (False, True, "/sys/fs/cgroup")):
        d = decode(plan_dump, build(_cfg_cgroup_v2(bundle, cgroupns), bundle, opts={"rootless_cgroups": rootless},
                                    cgroup_paths=cg).data, tmp_path)
        (m,) = [m for m in d["mounts"] if m["dst"].startswith("/sys/fs/cgroup")]
        assert (m["src"], m["fstype"], m["kind"], m["data"]) == ("cgroup", "cgroup2", 0, ""), (cgroupns, m)
        assert m["flags"] & MS_RDONLY and m["flags"] & MS_NOSUID
        assert m["cgroup2_fallback"] == {"path": fallback, "flags": int(rootless)}, (cgroupns, rootless, m)
    # v1 mounts have no such fallback
    d = decode(plan_dump, build(spec(), bundle, cgroup_paths={"memory": "/sys/fs/cgroup/memory/x"}).data, tmp_path)
    assert not any("cgroup2_fallback" in m for m in d["mounts"])


def test_cgroup2_fallback_record_is_checked(tmp_path):
    """The init refuses a fallback record without a cgroup2 mount just before it, or with unknown flags."""
    def plan_with(*records):
        e = plan.Encoder()
        e.add(plan.OP_FDS, struct.pack("=I", 3), struct.pack("=ii", -1, -1), struct.pack("=I", 3))
        for r in records:
            e.add(*r)
        return e.bytes()
    e = plan.Encoder
    tmpfs = (plan.OP_MOUNT, e.s("tmpfs"), e.s("/x"), e.s("tmpfs"), e.s(""), struct.pack("=II", 0, 0),
             struct.pack("=QQ", 0, 0), struct.pack("=I", 0))
    cg2 = (plan.OP_MOUNT, e.s("cgroup"), e.s("/sys/fs/cgroup"), e.s("cgroup2"), e.s(""), struct.pack("=II", 0, 0),
           struct.pack("=QQ", 0, 0), struct.pack("=I", 0))
    fb = (plan.OP_CGROUP2_FALLBACK, e.s("/sys/fs/cgroup"), struct.pack("=I", plan.CG2_MASK_MISSING))
    rc, out, err = check_plan(plan_with(cg2, fb), tmp_path)
    assert rc == 0, out + err
    for bad in ((fb,), (tmpfs, fb), (cg2, fb, fb),
                (cg2, (plan.OP_CGROUP2_FALLBACK, e.s("/sys/fs/cgroup"), struct.pack("=I", 2))),
                (cg2, (plan.OP_CGROUP2_FALLBACK, e.s("relative"), struct.pack("=I", 0)))):
        rc, out, err = check_plan(plan_with(*bad), tmp_path)
        assert rc != 0 and "cgroup2 fallback" in out + err, (bad, out, err)


def test_round_trip_symlinked_rootfs(plan_dump, tmp_path):
    real = tmp_path / "real-rootfs"
    real.mkdir()
    b = tmp_path / "b"
    b.mkdir()
    os.symlink(str(real), str(b / "rootfs"))
    d = decode(plan_dump, build(minimal(), str(b)).data, tmp_path)
    assert d["rootfs"] == str(real)


def test_round_trip_absolute_rootfs_and_long_strings(plan_dump, bundle, tmp_path):
    s = minimal()
    s["root"]["path"] = os.path.join(bundle, "rootfs")
    s["process"]["env"] = ["BIG=" + "y" * 200_000]
    d = decode(plan_dump, build(s, bundle).data, tmp_path)
    assert d["env"] == s["process"]["env"]


def test_round_trip_exec_plan(plan_dump, tmp_path):
    if not hasattr(plan, "build_exec"):
        pytest.skip("no plan.build_exec")
    proc = {"cwd": "/tmp", "args": ["ls", "-l"], "env": ["A=1"], "user": {"uid": 5, "gid": 6},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]}, "noNewPrivileges": True,
            "oomScoreAdj": 3, "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]}
    joins = [(CLONE["user"], "/proc/123/ns/user"), (CLONE["mount"], "/proc/123/ns/mnt"),
             (CLONE["pid"], "/proc/123/ns/pid")]
    data = plan.build_exec(proc, dict(FDS), joins)
    rc, out, err = check_plan(data, tmp_path)
    assert rc == 0, out + err
    assert counts(out) == dict(mounts=0, devices=0, masked=0, readonly=0, args=2, env=1, hooks=0, joins=3, ns=0,
                              idmapped=0)
    d = decode(plan_dump, data, tmp_path)
    assert d["joins"] == [{"flag": f, "path": p_} for f, p_ in joins]
    assert d["rootfs"] is None and d["mounts"] == [] and d["mkdirs"] == []
    assert d["proc_flags"] == 1 | 4               # PROC_NNP | PROC_EXEC
    assert (d["cwd"], d["args"], d["env"], d["oom"]) == ("/tmp", ["ls", "-l"], ["A=1"], 3)
    assert d["user"]["uid"] == 5 and d["caps"][:2] == [1 << 5, 1 << 5]
    assert d["rlimits"] == [[7, 10, 20]]
    assert d["affinity"] == {"flags": 1, "mask": []}     # neither list: reset
    assert d["sched"] is None and d["personality"] is None and d["mempolicy"] is None


@pytest.mark.parametrize("aff,want", [
    ((None, None), {"flags": 1, "mask": []}),              # reset (runc >= 1.3.6)
    (([2], None), None),                                   # only initial: keep what the cgroup join left
    (([0], [0, 1, 64]), {"flags": 0, "mask": [3, 1]}),
    ((None, [5]), {"flags": 0, "mask": [32]}),
])
def test_round_trip_exec_process_attributes(plan_dump, tmp_path, aff, want):
    proc = {"cwd": "/", "args": ["true"], "scheduler": {"policy": "SCHED_RR", "priority": 7, "nice": 2},
            "ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 0}}
    linux = {"personality": {"domain": "LINUX"}, "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "1",
                                                                  "flags": ["MPOL_F_NUMA_BALANCING"]}}
    d = decode(plan_dump, plan.build_exec(proc, dict(FDS), [], None, linux, aff), tmp_path)
    assert d["affinity"] == want
    assert d["sched"] == {"policy": 2, "nice": 2, "priority": 7, "flags": 0, "runtime": 0, "deadline": 0,
                          "period": 0}
    assert d["ioprio"] == [1, 0]
    assert d["personality"] == 0
    assert d["mempolicy"] == {"mode": 2, "flags": 1 << 13, "nodes": [2]}


@pytest.mark.parametrize("text,want", [
    ("", []), ("0", [0]), ("0-3,7", [0, 1, 2, 3, 7]), ("7,0-1,1", [0, 1, 7]), ("65535", [65535]),
    ("00,010", [0, 10]),
])
def test_parse_id_list(text, want):
    assert plan.parse_id_list(text, "/p") == want


@pytest.mark.parametrize("text,frag", [
    ("a", "'a' is not a number"), ("1-", "'1-' is not a number"), ("-1", "'-1' is not"), ("1,", "'' is not"),
    (" 1", "' 1' is not"), ("3-2", "range '3-2' ends before it starts"), ("65536", "CPU 65536 is above 65535"),
    ("0-99999", "above 65535"), ("١", "is not a number"), ("1--2", "is not a number"),
])
def test_parse_id_list_errors(text, frag):
    with pytest.raises(ConfigError) as ei:
        plan.parse_id_list(text, "/process/execCPUAffinity/final")
    assert ei.value.pointer == "/process/execCPUAffinity/final" and frag in ei.value.reason


def test_id_mask_words():
    assert plan.id_mask_words([]) == []
    assert plan.id_mask_words([0, 63]) == [1 | 1 << 63]
    assert plan.id_mask_words([64]) == [0, 1]
    assert len(plan.id_mask_words([65535])) == 1024      # PLAN_MASK_WORDS, the decoder's limit


# === malformed plans =============================================================================

def hdr(count, version=1, magic=b"OCIP"):
    return magic + struct.pack("=II", version, count)


def rec(op, payload):
    return struct.pack("=II", op, len(payload)) + payload


def s(b):
    return struct.pack("=I", len(b) + 1) + b + b"\0"


def u32(*v):
    return struct.pack("=" + "I" * len(v), *v)


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory):
    """A small plan with every op code (no mounts list to keep it short)."""
    b = tmp_path_factory.mktemp("small")
    (b / "rootfs").mkdir()
    cfg = {"root": {"path": "rootfs", "readonly": True}, "hostname": "h", "domainname": "d",
           "process": {"cwd": "/", "args": ["a", "b"], "env": ["E=1"], "oomScoreAdj": 1, "terminal": True,
                       "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}],
                       "capabilities": {"bounding": ["CAP_KILL"]}, "user": {"uid": 1, "gid": 2, "additionalGids": [3]},
                       "scheduler": {"policy": "SCHED_BATCH", "nice": 1},
                       "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 1}},
                      "mounts": [{"destination": "/c", "type": "cgroup", "source": "cgroup"},  # first: its fallback
                      {"destination": "/p", "type": "proc", "source": "proc", "options": ["rprivate"]},
                      {"destination": "/i", "type": "bind", "source": "rootfs", "options": ["bind"],
                       "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
                       "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}],
           "hooks": {"createContainer": [{"path": "/h", "args": ["h"], "env": ["X=1"]}]},
           "linux": {"namespaces": [{"type": "mount"}, {"type": "network", "path": "/n"}],
                     "timeOffsets": {"monotonic": {"secs": 1}}, "sysctl": {"k": "v"},
                     "maskedPaths": ["/m"], "readonlyPaths": ["/r"],
                     "personality": {"domain": "LINUX32"}, "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"},
                     "devices": [], "netDevices": {"eth0": {}}}}
    want_ops = set(ALL_OPS)
    if _seccomp_bpf({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL"}]}):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL"}]}
    else:
        want_ops.discard(plan.OP_SECCOMP)
    # the LSM records: as on a host with AppArmor and SELinux
    cfg["process"].update(apparmorProfile="p", selinuxLabel="u:r:t:s0")
    cfg["linux"]["mountLabel"] = "u:object_r:t:s0"
    from unittest import mock
    from ociruntime import lsm
    with mock.patch.object(lsm, "apparmor_enabled", return_value=True), \
            mock.patch.object(lsm, "selinux_enabled", return_value=True), \
            mock.patch.dict(os.environ, {plan.TEST_REMOUNT_DELAY_ENV: "1"}):
        data = plan.build(cfg, str(b), dict(FDS), {"trace": True}, {"": "/sys/fs/cgroup/x"}).data
    # keep the first record of every op code: every decoder path, a third of the bytes
    records, seen, off = [], set(), 12
    while off < len(data):
        op, n = struct.unpack_from("=II", data, off)
        if op not in seen:
            seen.add(op)
            records.append(data[off:off + 8 + n])
        off += 8 + n
    # exec's own record: the target pidfd (and root fd) of the container's init
    ex = plan.build_exec({"args": ["a"], "cwd": "/"}, {"sync": 3, "close_from": 3, "target": (6, 7)}, [])
    off = 12
    while off < len(ex):
        op, n = struct.unpack_from("=II", ex, off)
        if op == plan.OP_EXEC_TARGET and op not in seen:
            seen.add(op)
            records.append(ex[off:off + 8 + n])
        off += 8 + n
    assert seen == want_ops, f"small plan lacks ops {want_ops - seen}"
    return hdr(len(records)) + b"".join(records)


def test_small_plan_is_accepted(small_plan, tmp_path):
    rc, out, err = check_plan(small_plan, tmp_path)
    assert rc == 0, out + err
    c = counts(out)
    assert (c["hooks"], c["joins"], c["mounts"], c["devices"], c["args"], c["env"]) == (1, 1, 1, 1, 2, 1)
    assert len(small_plan) < 1100


def test_every_truncation_is_rejected(small_plan, tmp_path):
    cuts = [small_plan[:n] for n in range(len(small_plan))]
    for n, (rc, out, err) in enumerate(check_plan_many(cuts, tmp_path)):
        assert_rejected(rc, out, err, f"truncation to {n} bytes")


def test_every_truncation_under_sanitizers(plan_dump, small_plan, tmp_path):
    cuts = [small_plan[:n] for n in range(len(small_plan))]
    for n, line in enumerate(dump_many(plan_dump, cuts, tmp_path)):
        assert line.startswith("error: plan: "), (n, line)


def _mutations(data, n, seed):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        b = bytearray(data)
        kind = rnd.randrange(6)
        if kind == 0:                                  # one random byte
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif kind == 1:                                # one bit
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
        elif kind == 2:                                # a burst of bytes
            i = rnd.randrange(len(b))
            for k in range(i, min(len(b), i + rnd.randint(2, 16))):
                b[k] = rnd.randrange(256)
        elif kind == 3:                                # a u32 overwritten with an edge value
            i = rnd.randrange(12, len(b) - 3)
            b[i:i + 4] = struct.pack("=I", rnd.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE,
                                                       len(b), len(b) + 1, 1 << 26]))
        elif kind == 4:                                # bytes inserted
            i = rnd.randrange(len(b))
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        else:                                          # bytes deleted
            i = rnd.randrange(len(b))
            del b[i:i + rnd.randint(1, 8)]
        out.append(bytes(b))
    return out


def test_random_mutations_never_crash(small_plan, plan_dump, tmp_path):
    muts = _mutations(small_plan, 400, seed=20261127)
    results = check_plan_many(muts, tmp_path)
    dumps = dump_many(plan_dump, muts, tmp_path)
    accepted = 0
    for i, ((rc, out, err), line) in enumerate(zip(results, dumps)):
        assert_not_crashed(rc, out, err, f"mutation {i}")
        assert rc in (0, 1)
        if rc == 0:
            accepted += 1
            assert out.startswith("ok ")
            assert not line.startswith("error:"), (i, line)
        else:
            assert out.startswith("error: plan: ") and out.count("\n") == 1, out
            assert line == out.rstrip("\n"), (i, line, out)   # the same verdict and message
    assert accepted < len(muts)


def test_mutations_of_a_big_plan_never_crash(bundle, tmp_path):
    data = build(full(bundle), bundle).data
    muts = _mutations(data, 150, seed=7)
    for i, (rc, out, err) in enumerate(check_plan_many(muts, tmp_path)):
        assert_not_crashed(rc, out, err, f"mutation {i}")
        assert (rc, out[:3]) in ((0, "ok "), (1, "err")), out


def _plan_with(*records):
    return hdr(len(records)) + b"".join(records)


def _fds():
    return rec(plan.OP_FDS, u32(3) + struct.pack("=ii", 5, -1) + u32(3))


PROCESS_OK = rec(plan.OP_PROCESS, s(b"/") + u32(1) + s(b"true") + u32(0) + u32(0))
MOUNT_OK = rec(plan.OP_MOUNT, s(b"/a") + s(b"/d") + s(b"") + s(b"") + u32(0, 1) + struct.pack("=QQ", 0, 0) + u32(0))
IDMAP_OK = rec(plan.OP_MOUNT_IDMAP, struct.pack("=i", 6) + u32(1, 3))

MALFORMED = {
    "empty file": b"",
    "11 bytes": b"OCIP" + b"\1\0\0\0" + b"\0\0\0",
    "bad magic": b"OCIX" + struct.pack("=II", 1, 0),
    "lower-case magic": b"ocip" + struct.pack("=II", 1, 0),
    "version 0": hdr(0, version=0),
    "version 2": hdr(0, version=2),
    "version 0xffffffff": hdr(0, version=0xFFFFFFFF),
    "count too big": hdr(2) + _fds(),
    "count 0xffffffff": hdr(0xFFFFFFFF) + _fds(),
    "trailing bytes after the records": hdr(1) + _fds() + b"\0",
    "record length 0xffffffff": hdr(1) + struct.pack("=II", plan.OP_FDS, 0xFFFFFFFF) + b"\0" * 16,
    "record length 0x7fffffff": hdr(1) + struct.pack("=II", plan.OP_FDS, 0x7FFFFFFF) + b"\0" * 16,
    "record length one too long": hdr(1) + struct.pack("=II", plan.OP_FDS, 17) + b"\0" * 16,
    "record with trailing bytes": _plan_with(rec(plan.OP_NS_NEW, u32(0) + b"\0")),
    "record too short": _plan_with(rec(plan.OP_NS_NEW, b"\0\0")),
    "fds record too short": _plan_with(rec(plan.OP_FDS, u32(3, 5))),
    "unknown op 0": _plan_with(rec(0, b"")),
    "unknown op max+1": _plan_with(rec(max(ALL_OPS) + 1, b"")),
    "unknown op 0x1000": _plan_with(rec(0x1000, b"")),
    "unknown op 0xffffffff": _plan_with(rec(0xFFFFFFFF, b"")),
    "string length 0": _plan_with(rec(plan.OP_HOSTNAME, u32(0))),
    "string length 0xffffffff": _plan_with(rec(plan.OP_HOSTNAME, u32(0xFFFFFFFF) + b"h\0")),
    "string length past the record": _plan_with(rec(plan.OP_HOSTNAME, u32(3) + b"h\0")),
    "string length past the buffer": hdr(1) + struct.pack("=II", plan.OP_HOSTNAME, 6) + u32(100) + b"h\0",
    "string without final NUL": _plan_with(rec(plan.OP_HOSTNAME, u32(2) + b"hh")),
    "embedded NUL in a string": _plan_with(rec(plan.OP_HOSTNAME, u32(4) + b"a\0b\0")),
    "embedded NUL in rootfs": _plan_with(rec(plan.OP_ROOTFS, u32(5) + b"/r\0t\0" + u32(0, 0))),
    "embedded NUL in an env string": _plan_with(rec(plan.OP_PROCESS, s(b"/") + u32(1) + s(b"x") + u32(1) +
                                                    u32(4) + b"A=\0\0" + u32(0))),
    "embedded NUL in a mount source": _plan_with(rec(plan.OP_MOUNT, u32(3) + b"a\0\0" + s(b"/d") + s(b"") +
                                                     s(b"") + u32(0, 0) + struct.pack("=QQ", 0, 0) + u32(0))),
    "strv count 0xffffffff": _plan_with(rec(plan.OP_PROCESS, s(b"/") + u32(0xFFFFFFFF) + s(b"x") + u32(0) +
                                            u32(0))),
    "strv count 0x33333334": _plan_with(rec(plan.OP_PROCESS, s(b"/") + u32(0x33333334) + s(b"x") + u32(0) +
                                            u32(0))),
    "strv count one too many": _plan_with(rec(plan.OP_PROCESS, s(b"/") + u32(2) + s(b"x") + u32(0) + u32(0))),
    "hook strv count huge": _plan_with(rec(plan.OP_HOOK, u32(1) + struct.pack("=i", 0) + s(b"/h") +
                                           u32(0x10000000) + u32(0))),
    "ngroups 0xffffffff": _plan_with(rec(plan.OP_USER, u32(0, 0, 0, 1, 0xFFFFFFFF) + u32(1))),
    "ngroups 0x40000001 (overflows *4)": _plan_with(rec(plan.OP_USER, u32(0, 0, 0, 1, 0x40000001) + u32(1))),
    "ngroups one too many": _plan_with(rec(plan.OP_USER, u32(0, 0, 0, 1, 2) + u32(7))),
    "npflags 0xffffffff": _plan_with(rec(plan.OP_MOUNT, s(b"a") + s(b"/d") + s(b"") + s(b"") + u32(0, 0) +
                                         struct.pack("=QQ", 0, 0) + u32(0xFFFFFFFF) + u32(1))),
    "npflags 0x40000001 (overflows *4)": _plan_with(rec(plan.OP_MOUNT, s(b"a") + s(b"/d") + s(b"") + s(b"") +
                                                        u32(0, 0) + struct.pack("=QQ", 0, 0) +
                                                        u32(0x40000001) + u32(1))),
    "npflags 17": _plan_with(rec(plan.OP_MOUNT, s(b"a") + s(b"/d") + s(b"") + s(b"") + u32(0, 0) +
                                 struct.pack("=QQ", 0, 0) + u32(17) + u32(*([0] * 17)))),
    "timens short": _plan_with(rec(plan.OP_TIMENS, struct.pack("=qqq", 1, 2, 3))),
    "caps short": _plan_with(rec(plan.OP_CAPS, struct.pack("=QQQQ", 1, 2, 3, 4))),
    "device short": _plan_with(rec(plan.OP_DEVICE, s(b"/dev/x") + u32(0, 0, 0, 0, 0))),
    "second record truncated": _plan_with(_fds(), PROCESS_OK)[:-3],
    "netdev short": _plan_with(rec(plan.OP_NETDEV, b"\1\0")),
    "exec target short": _plan_with(rec(plan.OP_EXEC_TARGET, struct.pack("=i", 5))),
    "exec target without pidfd": _plan_with(rec(plan.OP_EXEC_TARGET, struct.pack("=ii", -1, -1))),
    "exec target bad root fd": _plan_with(rec(plan.OP_EXEC_TARGET, struct.pack("=ii", 5, -2))),
    "netdev long": _plan_with(rec(plan.OP_NETDEV, u32(1, 0))),
    "console short": _plan_with(rec(plan.OP_CONSOLE, u32(24))),
    "console long": _plan_with(rec(plan.OP_CONSOLE, u32(24, 80, 0))),
    "sched short": _plan_with(rec(plan.OP_SCHED, u32(1, 0, 1) + struct.pack("=QQQ", 0, 0, 0))),
    "ioprio class 0": _plan_with(rec(plan.OP_IOPRIO, u32(0, 0))),
    "ioprio class 4": _plan_with(rec(plan.OP_IOPRIO, u32(4, 0))),
    "ioprio level 8": _plan_with(rec(plan.OP_IOPRIO, u32(2, 8))),
    "affinity count past the record": _plan_with(rec(plan.OP_CPU_AFFINITY, u32(0, 2) + struct.pack("=Q", 1))),
    "affinity count short of the record": _plan_with(rec(plan.OP_CPU_AFFINITY, u32(0, 1) +
                                                         struct.pack("=QQ", 1, 1))),
    "affinity count 0xffffffff": _plan_with(rec(plan.OP_CPU_AFFINITY, u32(0, 0xFFFFFFFF) + struct.pack("=Q", 1))),
    "affinity count 0x20000001 (overflows *8)": _plan_with(rec(plan.OP_CPU_AFFINITY, u32(0, 0x20000001) +
                                                               struct.pack("=Q", 1))),
    "affinity 1025 words": _plan_with(rec(plan.OP_CPU_AFFINITY, u32(0, 1025) + b"\1" * (1025 * 8))),
    "mempolicy partial word": _plan_with(rec(plan.OP_MEMPOLICY, u32(2, 0, 1) + b"\1\0\0\0")),
    "personality short": _plan_with(rec(plan.OP_PERSONALITY, b"\0\0")),
    "seccomp empty program": _plan_with(rec(plan.OP_SECCOMP, u32(0, 0))),
    "seccomp partial sock_filter": _plan_with(rec(plan.OP_SECCOMP, u32(0, 12) + b"\0" * 12)),
    "seccomp length past the record": _plan_with(rec(plan.OP_SECCOMP, u32(0, 16) + b"\0" * 8)),
    "seccomp length 0xfffffff8": _plan_with(rec(plan.OP_SECCOMP, u32(0, 0xFFFFFFF8) + b"\0" * 8)),
    "seccomp too many instructions": _plan_with(rec(plan.OP_SECCOMP, u32(0, 65536 * 8) + b"\0" * (65536 * 8))),
    "seccomp trailing bytes": _plan_with(rec(plan.OP_SECCOMP, u32(0, 8) + b"\0" * 9)),
    "idmap without a mount": _plan_with(rec(plan.OP_MOUNT_IDMAP, struct.pack("=i", 6) + u32(0, 0))),
    "idmap negative fd": _plan_with(MOUNT_OK, rec(plan.OP_MOUNT_IDMAP, struct.pack("=i", -1) + u32(0, 0))),
    "idmap unknown flag": _plan_with(MOUNT_OK, rec(plan.OP_MOUNT_IDMAP, struct.pack("=i", 6) + u32(2, 0))),
    "idmap twice": _plan_with(MOUNT_OK, IDMAP_OK, IDMAP_OK),
    "idmap short": _plan_with(MOUNT_OK, rec(plan.OP_MOUNT_IDMAP, struct.pack("=i", 6) + u32(0))),
    "idmap long": _plan_with(MOUNT_OK, rec(plan.OP_MOUNT_IDMAP, struct.pack("=i", 6) + u32(0, 0, 0))),
}


def test_malformed_plans_rejected(tmp_path):
    names = sorted(MALFORMED)
    results = check_plan_many([MALFORMED[n] for n in names], tmp_path)
    for name, (rc, out, err) in zip(names, results):
        assert_rejected(rc, out, err, name)


def test_malformed_plans_under_sanitizers(plan_dump, tmp_path):
    names = sorted(MALFORMED)
    for name, line in zip(names, dump_many(plan_dump, [MALFORMED[n] for n in names], tmp_path)):
        assert line.startswith("error: plan: "), (name, line)


def test_well_formed_hand_made_plans_accepted(tmp_path):
    good = {
        "no records": hdr(0),
        "fds and process": _plan_with(_fds(), PROCESS_OK),
        "16 propagation flags": _plan_with(rec(plan.OP_MOUNT, s(b"a") + s(b"/d") + s(b"") + s(b"") + u32(0, 0) +
                                               struct.pack("=QQ", 0, 0) + u32(16) + u32(*([0] * 16)))),
        "process twice": _plan_with(PROCESS_OK, PROCESS_OK),
        "idmapped mounts": _plan_with(MOUNT_OK, IDMAP_OK, MOUNT_OK, MOUNT_OK, IDMAP_OK),
        "console": _plan_with(rec(plan.OP_CONSOLE, u32(24, 80))),
        "netdev": _plan_with(rec(plan.OP_NETDEV, u32(2))),
        "exec target": _plan_with(rec(plan.OP_EXEC_TARGET, struct.pack("=ii", 5, -1))),
        "seccomp, one instruction": _plan_with(rec(plan.OP_SECCOMP, u32(0, 8) + struct.pack("=HBBI", 6, 0, 0, 0x7FFF0000))),
        "seccomp, 65535 instructions": _plan_with(rec(plan.OP_SECCOMP, u32(0, 65535 * 8) + b"\0" * (65535 * 8))),
    }
    names = sorted(good)
    for name, (rc, out, err) in zip(names, check_plan_many([good[n] for n in names], tmp_path)):
        assert rc == 0 and out.startswith("ok "), (name, out, err)


def test_oversized_plan_rejected(tmp_path):
    """More than PLAN_MAX_SIZE (64 MiB): refused before it is parsed (sparse file, no real I/O)."""
    path = tmp_path / "huge.plan"
    with open(path, "wb") as f:
        f.write(hdr(0))
        f.truncate((64 << 20) + 1)
    r = subprocess.run([INIT, "--check-plan", str(path)], capture_output=True, timeout=60)
    assert_rejected(r.returncode, r.stdout.decode(), r.stderr.decode(), "65 MiB plan")
    assert "bad size" in r.stdout.decode()


def _device_bind_flags(data):
    """{path: bind flag} of the OP_DEVICE records of an encoded plan."""
    n = struct.unpack_from("=I", data, 8)[0]
    off, out = 12, {}
    for _ in range(n):
        op, ln = struct.unpack_from("=II", data, off)
        if op == plan.OP_DEVICE:
            sl = struct.unpack_from("=I", data, off + 8)[0]
            path = data[off + 12:off + 12 + sl - 1].decode()
            out[path] = struct.unpack_from("=6I", data, off + 12 + sl)[5]
        off += 8 + ln
    return out


@pytest.mark.parametrize("in_userns,config_userns,bind", [(False, False, 0), (True, False, 1), (False, True, 1)])
def test_devices_bound_when_the_runtime_or_the_config_is_in_a_user_namespace(bundle, in_userns, config_userns,
                                                                            bind):
    """runc: bind mounts instead of mknod when "running in a user namespace, or the config asks for one":
    rootless podman runs the runtime in its own user namespace with a config that has none."""
    s = spec()
    s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "user"]
    if config_userns:
        s["linux"]["namespaces"].append({"type": "user"})
        s["linux"]["uidMappings"] = s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    flags = _device_bind_flags(build(s, bundle, {"in_userns": in_userns}).data)
    assert set(flags) >= {"/dev/null", "/dev/zero", "/dev/tty"} and set(flags.values()) == {bind}, flags
