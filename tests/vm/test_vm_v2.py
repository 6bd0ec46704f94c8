"""The cgroup v2 manager in a pure cgroup v2 kernel (User-Mode Linux guest, see tests/vm/uml.py).

One guest boots per session and runs ``pytest tests/vm/guest_v2.py`` (memory/pids/cpu limits,
io.max, the eBPF device filter, freeze/thaw, kill --all, update, events, ps); each guest test is
reported here as its own host test. Installs ``user-mode-linux`` when it is missing; skips, with
the reason, only when UML cannot be installed or started. ``OCI_SKIP_VM=1`` skips on purpose.
"""
import ast
import os
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import uml  # noqa: E402

GUEST_FILE = os.path.join(HERE, "guest_v2.py")


def guest_tests():
    with open(GUEST_FILE) as f:
        tree = ast.parse(f.read())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


@pytest.fixture(scope="session")
def guest_run():
    if os.environ.get("OCI_SKIP_VM"):
        pytest.skip("OCI_SKIP_VM is set")
    if os.geteuid() != 0:
        pytest.skip("the UML guest tests run as root")
    python = os.path.join(REPO, ".venv", "bin", "python")
    if not os.path.exists(python):
        python = sys.executable
    runtime = os.environ.get("OCI_RUNTIME") or os.path.join(os.path.dirname(python), "ociruntime")
    cmd = (f"cd {REPO} && exec {python} -m pytest -p no:cacheprovider -q -rA "
           f"--oci-runtime={runtime} --junitxml=/run/share/junit.xml {GUEST_FILE}")
    try:
        res = uml.run(cmd, timeout=1500, keep_share=True)
    except uml.Unavailable as e:
        print(f"\n[tests/vm] skipping the cgroup v2 guest tests: {e}", file=sys.stderr)
        pytest.skip(f"User-Mode Linux unavailable: {e}")
    try:
        outcomes = {}
        junit = os.path.join(res.share, "junit.xml")
        if os.path.exists(junit):
            for tc in ET.parse(junit).getroot().iter("testcase"):
                name = tc.get("name")
                kind, msg = "passed", ""
                for child in tc:
                    if child.tag in ("failure", "error"):
                        kind, msg = "failed", (child.get("message") or "") + "\n" + (child.text or "")
                    elif child.tag == "skipped":
                        kind, msg = "skipped", child.get("message") or ""
                outcomes[name] = (kind, msg)
        yield res, outcomes
    finally:
        import shutil
        shutil.rmtree(res.share, ignore_errors=True)


def test_guest_boots_pure_cgroup_v2(guest_run):
    res, outcomes = guest_run
    assert "=== guest up" in res.output, res.output[-3000:]
    assert "cgroup2 controllers: cpu io memory pids" in res.output or "cgroup2 controllers:" in res.output
    assert res.rc is not None, "the guest recorded no exit status (crashed or timed out):\n" + res.output[-3000:]
    assert outcomes, "the guest produced no junit report:\n" + res.output[-3000:]


@pytest.mark.parametrize("name", guest_tests())
def test_in_guest(guest_run, name):
    res, outcomes = guest_run
    if name not in outcomes:
        pytest.fail(f"{name} did not run in the guest (rc={res.rc}):\n{res.output[-3000:]}")
    kind, msg = outcomes[name]
    if kind == "skipped":
        pytest.skip(f"skipped in the guest: {msg}")
    assert kind == "passed", f"{name} failed in the cgroup v2 guest:\n{msg[-4000:]}"
