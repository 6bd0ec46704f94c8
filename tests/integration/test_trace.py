"""--trace FILE / $OCIRUNTIME_TRACE: a Chrome Trace Event Format timeline of every lifecycle call, with the
runtime's steps (cat "runtime") and the C init's (cat "init", reported over the sync socket); --debug logs
the same steps; a failure names the step, the system call, errno and the config pointer. Tracing off: the
init sends nothing extra (strace). Root, real kernel."""
import json
import os
import shutil
import subprocess

import pytest

from _util import RUNTIME
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def load(path):
    with open(path) as f:
        doc = json.load(f)
    evs = doc["traceEvents"]
    for e in evs:
        assert e["ph"] in ("X", "M"), e
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0, e
            assert e["cat"] in ("runtime", "init") and isinstance(e["pid"], int), e
    return [e for e in evs if e["ph"] == "X"], [e for e in evs if e["ph"] == "M"]


def children(evs, parent):
    """Events on parent's track that lie inside it and inside no other such event (direct children)."""
    inside = [e for e in evs if e is not parent and e["pid"] == parent["pid"] and e["ts"] >= parent["ts"] - 1
              and e["ts"] + e["dur"] <= parent["ts"] + parent["dur"] + 1]
    return [e for e in inside if not any(o is not e and o["ts"] <= e["ts"] and o["ts"] + o["dur"] >= e["ts"] + e["dur"]
                                         and o["dur"] > e["dur"] for o in inside)]


def coverage(evs, parent):
    return sum(e["dur"] for e in children(evs, parent)) / parent["dur"]


def test_traced_run_has_runtime_and_init_steps_that_account_for_the_time(env):
    b = env.bundle(args=("true",))
    out = os.path.join(env.tmp, "trace.json")
    cid = env.new_id()
    r = env.rt("--trace", out, "run", "--bundle", b.path, cid)
    assert r.rc == 0, r
    evs, meta = load(out)
    runtime = [e for e in evs if e["cat"] == "runtime"]
    init = [e for e in evs if e["cat"] == "init"]
    assert len(runtime) >= 10 and len(init) >= 10, (len(runtime), len(init))
    names = {e["name"] for e in runtime}
    assert {"load", "validate: schema", "plan", "cgroups: create", "spawn init", "sync: the init sets up",
            "state: state.json", "create", "start", "delete"} <= names, names
    inames = {e["name"] for e in init}
    assert {"unshare", "clone init", "mount", "device", "pivot_root", "masked path", "readonly path", "rlimit",
            "capabilities", "credentials", "seccomp", "lookup executable", "exec fifo wait",
            "startContainer hooks + execve"} <= inames, inames
    # the root span covers the command; its steps account for it (the gaps are bookkeeping)
    (root,) = [e for e in runtime if e["name"] == "ociruntime run"]
    assert coverage(runtime, root) >= 0.98, children(runtime, root)
    (run,) = [e for e in runtime if e["name"] == "run"]
    assert coverage(runtime, run) >= 0.95, [(e["name"], e["dur"]) for e in children(runtime, run)]
    (create,) = [e for e in runtime if e["name"] == "create"]
    assert coverage(runtime, create) >= 0.90, [(e["name"], e["dur"]) for e in children(runtime, create)]
    # the container init's steps are back to back: together they are its whole setup
    (sync,) = [e for e in runtime if e["name"] == "sync: the init sets up"]
    pid = next(m["pid"] for m in meta if m["args"]["name"] == "container init")
    mine = sorted((e for e in init if e["pid"] == pid and e["name"] != "startContainer hooks + execve"),
                  key=lambda e: e["ts"])
    span = mine[-1]["ts"] + mine[-1]["dur"] - mine[0]["ts"]
    assert sum(e["dur"] for e in mine) >= 0.99 * span
    assert sync["ts"] <= mine[0]["ts"] <= sync["ts"] + sync["dur"]
    # every mount step names its config field
    mounts = [e for e in init if e["name"] == "mount"]
    assert [e["args"]["pointer"] for e in mounts][:6] == [f"/mounts/{i}" for i in range(6)]
    assert not [e for e in evs if (e.get("args") or {}).get("open")]
    assert {m["args"]["name"] for m in meta} >= {"ociruntime run", "init stage-1 (setup)", "container init"}


def test_environment_variable_traces_create_start_delete_into_one_file(env):
    """Clients that cannot pass flags (containerd, podman) set OCIRUNTIME_TRACE; each call adds its
    events; start completes the init's exec fifo wait that create left open."""
    b = env.bundle(args=("true",))
    out = os.path.join(env.tmp, "env-trace.json")
    e = dict(os.environ, OCIRUNTIME_TRACE=out)
    cid = env.new_id()
    for args in (("create", "--bundle", b.path, cid), ("start", cid)):
        assert env.rt(*args, env=e).rc == 0
    assert env.wait_stopped(cid)
    assert env.rt("delete", cid, env=e).rc == 0
    evs, meta = load(out)
    roots = [x["name"] for x in evs if (x.get("args") or {}).get("root")]
    assert roots == ["ociruntime create", "ociruntime start", "ociruntime delete"]
    (wait,) = [x for x in evs if x["name"] == "exec fifo wait"]
    (go,) = [x for x in evs if x["name"] == "wait for execve"]
    assert "open" not in wait.get("args", {}) and wait["ts"] + wait["dur"] <= go["ts"] + go["dur"]
    assert wait["dur"] > 0


def test_failure_names_step_syscall_errno_and_pointer(env, tmp_path):
    b = env.bundle(args=("true",))
    out = os.path.join(env.tmp, "fail.json")
    wrapper = os.path.join(env.tmp, "rt-nokill")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec setpriv --bounding-set -kill -- {RUNTIME} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = subprocess.run([wrapper, "--root", env.root, "--trace", out, "create", "--bundle", b.path, cid],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "capset: operation not permitted (step 'capabilities', config /process/capabilities, errno EPERM)" \
        in r.stderr, r.stderr
    snap.assert_clean()
    evs, _ = load(out)
    (err,) = [e for e in evs if e["name"] == "error"]
    assert err["args"] == {"step": "capabilities", "detail": "", "pointer": "/process/capabilities",
                           "errno": "EPERM", "message": "capset: operation not permitted"}
    (failed,) = [e for e in evs if e["cat"] == "init" and (e.get("args") or {}).get("errno")]
    assert failed["name"] == "capabilities" and failed["args"]["errno"] == "EPERM"
    assert [e for e in evs if e["name"] == "rollback"]


def test_debug_logs_the_same_steps(env):
    b = env.bundle(args=("true",))
    log = os.path.join(env.tmp, "debug.log")
    cid = env.new_id()
    r = env.rt("--debug", "--log", log, "--log-format", "json", "run", "--bundle", b.path, cid)
    assert r.rc == 0, r
    lines = [json.loads(x) for x in open(log)]
    steps = [x for x in lines if x["level"] == "debug" and " step: " in x["msg"]]
    assert {x["msg"] for x in steps} >= {"runtime step: plan", "runtime step: spawn init", "init step: mount",
                                         "init step: capabilities", "init step: pivot_root"}
    (m,) = [x for x in steps if x["msg"] == "init step: mount" and x.get("detail") == "/proc"]
    assert m["pointer"] == "/mounts/0" and float(m["ms"]) >= 0


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is installed by make test")
@pytest.mark.parametrize("traced", [False, True])
def test_tracing_off_the_init_sends_nothing_extra(env, traced):
    """The init's SYNC_TRACE messages (type 0x4c: "P\\0\\0\\0") exist only when tracing is on."""
    b = env.bundle(args=("true",))
    log = os.path.join(env.tmp, f"strace-{traced}.txt")
    cid = env.new_id()
    extra = ["--trace", os.path.join(env.tmp, "t.json")] if traced else []
    # `run` (not create): strace -f follows the init until it has exec'd `true` and exited
    with open(os.path.join(env.tmp, "out"), "w+") as out:
        r = subprocess.run(["strace", "-f", "-qq", "-s", "16", "-e", "trace=sendto,sendmsg", "-o", log, RUNTIME,
                            "--root", env.root, *extra, "run", "--bundle", b.path, cid],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=50)
        out.seek(0)
        assert r.returncode == 0, out.read()
    sends = open(log).read()
    assert ('"P\\0\\0\\0' in sends) == traced


def test_traced_exec_has_the_exec_inits_steps(env):
    b = env.bundle(args=("sleep", "30"))
    cid, r = env.create(b)
    assert r.rc == 0, r
    env.rt("start", cid).check()
    out = os.path.join(env.tmp, "exec.json")
    r = env.rt("--trace", out, "exec", cid, "true")
    assert r.rc == 0, r
    evs, meta = load(out)
    init = [e for e in evs if e["cat"] == "init"]
    # one setns(pidfd, flags) joins them all where the kernel can (issue 17); else one setns per path
    joined = [e["args"]["detail"].rsplit("/", 1)[1] for e in init if e["name"] == "setns"] or \
        [n for e in init if e["name"] == "setns pidfd" for n in e["args"]["detail"].split()]
    assert joined == ["ipc", "uts", "net", "pid", "mnt", "cgroup"]
    assert {"capabilities", "credentials", "lookup executable", "clone init"} <= {e["name"] for e in init}
    (root,) = [e for e in evs if e["name"] == "ociruntime exec"]
    assert coverage([e for e in evs if e["cat"] == "runtime"], root) >= 0.98
