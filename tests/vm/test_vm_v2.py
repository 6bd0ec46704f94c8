"""The pure cgroup v2 stage: one qemu (TCG) guest per session booted with ``cgroup_no_v1=all``
(tests/vm/qemu.py), running ONE pytest over GUEST_SUITE inside it; every guest test is reported
here as its own host test (``test_in_guest[<guest node id>]``).

The stage never skips silently: when the kit cannot be built or the guest does not boot, every test
here FAILS with the reason. ``OCI_SKIP_VM=1`` is a developer's opt-out (CI never sets it).
"""
import json
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import qemu  # noqa: E402
import stages  # noqa: E402

# checkpoint/restore with CRIU on pure v2 (the hybrid v1 host runs all of test_checkpoint*.py): what depends
# on the cgroup version, ≈ 2 minutes of guest time. --leave-running (frozen and thawed through cgroup.freeze),
# restore into the container's v2 cgroup with memory.max/pids.max in force, delete leaving nothing; checkpoint
# and restore under runc 1.1.5 and ociruntime with the same CRIU, the restored containers' views compared
# and what this host's kernel cannot run: --lazy-pages end to end (the guest's root has CAP_SYS_RESOURCE for
# CRIU's 4 MiB pipes), --tcp-established over loopback and --pre-dump (Debian's 6.1 lets CRIU dump TCP and
# has soft-dirty tracking), and a foreground restore relaying a terminal
CHECKPOINT_IN_GUEST = ("tests/integration/test_checkpoint.py::test_cgroups_and_limits_restored",
                       "tests/integration/test_checkpoint.py::test_tcp_established_over_loopback",
                       "tests/integration/test_checkpoint.py::test_pre_dump_refused_without_memory_tracking_or_works",
                       "tests/integration/test_checkpoint.py::test_lazy_pages_refused_where_the_transfer_cannot_work",
                       "tests/integration/test_checkpoint.py::test_foreground_terminal_restore_relays_the_tty",
                       "tests/integration/test_checkpoint_differential.py")
# what runs in the guest (paths relative to the checkout): two pytest processes side by side, one
# per vCPU, each over its share
GUEST_GROUPS = (
    ("tests/conformance",              # the bundle-level suite through ociruntime.testing.plugin
     "tests/integration/test_rootless.py",
     *CHECKPOINT_IN_GUEST),
    ("tests/vm/guest_v2.py",           # every v2 controller's limits, eBPF devices, freeze, update, events, ps, kill
     "tests/vm/guest_containerd.py",   # containerd's ctr run through the runc shim with ociruntime as its binary
     "tests/integration/test_exec_pidfd.py",
     "tests/integration/test_seccomp.py"),
)
if os.environ.get("OCI_VM_SUITE"):  # a developer's own choice of guest paths, one pytest (CI never sets it)
    GUEST_GROUPS = (tuple(os.environ["OCI_VM_SUITE"].split()),)
GUEST_SUITE = tuple(p for g in GUEST_GROUPS for p in g)
# What the v2 guest found and is not fixed yet: deselected by name, each with its reason (README "The
# pure cgroup v2 guest"; the issue's note). A fixed one is removed from this list, never added to quietly.
KNOWN_V2_GAPS = {}
# the CRIU under test (make criu's build, tests/integration/criu_util.py): it lives below /var/tmp, which the
# guest covers with a fresh tmpfs, so its directory is bound back in (keep=) and its path passed on. Without
# one the guest's checkpoint tests FAIL naming the path (criu_util.criu_bin), as on the host.
CRIU = os.path.realpath(os.environ.get("OCIRUNTIME_TEST_CRIU") or "/var/tmp/ociruntime-criu/current/criu")
DESELECT = " ".join(f"--deselect '{n}'" for n in KNOWN_V2_GAPS)
GUEST_TIMEOUT = int(os.environ.get("OCI_VM_TIMEOUT", "2700"))  # seconds for all guest tests (≈6 min idle, 23 min seen under load 10)
PYTHON = sys.executable

# the first test waits for the whole guest stage (pytest.ini's 300 s is per test)
pytestmark = pytest.mark.timeout(GUEST_TIMEOUT + 900)


def local_trees():
    """What the guest gets in RAM rather than over 9p: Python's stdlib, the venv, the checkout."""
    import sysconfig
    paths = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"], sys.prefix, REPO]
    out = []
    for p in sorted({os.path.realpath(x) for x in paths}, key=len):
        if not any(p == o or p.startswith(o + "/") for o in out):
            out.append(p)
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    exclude = [".git", "pip", "setuptools", "pkg_resources", ".pytest_cache", "idlelib", "tkinter", "turtledemo",
               "ensurepip", "lib2to3", "pydoc_data", f"{stdlib}/test", f"{stdlib}/config-3.*", f"{REPO}/demo"]
    return out, exclude


def _collect():
    """The node ids of GUEST_SUITE as pytest collects them here (the same checkout, plugin and
    runtime the guest uses); [] plus the reason when collection fails."""
    r = subprocess.run([PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *GUEST_SUITE,
                        *[a for n in KNOWN_V2_GAPS for a in ("--deselect", n)]],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    ids = [line.strip() for line in r.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    return ids, ("" if r.returncode == 0 else (r.stdout + r.stderr)[-3000:])


_t0 = time.monotonic()
GUEST_IDS, COLLECT_ERROR = _collect()
COLLECT_SECONDS = time.monotonic() - _t0


class Stage:
    def __init__(self):
        self.boot = self.run_time = self.total = 0.0
        self.controllers = ""
        self.result = None
        self.results = {}
        self.console = ""
        self.error = ""
        self.fatal = ""
        self.notes = []


# the v2 guest boots beside the host tests (tests/vm/stages.py), once the systemd guests have ended
STAGE_WAVE = 1


def stages_for(items):
    if os.environ.get("OCI_SKIP_VM") or os.geteuid() != 0:
        return []
    return [("vm-v2", _run_stage)]


@pytest.fixture(scope="session")
def stage(request):
    if os.environ.get("OCI_SKIP_VM"):
        pytest.skip("OCI_SKIP_VM is set (a developer's opt-out; CI never sets it)")
    if os.geteuid() != 0:
        pytest.fail("the cgroup v2 guest stage needs root (qemu's 9p share of / as root, containers in the guest)")
    st = stages.result("vm-v2", _run_stage)
    stages.say(request, "tests/vm", st.notes)
    if st.fatal:
        pytest.fail(st.fatal, pytrace=False)
    return st


def _run_stage():
    """Boot the guest, run GUEST_GROUPS in it, read the results back (no pytest calls: it may run in
    a background thread); a kit or boot failure is ``fatal``, which every test here reports."""
    st = Stage()
    t0 = time.monotonic()
    try:
        kit = qemu.build_kit()
    except qemu.KitError as e:
        st.fatal = f"cannot build the guest kit (kernel + initramfs from apt): {e}"
        return st
    kit_seconds = time.monotonic() - t0
    local, exclude = local_trees()
    try:
        keep = [REPO] + ([os.path.dirname(CRIU)] if os.path.isdir(os.path.dirname(CRIU)) else [])
        g = qemu.Guest.start(kit, cgroup="v2", smp=2, mem=2048, disk_mb=64, keep=keep, local=local,
                             local_exclude=exclude)
    except qemu.GuestError as e:
        st.fatal = f"the qemu guest did not boot: {e}"
        return st
    try:
        st.boot, st.controllers = g.boot_seconds, g.controllers
        st.pgid, st.ctl = g.proc.pid, g.ctl
        st.notes.append(f"host collection {COLLECT_SECONDS:.1f}s, kit {kit_seconds:.1f}s, guest booted in "
                        f"{st.boot:.1f}s (controllers: {st.controllers}); running {len(GUEST_IDS)} tests in it")
        _run_groups(g, st)
        st.console = g.console()
    finally:
        g.stop()
    st.total = time.monotonic() - t0
    n = {}
    for rec in st.results.values():
        n[rec["outcome"]] = n.get(rec["outcome"], 0) + 1
    slow = sorted(st.results.values(), key=lambda r: -r["duration"])[:8]
    st.notes.append(f"guest stage: {len(st.results)} tests ran in the guest ({n}); boot {st.boot:.1f}s, "
                    f"pytest {st.run_time:.1f}s, total {st.total:.1f}s{'; ' + st.error[:200] if st.error else ''}\n"
                    + "slowest: " + ", ".join(f"{r['nodeid'].rsplit('/', 1)[-1]} {r['duration']:.0f}s" for r in slow))
    return st


def _run_groups(g, st):
    runtime = os.environ.get("OCI_RUNTIME")
    jobs = []
    t1 = time.monotonic()
    for i, group in enumerate(GUEST_GROUPS):
        cmd = (f"exec {PYTHON} -m pytest -p no:cacheprovider -p guest_report -q -rfE {DESELECT} "
               f"{'--oci-runtime=' + runtime if runtime else ''} {' '.join(group)}")
        env = {"PYTHONPATH": HERE, "PYTHONDONTWRITEBYTECODE": "1", "OCI_VM_SCRATCH": "/dev/vda",
               "OCI_VM_RESULTS": g.guest_path(f"results-{i}.json"), "OCIRUNTIME_TEST_CRIU": CRIU}
        jobs.append(g.submit(cmd, env=env, cwd=REPO))
    st.result = []
    for jid in jobs:
        try:
            st.result.append(g.wait(jid, timeout=max(1.0, GUEST_TIMEOUT - (time.monotonic() - t1))))
        except qemu.GuestError as e:
            st.error = f"the guest run did not finish: {e}"
            break
    st.run_time = time.monotonic() - t1
    for i in range(len(GUEST_GROUPS)):
        for line in qemu.Guest._read(g.host_path(f"results-{i}.json")).splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            st.results[rec["nodeid"]] = rec


def _tail(st):
    out = f"{st.error[:3000]}\n" if st.error else ""
    for i, r in enumerate(st.result or ()):
        out += (f"--- guest pytest {GUEST_GROUPS[i]} rc={r.rc}\n--- stdout:\n{r.out[-3000:]}\n"
                f"--- stderr:\n{r.err[-1500:]}\n")
    return out + f"--- console:\n{st.console[-1500:]}"


def test_guest_is_pure_cgroup_v2_and_ran_the_suite(stage):
    # every controller of a pure v2 kernel, none of them left to v1
    for c in ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"):
        assert c in stage.controllers.split(), stage.controllers
    assert not stage.error, _tail(stage)
    assert stage.results, "the guest produced no results:\n" + _tail(stage)
    assert not COLLECT_ERROR, "collecting the guest suite on the host failed:\n" + COLLECT_ERROR
    extra = sorted(set(stage.results) - set(GUEST_IDS))
    missing = sorted(set(GUEST_IDS) - set(stage.results))
    assert not extra and not missing, f"guest and host collected different tests: only in the guest {extra}, " \
                                      f"not run in the guest {missing}\n" + _tail(stage)


def test_guest_left_nothing_behind(stage):
    try:
        os.killpg(stage.pgid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, f"qemu's process group {stage.pgid} outlived the stage"
    assert not os.path.exists(stage.ctl), f"the control directory {stage.ctl} was left behind"


@pytest.mark.parametrize("nodeid", GUEST_IDS)
def test_in_guest(stage, nodeid):
    rec = stage.results.get(nodeid)
    if rec is None:
        pytest.fail(f"{nodeid} did not run in the guest:\n{_tail(stage)}", pytrace=False)
    kind, msg = rec["outcome"], rec["message"]
    if kind == "skipped":
        pytest.skip(f"skipped in the guest: {msg}")
    if kind == "xfailed":
        pytest.xfail(f"xfailed in the guest: {msg}")
    assert kind == "passed", f"{nodeid} {kind} in the cgroup v2 guest:\n{msg[-6000:]}"
