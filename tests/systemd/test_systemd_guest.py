"""The systemd cgroup driver against a real systemd: one qemu (TCG) guest per cgroup version whose
PID 1 is the host's own systemd (tests/vm/qemu.py, ``init="systemd"``: the host's / over 9p under a
tmpfs overlay, so the checkout and its .venv run unchanged), v2 (``cgroup_no_v1=all``) and v1
(systemd's legacy layout). Each guest runs ONE pytest over tests/systemd/guest_systemd.py and
reports junit back; every guest check is reported here as its own test, per cgroup version.

The stage never skips: if the kit cannot be built or the guest does not boot, every test here FAILS
with the reason. ``OCI_SKIP_SYSTEMD_GUEST=1`` is a developer's opt-out (CI never sets it).
"""
import ast
import functools
import os
import sys
import time
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "vm"))
import qemu  # noqa: E402
import stages  # noqa: E402

GUEST_FILE = "tests/systemd/guest_systemd.py"
# v2: pure cgroup v2; v1: systemd's legacy layout (all v1 hierarchies + name=systemd)
STAGES = ("v2", "v1")
# the CRIU of `make criu` (below /var/tmp, which the guest covers with a fresh tmpfs: bound back in) for
# the --systemd-cgroup checkpoint/restore check; without one that check FAILS naming the path
CRIU = os.path.realpath(os.environ.get("OCIRUNTIME_TEST_CRIU") or "/var/tmp/ociruntime-criu/current/criu")
CRIU_KEEP = [os.path.dirname(CRIU)] if os.path.isdir(os.path.dirname(CRIU)) else []
GUEST_TIMEOUT = 2400  # one guest's checks: ≈3–5 min idle; generous for a loaded machine (CI has 90 min)


def guest_tests():
    with open(os.path.join(REPO, GUEST_FILE)) as f:
        tree = ast.parse(f.read())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


class Stage:
    def __init__(self, cgroup):
        self.cgroup = cgroup
        self.error = None
        self.outcomes = {}
        self.output = ""
        self.notes = []


def _run_stage(cgroup):
    st = Stage(cgroup)
    python = os.path.join(REPO, ".venv", "bin", "python")
    if not os.path.exists(python):
        python = sys.executable
    runtime = os.environ.get("OCI_RUNTIME") or os.path.join(os.path.dirname(python), "ociruntime")
    t0 = time.monotonic()
    try:
        g = qemu.Guest.start(init="systemd", cgroup=cgroup, keep=[REPO] + CRIU_KEEP, mem=2048, smp=2,
                             boot_timeout=420)
    except (qemu.GuestError, qemu.KitError) as e:
        st.error = f"the systemd guest ({cgroup}) did not boot: {e}"
        return st
    try:
        boot = time.monotonic() - t0
        junit = g.guest_path("junit.xml")
        r = g.sh(f"cd {REPO} && PYTHONDONTWRITEBYTECODE=1 SD_CGROUP={cgroup} OCI_RUNTIME={runtime} "
                 f"OCIRUNTIME_TEST_CRIU={CRIU} "
                 f"{python} -m pytest -p no:cacheprovider -q -rfE --junitxml={junit} {GUEST_FILE}",
                 timeout=GUEST_TIMEOUT)
        st.output = r.out + r.err
        path = g.host_path("junit.xml")
        if not os.path.exists(path):
            st.error = f"the guest ({cgroup}) wrote no junit report (rc={r.rc}):\n{st.output[-4000:]}"
            return st
        for tc in ET.parse(path).getroot().iter("testcase"):
            kind, msg = "passed", ""
            for child in tc:
                if child.tag in ("failure", "error"):
                    kind, msg = "failed", (child.get("message") or "") + "\n" + (child.text or "")
                elif child.tag == "skipped":
                    kind, msg = "skipped", child.get("message") or ""
            st.outcomes[tc.get("name")] = (kind, msg)
        counts = {k: sum(1 for v in st.outcomes.values() if v[0] == k) for k in ("passed", "failed", "skipped")}
        st.notes.append(f"systemd guest {cgroup}: booted in {boot:.0f}s, checks ran in {r.duration:.0f}s: "
                        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
                        f"of {len(guest_tests())}")
    except qemu.GuestError as e:
        st.error = f"the systemd guest ({cgroup}) failed: {e}"
    finally:
        g.stop()
    return st


# both systemd guests boot together, beside the host tests (tests/vm/stages.py), before the v2 guest
STAGE_WAVE = 0


def _wanted():
    return not os.environ.get("OCI_SKIP_SYSTEMD_GUEST") and os.geteuid() == 0


def stages_for(items):
    cgroups = {it.callspec.params.get("stage") for it in items if hasattr(it, "callspec")}
    return [(f"systemd-{c}", functools.partial(_run_stage, c)) for c in STAGES if c in cgroups and _wanted()]


@pytest.fixture(scope="module", params=STAGES)
def stage(request):
    if os.environ.get("OCI_SKIP_SYSTEMD_GUEST"):
        pytest.skip("OCI_SKIP_SYSTEMD_GUEST is set")
    if os.geteuid() != 0:
        pytest.fail("the systemd guest stage runs as root (make test)")
    st = stages.result(f"systemd-{request.param}", functools.partial(_run_stage, request.param))
    stages.say(request, "tests/systemd", st.notes)
    return st


# the first test's setup waits for the guest's checks, or runs them (pytest.ini's 300 s is per test)
@pytest.mark.timeout(GUEST_TIMEOUT + 600)
@pytest.mark.parametrize("name", guest_tests())
def test_in_systemd_guest(stage, name):
    if stage.error:
        pytest.fail(stage.error)
    if name not in stage.outcomes:
        pytest.fail(f"{name} did not run in the {stage.cgroup} guest:\n{stage.output[-3000:]}")
    kind, msg = stage.outcomes[name]
    if kind == "failed":
        pytest.fail(f"[{stage.cgroup}] {msg}")
    if kind == "skipped":
        pytest.fail(f"[{stage.cgroup}] skipped in the guest (a stage never skips): {msg}")
