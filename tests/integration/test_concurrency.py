"""Concurrent lifecycle commands on one container id (security.md §3 #9, §4): the atomic mkdir claim,
the per-container flock and the tombstone delete must make every race end in a consistent state,
with one error line (never a traceback) for every loser.
"""

import os
import re
import tempfile

import pytest

from _util import Result, memfd_inits, descends_from_us, pid_alive, wait_for
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(45)]


class Batch:
    """Start several runtime commands at once; results in start order."""

    def __init__(self, env):
        self.env = env
        self.procs = []

    def add(self, *args, stdout=None, root=None):
        out = tempfile.TemporaryFile(dir=self.env.tmp)
        err = tempfile.TemporaryFile(dir=self.env.tmp)
        p = self.env.rt.popen(*args, stdout=stdout if stdout is not None else out, stderr=err, root=root)
        self.procs.append((args, p, out, err))
        return self

    def wait(self, timeout=30):
        results = []
        for args, p, out, err in self.procs:
            rc = p.wait(timeout=timeout)
            out.seek(0)
            err.seek(0)
            results.append(Result(p.args, rc, out.read().decode(errors="replace"),
                                  err.read().decode(errors="replace")))
            out.close()
            err.close()
        return results


def assert_clean_output(r, allowed_errors):
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r
    if r.rc != 0:
        assert r.error_msg() in allowed_errors, r
    elif r.argv[3] == "list":
        # runc list: an entry that fails to load (e.g. mid-create, no state.json yet) is reported and skipped
        for line in r.stderr.splitlines():
            assert re.match(r"load container \S+: ", line), r
    else:
        assert len(r.stderr.splitlines()) == 0, r


def _our_inits():
    return {p for p in memfd_inits() if descends_from_us(p)}


@pytest.mark.parametrize("n", [2, 10])
def test_concurrent_create_same_id(env, n):
    b = env.bundle()
    cid = env.new_id()
    snap = env.snapshot(cid)
    inits_before = _our_inits()
    batch = Batch(env)
    for _ in range(n):
        batch.add("create", "--bundle", b.path, cid)
    results = batch.wait()
    winners = [r for r in results if r.rc == 0]
    assert len(winners) == 1, results
    for r in results:
        if r.rc != 0:
            assert r.error_msg() == "ociruntime create failed: container with given ID already exists", r
        assert "Traceback" not in r.stderr
    st = env.rt.state(cid)
    assert st and st["status"] == "created", "a loser removed or damaged the winner's state"
    assert pid_alive(st["pid"])
    assert os.path.exists(os.path.join(env.root, cid, "exec.fifo"))
    assert sorted(os.listdir(env.root)) == [cid], "losers left state behind (or tombstones)"
    assert _our_inits() - inits_before == {st["pid"]}, "a loser left an init behind"
    env.rt("delete", "--force", cid).check()
    snap.assert_clean()


def test_concurrent_create_distinct_ids_fresh_root(env):
    """The state root does not exist yet: every create races to make it; all succeed."""
    root = os.path.join(env.tmp, "fresh", "root")
    env.extra_roots.append(root)
    b = env.bundle()
    ids = [env.new_id() for _ in range(6)]
    batch = Batch(env)
    for cid in ids:
        batch.add("create", "--bundle", b.path, cid, root=root)
    results = batch.wait()
    assert all(r.rc == 0 for r in results), results
    assert sorted(os.listdir(root)) == sorted(ids)
    for cid in ids:
        r = env.rt("state", cid, root=root)
        assert r.rc == 0, r
    for cid in ids:
        env.rt("delete", "--force", cid, root=root).check()
    assert os.listdir(root) == []


@pytest.mark.parametrize("status", ["created", "running"])
def test_concurrent_kill_and_delete(env, status):
    b = env.bundle()
    cid = env.created(b) if status == "created" else env.running(b)
    pid = env.rt.init_pid(cid)
    snap = env.snapshot(cid)
    batch = Batch(env)
    plan = [("kill", cid, "KILL"), ("delete", "--force", cid), ("state", cid), ("kill", cid, "TERM"),
            ("delete", "--force", cid), ("kill", "--all", cid, "KILL"), ("delete", cid), ("state", cid),
            ("delete", "--force", cid), ("kill", cid, "0"), ("list",), ("start", cid)]
    for args in plan:
        batch.add(*args)
    results = batch.wait()
    allowed = {"container does not exist", "container not running", "cannot start a container that has stopped",
               "cannot start an already running container", "container process is already dead",
               f"cannot delete container {cid} that is not stopped: running"}
    for args, r in zip(plan, results):
        assert_clean_output(r, allowed)
        if args[:2] == ("delete", "--force"):
            assert r.rc == 0, r
    assert wait_for(lambda: not pid_alive(pid))
    r = env.rt("state", cid)
    assert r.rc != 0 and r.error_msg() == "container does not exist", r
    snap.assert_clean()


@pytest.mark.parametrize("n", [2, 6])
def test_concurrent_start(env, n):
    out = os.path.join(env.tmp, "out")
    b = env.bundle(args=("sh", "-c", "echo RAN; sleep 2"))
    with open(out, "wb") as f:
        cid = env.created(b, stdout=f)
    batch = Batch(env)
    for _ in range(n):
        batch.add("start", cid)
    results = batch.wait()
    assert sum(r.rc == 0 for r in results) == 1, results
    for r in results:
        assert_clean_output(r, {"cannot start an already running container",
                                "cannot start a container that has stopped"})
    assert wait_for(lambda: "RAN" in open(out).read())
    assert open(out).read().count("RAN") == 1, "the container process ran more than once"
    assert env.rt.status(cid) == "running"


def test_delete_and_kill_during_create(env):
    """delete/kill/state issued while create is still running its hooks: no traceback, and the end state
    is consistent (the container either fully exists or is fully gone)."""
    b = env.bundle()
    b.spec["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "0.5"]}]}
    b.write()
    cid = env.new_id()
    snap = env.snapshot(cid)
    batch = Batch(env)
    batch.add("create", "--bundle", b.path, cid)
    assert wait_for(lambda: os.path.isdir(os.path.join(env.root, cid)), timeout=5)
    plan = [("state", cid), ("kill", cid, "KILL"), ("delete", cid), ("delete", "--force", cid), ("list",)]
    for args in plan:
        batch.add(*args)
    results = batch.wait()
    allowed = {"container does not exist", "container not running",
               "ociruntime create failed: container init exited unexpectedly"}
    for r in results:
        assert_clean_output(r, allowed)
    r = env.rt("state", cid)
    if r.rc == 0:
        assert r.stdout and env.rt.status(cid) in ("created", "stopped")
        env.rt("delete", "--force", cid).check()
    else:
        assert r.error_msg() == "container does not exist"
    snap.assert_clean()


def test_concurrent_create_and_delete_loop(env):
    """Create/delete --force the same id back to back from two sides, a few rounds."""
    b = env.bundle()
    cid = env.new_id()
    snap = env.snapshot(cid)
    for _ in range(3):
        batch = Batch(env)
        batch.add("create", "--bundle", b.path, cid)
        batch.add("delete", "--force", cid)
        batch.add("create", "--bundle", b.path, cid)
        batch.add("delete", "--force", cid)
        results = batch.wait()
        for r in results:
            assert_clean_output(r, {"ociruntime create failed: container with given ID already exists",
                                    "container does not exist"})
        env.rt("delete", "--force", cid).check()
    snap.assert_clean()
