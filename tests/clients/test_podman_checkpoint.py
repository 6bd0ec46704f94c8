"""podman container checkpoint / restore (and --export / --import) with --runtime ociruntime.

podman itself asks CRIU for its version (go-criu runs `criu` from $PATH) and then calls the runtime's
`checkpoint` and, through conmon, `restore`; so these commands run with `make criu`'s CRIU first on
$PATH (never Debian's 3.17, which cannot start on this kernel). The same criu_bin check as the other
checkpoint tests: no CRIU is a failure, not a skip.
"""
import os
import re
import sys

import pytest

from clients_env import IMAGE, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from criu_util import criu_bin  # noqa: E402,F401

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

COUNT = "i=0; while :; do echo n=$i; i=$((i+1)); sleep 0.1; done"


@pytest.fixture
def cr(podman, criu_bin):
    """The podman env with the CRIU under test first on PATH."""
    env = dict(podman.env, PATH=os.path.dirname(criu_bin) + ":" + podman.env["PATH"])
    return podman, env


def _counts(podman, n):
    out = podman.podman_ok("logs", n).out
    return [int(x) for x in re.findall(r"^n=(\d+)", out, re.M)]


def _start(podman):
    n = f"ck-{os.urandom(4).hex()}"
    podman.podman_ok("run", "-d", "--cgroup-parent", "/" + podman.cg_parent, "--name", n, IMAGE, "sh", "-c", COUNT)
    assert wait_for(lambda: len(_counts(podman, n)) >= 3, timeout=20, what="counter output")
    return n


def _status(podman, n):
    return podman.podman_ok("inspect", "--format", "{{.State.Status}}", n).out.strip()


def test_podman_checkpoint_restore(cr):
    podman, env = cr
    n = _start(podman)
    mark = podman.calls_mark()
    r = podman.podman("container", "checkpoint", n, env=env, timeout=120)
    assert r.ok, f"{r}\n--- runtime calls:\n{podman.calls_since(mark)}"
    assert _status(podman, n) == "exited"
    last = _counts(podman, n)[-1]
    r = podman.podman("container", "restore", n, env=env, timeout=120)
    assert r.ok, f"{r}\n--- runtime calls:\n{podman.calls_since(mark)}"
    assert _status(podman, n) == "running"
    assert wait_for(lambda: _counts(podman, n)[-1] > last + 3, timeout=20, what="the count goes on")
    after = _counts(podman, n)
    # the count went on from where it was (not restarted from 0)
    first_after = after[after.index(last) + 1] if last in after else None
    assert first_after == last + 1, (last, after[-20:])
    calls = podman.calls_argv(mark)
    assert any(" checkpoint " in f" {a} " for a in calls) and any(" restore " in f" {a} " for a in calls), calls
    # podman's exec and stop still work on the restored container
    assert podman.podman_ok("exec", n, "cat", "/proc/1/comm").out.strip() == "sh"
    podman.podman_ok("rm", "-f", "-t", "0", n)


def test_podman_checkpoint_export_import(cr):
    """--export to a tarball, remove the container, --import it back (how podman moves a container
    between hosts); the imported container's count goes on."""
    podman, env = cr
    n = _start(podman)
    tar = podman.p("tmp", f"{n}.tar.gz")
    mark = podman.calls_mark()
    r = podman.podman("container", "checkpoint", "--export", tar, n, env=env, timeout=120)
    assert r.ok, f"{r}\n--- runtime calls:\n{podman.calls_since(mark)}"
    last = _counts(podman, n)[-1]
    podman.podman_ok("rm", "-f", "-t", "0", n)
    r = podman.podman("container", "restore", "--import", "/tmp/" + os.path.basename(tar), env=env, timeout=120)
    assert r.ok, f"{r}\n--- runtime calls:\n{podman.calls_since(mark)}"
    assert _status(podman, n) == "running"
    assert wait_for(lambda: len(_counts(podman, n)) > 2 and _counts(podman, n)[-1] > last, timeout=20,
                    what="the imported count goes on")
    podman.podman_ok("rm", "-f", "-t", "0", n)
    os.unlink(tar)
