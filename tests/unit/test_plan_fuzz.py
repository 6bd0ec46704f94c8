"""libFuzzer run of the plan decoder (csrc/fuzz/plan_fuzz.c -> plan_decode in csrc/init/plan.c).

Builds the harness with clang -fsanitize=fuzzer,address,undefined, seeds a corpus with real plans
from plan.build() (plus a few hand-made edge cases) and fuzzes for a bounded time. Any sanitizer
report, abort of the harness's own checks, timeout or OOM fails the test. Skipped when clang is not
installed (`make deps` installs it).

Leak detection is off for the fuzz run: the decoder leaks on purpose-built inputs (see
test_duplicate_user_record_does_not_leak), and a leak is not what this run is looking for.
"""

import os
import shutil
import struct
import subprocess

import pytest

from ociruntime import plan
from ociruntime.misc import default_spec

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
HARNESS = os.path.join(REPO, "csrc", "fuzz", "plan_fuzz.c")
FUZZ_SECONDS = int(os.environ.get("PLAN_FUZZ_SECONDS", "20"))
FDS = {"sync": 3, "fifo": 5, "close_from": 3}


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang not installed")
    out = str(tmp_path_factory.mktemp("fuzz") / "plan_fuzz")
    r = subprocess.run([clang, "-g", "-O1", "-Wall", "-Wextra", "-Werror",
                        "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
                        "-fno-omit-frame-pointer", "-o", out, HARNESS], capture_output=True, text=True)
    if r.returncode != 0 and "fuzzer" in r.stderr and ("cannot find" in r.stderr or "not found" in r.stderr):
        pytest.skip(f"clang has no libFuzzer runtime: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stderr
    return out


def _seed_configs(bundle):
    s = default_spec()
    s["process"]["terminal"] = False
    yield s
    yield {"root": {"path": "rootfs"}, "process": {"cwd": "/", "args": ["true"]}}
    full = default_spec()
    full["process"].update({"terminal": False, "oomScoreAdj": 5, "user": {"uid": 1, "gid": 2, "umask": 18,
                                                                           "additionalGids": [3, 4]}})
    full["hostname"] = "h"
    full["domainname"] = "d"
    lx = full["linux"]
    lx["namespaces"] = [{"type": t} for t in ("pid", "mount", "user", "time", "uts")] + \
        [{"type": "network", "path": "/proc/1/ns/net"}]
    lx["uidMappings"] = lx["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    lx["timeOffsets"] = {"monotonic": {"secs": 1, "nanosecs": 2}}
    lx["personality"] = {"domain": "LINUX32"}
    lx["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "0-2,70", "flags": ["MPOL_F_STATIC_NODES"]}
    full["process"]["scheduler"] = {"policy": "SCHED_RR", "priority": 3, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
    full["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 2}
    lx["sysctl"] = {"kernel.msgmax": "1"}
    lx["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    lx["netDevices"] = {"eth0": {"name": "c%d"}, "veth1": {}}
    full["mounts"].append({"destination": "/b", "type": "bind", "source": bundle,
                           "options": ["rbind", "rro", "rprivate", "rnoatime"]})
    full["hooks"] = {"createContainer": [{"path": "/h", "args": ["h", "1"], "env": ["A=1"], "timeout": 3}],
                     "startContainer": [{"path": "/s"}]}
    full["process"]["terminal"] = True
    full["process"]["consoleSize"] = {"height": 24, "width": 80}
    yield full
    sc = dict(full, linux=dict(full["linux"], seccomp={
        "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", "exit"], "action": "SCMP_ACT_ALLOW"},
                                                       {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                                                        "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]}]}))
    yield sc


def _hand_made():
    def rec(op, payload):
        return struct.pack("=II", op, len(payload)) + payload

    def s(b):
        return struct.pack("=I", len(b) + 1) + b + b"\0"

    yield b"OCIP" + struct.pack("=II", 1, 0)
    yield b"OCIP" + struct.pack("=II", 1, 1) + rec(plan.OP_HOSTNAME, s(b"x"))
    yield b"OCIP" + struct.pack("=II", 1, 1) + rec(plan.OP_PROCESS, s(b"/") + struct.pack("=I", 2) + s(b"a") +
                                                   s(b"b") + struct.pack("=I", 0) + struct.pack("=I", 0))
    yield b"OCIP" + struct.pack("=II", 1, 1) + rec(plan.OP_USER, struct.pack("=IIIII", 0, 0, 0, 1, 2) +
                                                   struct.pack("=II", 5, 6))
    if hasattr(plan, "OP_MOUNT_IDMAP"):
        mount = rec(plan.OP_MOUNT, s(b"/a") + s(b"/d") + s(b"") + s(b"") + struct.pack("=IIQQI", 0, 1, 0, 0, 0))
        yield b"OCIP" + struct.pack("=II", 1, 2) + mount + rec(plan.OP_MOUNT_IDMAP, struct.pack("=iII", 6, 1, 0))
    yield b"OCIP" + struct.pack("=II", 1, 2) + rec(plan.OP_LSM_ATTR, struct.pack("=II", 1, 0) + s(b"/proc") +
                                                   s(b"thread-self/attr/exec") + s(b"exec p")) + \
        rec(plan.OP_MOUNT_LABEL, s(b"u:object_r:t:s0:c1,c2"))
    for name, payload in (("OP_CPU_AFFINITY", struct.pack("=IIQQ", 0, 2, 3, 1 << 63)),
                          ("OP_MEMPOLICY", struct.pack("=IIIQ", 2, 1 << 15, 1, 5)),
                          ("OP_SCHED", struct.pack("=IiIQQQQ", 6, 0, 0, 1, 1 << 20, 1 << 30, 0)),
                          ("OP_CONSOLE", struct.pack("=II", 24, 80)), ("OP_NETDEV", struct.pack("=I", 1)),
                          ("OP_SECCOMP", struct.pack("=II", 0, 8) + struct.pack("=HBBI", 6, 0, 0, 0x7FFF0000))):
        if hasattr(plan, name):
            yield b"OCIP" + struct.pack("=II", 1, 1) + rec(getattr(plan, name), payload)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / "rootfs").mkdir()
    n = 0
    for cfg in _seed_configs(str(bundle)):
        for cg in ({}, {"": "/sys/fs/cgroup/x"}, {"cpu,cpuacct": "/a", "memory": "/b"}):
            try:
                data = plan.build(cfg, str(bundle), dict(FDS), {"no_pivot": n % 2 == 0}, cg).data
            except Exception:
                if "seccomp" in cfg.get("linux", {}):
                    continue            # no seccomp support in this build: skip that seed
                raise
            (d / f"seed-{n}").write_bytes(data)
            n += 1
    for data in _hand_made():
        (d / f"seed-{n}").write_bytes(data)
        n += 1
    return str(d)


def test_fuzz_plan_decode(fuzzer, corpus, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:symbolize=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([fuzzer, f"-max_total_time={FUZZ_SECONDS}", "-timeout=10", "-rss_limit_mb=2048",
                        "-detect_leaks=0", "-max_len=65536", "-print_final_stats=1",
                        f"-artifact_prefix={work}/", corpus],
                       capture_output=True, text=True, cwd=str(work), env=env, timeout=FUZZ_SECONDS + 120)
    log = r.stderr
    artifacts = sorted(os.listdir(work))
    assert r.returncode == 0 and not artifacts, \
        f"fuzzer found a problem (exit {r.returncode}, artifacts {artifacts}):\n{log[-6000:]}"
    assert "Done" in log
    runs = [int(line.split()[-1]) for line in log.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert runs and runs[0] > 10_000, log[-2000:]


@pytest.mark.parametrize("op,rec", [("OP_CPU_AFFINITY", struct.pack("=IIQ", 0, 1, 1)),
                                    ("OP_MEMPOLICY", struct.pack("=IIIQ", 2, 0, 1, 1)),
                                    ("OP_USER", struct.pack("=IIIII", 0, 0, 0, 1, 1) + struct.pack("=I", 7))])
def test_duplicate_array_record_does_not_leak(fuzzer, tmp_path, op, rec):
    """A record that carries an array, given twice: the first array is freed, not leaked."""
    data = b"OCIP" + struct.pack("=II", 1, 2) + (struct.pack("=II", getattr(plan, op), len(rec)) + rec) * 2
    path = tmp_path / "dup"
    path.write_bytes(data)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    r = subprocess.run([fuzzer, "-detect_leaks=1", f"-artifact_prefix={tmp_path}/", str(path)],
                       capture_output=True, text=True, cwd=str(tmp_path), timeout=60, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LeakSanitizer" not in r.stderr
