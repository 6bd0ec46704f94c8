"""containerd 1.6's checkpoint/restore (``ctr containers checkpoint --task`` / ``ctr containers restore
--live``) with ociruntime as the shim's runc binary. The shim passes ``--criu PATH`` when its runtime
options name a CRIU (CriuPath); ctr cannot set that option, so the runc binary here is a two-line wrapper
adding ``--criu`` (`make criu`'s CRIU) in front of the logging wrapper.
"""
import os
import re
import sys

import pytest

from clients_env import IMAGE, read_file, wait_for
from test_containerd import new_id, task_status

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from criu_util import criu_bin  # noqa: E402,F401

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

COUNT = "i=0; while :; do echo n=$i > /dev/shm/n; echo n=$i; i=$((i+1)); sleep 0.1; done"


def _counts(log):
    return [int(x) for x in re.findall(r"n=(\d+)", read_file(log, "") or "")]


def test_ctr_checkpoint_and_live_restore(ctr, criu_bin):
    wrapper = ctr.p("bin", "ociruntime-with-criu")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec {ctr.wrapper} --criu {criu_bin} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    cid = new_id("ck")
    log = ctr.p("shared", cid + ".log")
    r = ctr.ctr("run", "-d", "--runc-binary", wrapper, "--log-uri", "file://" + log, IMAGE, cid, "sh", "-c", COUNT)
    assert r.ok, f"{r}\n{ctr.calls_tail()}"
    assert wait_for(lambda: len(_counts(log)) >= 25, timeout=30, what="counter output")
    ref = f"localhost/ck/{cid}:1"
    mark = ctr.calls_mark()
    r = ctr.ctr("containers", "checkpoint", "--task", cid, ref, timeout=120)
    assert r.ok, f"{r}\n--- runtime calls:\n{ctr.calls_since(mark)}"
    calls = [a for a in ctr.calls_argv(mark) if " checkpoint " in f" {a} "]
    assert calls and "--image-path" in calls[0], calls
    # containerd's checkpoint leaves the task running; end it, then restore from the checkpoint image
    assert task_status(ctr, cid) == "RUNNING"
    at_ckpt = _counts(log)[-1]
    ctr.ctr_ok("tasks", "kill", "-s", "KILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="task stopped")
    ctr.ctr_ok("tasks", "rm", cid)
    ctr.ctr_ok("containers", "rm", cid)
    os.unlink(log)
    r = ctr.ctr("containers", "restore", "--live", cid, ref, timeout=120)
    assert r.ok, f"{r}\n--- runtime calls:\n{ctr.calls_since(mark)}"
    assert any(" restore " in f" {a} " for a in ctr.calls_argv(mark))
    assert task_status(ctr, cid) == "RUNNING"

    def n_now():
        out = ctr.ctr("tasks", "exec", "--exec-id", new_id("x"), cid, "cat", "/dev/shm/n").out
        m = re.search(r"n=(\d+)", out)
        return int(m.group(1)) if m else -1
    # the restored counter goes on from the checkpoint, not from 0 (/dev/shm, a tmpfs CRIU dumps and
    # restores, holds what the counter last wrote)
    assert wait_for(lambda: n_now() >= 0, timeout=20, what="the restored count")
    first = n_now()
    assert first >= at_ckpt - 5, (at_ckpt, first)  # a restart from 0 would be far below
    # within 2 s (a counter restarted from 0 would need 3 s to get back there)
    assert wait_for(lambda: n_now() > first, timeout=2, what="the restored count still goes on")
    ctr.ctr_ok("tasks", "kill", "-s", "KILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="restored task stopped")
    ctr.ctr_ok("tasks", "rm", cid)
    ctr.ctr_ok("containers", "rm", cid)
    ctr.ctr("images", "rm", ref)
    assert at_ckpt >= 24
