"""containerd 1.6 (containerd-shim-runc-v2 / go-runc) driving ociruntime through ``ctr``.

A private containerd (own config, root, state, gRPC socket) runs in the private mount namespace;
every container is started with ``ctr run --runc-binary <wrapper>``, so the shim calls
``<wrapper> --root /run/containerd/runc/<ns> --log <bundle>/log.json --log-format json …``.
The spec's ``cgroupsPath`` is ``/<ns>/<id>``: the tests read ``/sys/fs/cgroup/<ctrl>/<ns>/<id>``.
"""

import difflib
import json
import os
import uuid

import pytest

from clients_env import (IMAGE, TRAP_LOOP, VIEW_SCRIPT, normalize_view, read_file, runtime_commands,
                         v1_cgroup_file, wait_for)
from ociruntime.testing.plugin import default_runtime_path

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

CMDS = runtime_commands(default_runtime_path() or "ociruntime")


def needs(cmd):
    return pytest.mark.xfail(cmd not in CMDS, strict=True, reason=f"needs {cmd}")


# ctr resizes the pty only after the task started (HandleConsoleResize): wait for it to arrive
WAIT_SIZE = ('for i in $(seq 100); do s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "$s" != "0 0" ] && break; '
             'sleep 0.05; done; echo size=$s')


def new_id(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_detached(ctr, *extra, cmd=TRAP_LOOP):
    """``ctr run -d`` with the container's stdout/stderr in a file (``--log-uri file://``);
    waits for 'ready'. Returns (id, log path)."""
    cid = new_id()
    log = ctr.p("shared", cid + ".log")
    r = ctr.ctr("run", "-d", "--runc-binary", ctr.wrapper, "--log-uri", "file://" + log, *extra,
                IMAGE, cid, "sh", "-c", cmd)
    assert r.ok, f"{r}\n--- runtime calls:\n{ctr.calls_tail()}"
    wait_for(lambda: "ready" in (read_file(log, "") or ""), what=f"'ready' from {cid}")
    return cid, log


def tasks(ctr):
    """{task id: (pid, status)} from ``ctr task ls``."""
    out = {}
    for line in ctr.ctr_ok("tasks", "ls").out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            out[parts[0]] = (int(parts[1]), parts[2])
    return out


def task_status(ctr, cid):
    return tasks(ctr).get(cid, (None, None))[1]


def remove(ctr, cid):
    """Delete a stopped task and its container (snapshot included)."""
    ctr.ctr_ok("tasks", "rm", cid, timeout=60)
    ctr.ctr_ok("containers", "rm", cid, timeout=60)


def calls(ctr, mark, sub):
    return [a for a in ctr.calls_argv(mark) if f" {sub} " in f" {a} "]


def cgroup(ctr, cid):
    return f"/{ctr.ctd_ns}/{cid}"


# ------------------------------------------------------------------------------------ tests

def test_ctr_run_rm(ctr):
    cid = new_id()
    mark = ctr.calls_mark()
    r = ctr.ctr("run", "--rm", "--runc-binary", ctr.wrapper, IMAGE, cid,
                "sh", "-c", "echo hello-from-$((6*7)); echo err >&2; exit 4")
    assert r.rc == 4, f"{r}\n{ctr.calls_since(mark)}"
    assert r.out == "hello-from-42\n", r
    assert "err" in r.err, r
    argv = ctr.calls_argv(mark)
    root = f"--root /run/containerd/runc/{ctr.ctd_ns} --log "
    assert argv and all(a.startswith(root) and " --log-format json " in a for a in argv), argv
    subs = [a.split(" --log-format json ", 1)[1].split()[0] for a in argv]
    assert subs[:2] == ["create", "start"] and "delete" in subs, subs
    assert ctr.ctr_ok("containers", "ls", "-q").out.strip() == ""
    assert not os.path.exists(ctr.p("run", "containerd", "runc", ctr.ctd_ns, cid))


def test_ctr_detached_exec(ctr):
    cid, log = run_detached(ctr, "--env", "CTR_VAR=v1")
    mark = ctr.calls_mark()
    r = ctr.ctr("task", "exec", "--exec-id", "x1", cid, "sh", "-c", "echo out-$CTR_VAR; exit 5")
    assert r.rc == 5, f"{r}\n{ctr.calls_since(mark)}"
    assert r.out == "out-v1\n", r
    ex = calls(ctr, mark, "exec")
    assert ex and "--process" in ex[0] and "--detach" in ex[0] and "--pid-file" in ex[0], ex
    r = ctr.ctr("task", "exec", "--exec-id", "x2", "--user", "1000", "--cwd", "/tmp", cid,
                "sh", "-c", "id -u; pwd")
    assert r.ok and r.out.split() == ["1000", "/tmp"], r
    r = ctr.ctr("task", "exec", "--exec-id", "x3", cid, "sh", "-c", "read x; echo got:$x",
                input=b"piped\n")
    assert r.ok and r.out == "got:piped\n", r
    ctr.ctr_ok("task", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED")
    remove(ctr, cid)


def test_ctr_kill(ctr):
    cid, log = run_detached(ctr)
    mark = ctr.calls_mark()
    ctr.ctr_ok("task", "kill", "-s", "SIGUSR1", cid)
    wait_for(lambda: "got-usr1" in read_file(log, ""), what="USR1 trap")
    assert any(a.endswith(f"kill {cid} 10") for a in calls(ctr, mark, "kill"))
    assert task_status(ctr, cid) == "RUNNING"
    ctr.ctr_ok("task", "kill", cid)  # SIGTERM
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED after SIGTERM")
    assert "got-term" in read_file(log, "")
    mark = ctr.calls_mark()
    remove(ctr, cid)
    subs = [a.split(" --log-format json ", 1)[1] for a in ctr.calls_argv(mark)]
    assert f"delete {cid}" in subs, subs
    assert not os.path.isdir(v1_cgroup_file("memory", cgroup(ctr, cid), "")), "cgroup left"


def test_ctr_kill_all_and_force_rm(ctr):
    cid, _ = run_detached(ctr)
    mark = ctr.calls_mark()
    ctr.ctr_ok("task", "kill", "--all", "-s", "SIGKILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED after kill --all")
    assert any(f"kill --all {cid} 9" in a for a in calls(ctr, mark, "kill")), ctr.calls_since(mark)
    remove(ctr, cid)


@needs("ps")
def test_ctr_ps(ctr):
    cid, _ = run_detached(ctr)
    pid = tasks(ctr)[cid][0]
    r = ctr.ctr("task", "exec", "-d", "--exec-id", "sleeper", cid, "sleep", "30")
    assert r.ok, r
    mark = ctr.calls_mark()
    r = ctr.ctr("task", "ps", cid)
    assert r.ok, f"{r}\n{ctr.calls_since(mark)}"
    pids = [int(line.split()[0]) for line in r.out.splitlines()[1:] if line.strip()]
    assert pid in pids and len(pids) >= 2, r
    assert any(f"ps --format json {cid}" in a for a in calls(ctr, mark, "ps"))
    ctr.ctr_ok("task", "kill", "--all", "-s", "SIGKILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED")
    remove(ctr, cid)


@needs("pause")
def test_ctr_pause_resume(ctr):
    cid, log = run_detached(ctr)
    freezer = v1_cgroup_file("freezer", cgroup(ctr, cid), "freezer.state")
    r = ctr.ctr("task", "pause", cid)
    assert r.ok, f"{r}\n{ctr.calls_tail(2000)}"
    assert task_status(ctr, cid) == "PAUSED"
    assert read_file(freezer, "").strip() == "FROZEN"
    r = ctr.ctr("task", "resume", cid)
    assert r.ok, r
    assert task_status(ctr, cid) == "RUNNING"
    assert read_file(freezer, "").strip() == "THAWED"
    r = ctr.ctr("task", "exec", "--exec-id", "after", cid, "echo", "resumed")
    assert r.ok and r.out == "resumed\n", r
    ctr.ctr_ok("task", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED")
    remove(ctr, cid)


def test_ctr_metrics(ctr):
    cid, _ = run_detached(ctr, "--memory-limit", str(80 << 20))
    r = ctr.ctr("task", "metrics", "--format", "json", cid)
    assert r.ok, r
    m = json.loads(r.out)
    data = m.get("Data") or m.get("data") or m
    text = json.dumps(data)
    assert "memory" in text.lower() and "pids" in text.lower(), text[:2000]
    r = ctr.ctr("task", "metrics", cid)
    assert r.ok, r
    rows = {line.split()[0]: line.split()[1:] for line in r.out.splitlines() if line.strip()}
    assert rows.get("memory.limit_in_bytes") == [str(80 << 20)], r.out
    assert int(rows["pids.current"][0]) >= 1, r.out
    assert int(rows["memory.usage_in_bytes"][0]) > 0, r.out
    ctr.ctr_ok("task", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED")
    remove(ctr, cid)


def test_ctr_tty_run(ctr):
    cid = new_id()
    mark = ctr.calls_mark()
    rc, out = ctr.pty_run(ctr.ctr_argv("run", "--rm", "-t", "--runc-binary", ctr.wrapper, IMAGE, cid,
                                       "sh", "-c", "tty; [ -t 0 ] && echo stdin-tty; " + WAIT_SIZE + "; exit 3"))
    text = out.decode(errors="replace")
    assert rc == 3, f"{text}\n{ctr.calls_since(mark)}"
    assert "/dev/pts/0" in text and "stdin-tty" in text and "size=24 80" in text, text
    creates = calls(ctr, mark, "create")
    assert creates and "--console-socket" in creates[0], creates


def test_ctr_exec_tty(ctr):
    cid, _ = run_detached(ctr)
    mark = ctr.calls_mark()
    rc, out = ctr.pty_run(ctr.ctr_argv("task", "exec", "-t", "--exec-id", "tty1", cid,
                                       "sh", "-c", "tty; [ -t 0 ] && echo stdin-tty; exit 2"))
    text = out.decode(errors="replace")
    assert rc == 2, f"{text}\n{ctr.calls_since(mark)}"
    assert "/dev/pts/" in text and "stdin-tty" in text, text
    ex = calls(ctr, mark, "exec")
    assert ex and "--console-socket" in ex[0], ex
    ctr.ctr_ok("task", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED")
    remove(ctr, cid)


def test_ctr_runtime_error_reported(ctr):
    """A failing create reaches ctr through log.json (the last "level":"error" line)."""
    cid = new_id()
    r = ctr.ctr("run", "--rm", "--runc-binary", ctr.wrapper, IMAGE, cid, "/no/such/binary")
    assert r.rc != 0, r
    assert "OCI runtime create failed" in r.err and "/no/such/binary" in r.err, r
    ctr.ctr("containers", "rm", cid)


# ------------------------------------------------------------------------------------ runc diff

RUNC = "/usr/sbin/runc"

VIEW_VARIANTS = {
    "default": [],
    "restricted": ["--read-only", "--cwd", "/tmp", "--env", "X=1", "--memory-limit", str(64 << 20),
                   "--cap-drop", "CAP_NET_RAW", "--seccomp"],
    "privileged-host-net": ["--privileged", "--net-host"],
}


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc (the reference) is not installed")
@pytest.mark.parametrize("variant", VIEW_VARIANTS)
def test_run_view_matches_runc(ctr, variant):
    """The same ``ctr run`` under runc and ociruntime (same container id): identical view."""
    cid = new_id("view")
    views = {}
    for rt in (RUNC, ctr.wrapper):
        r = ctr.ctr("run", "--rm", "--runc-binary", rt, *VIEW_VARIANTS[variant], IMAGE, cid,
                    "sh", "-c", VIEW_SCRIPT)
        assert r.ok, r
        views["runc" if rt == RUNC else "ociruntime"] = normalize_view(r.out + r.err, [cid])
    (ra, a), (rb, b) = views.items()
    if a != b:
        diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), ra, rb, lineterm="", n=1))
        raise AssertionError(f"the container sees something else under {rb} than under {ra}:\n{diff}")
    assert "== end" in a, a


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc (the reference) is not installed")
def test_exec_view_matches_runc(ctr):
    views = {}
    for rt in (RUNC, ctr.wrapper):
        cid = new_id("xview")
        log = ctr.p("shared", cid + ".log")
        ctr.ctr_ok("run", "-d", "--runc-binary", rt, "--log-uri", "file://" + log, IMAGE, cid,
                   "sh", "-c", TRAP_LOOP)
        try:
            wait_for(lambda: "ready" in (read_file(log, "") or ""), what="ready")
            r = ctr.ctr("task", "exec", "--exec-id", "v", "--user", "1000", "--cwd", "/home/test", cid,
                        "sh", "-c", VIEW_SCRIPT)
            assert r.ok, r
        finally:
            ctr.ctr("task", "kill", "-s", "SIGKILL", cid)
            wait_for(lambda: task_status(ctr, cid) in ("STOPPED", None), what="STOPPED")
            remove(ctr, cid)
        views["runc" if rt == RUNC else "ociruntime"] = normalize_view(r.out + r.err, [cid])
    (ra, a), (rb, b) = views.items()
    if a != b:
        diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), ra, rb, lineterm="", n=1))
        raise AssertionError(f"the exec'd process sees something else under {rb} than under {ra}:\n{diff}")
    assert "== end" in a, a


@needs("update")
@pytest.mark.parametrize("form", ["--resources -", "--resources=-"])
def test_shim_style_update_from_stdin(ctr, form):
    """``update --resources - ID`` with LinuxResources JSON on stdin, with the shim's global
    flags: what containerd's shim sends for CRI UpdateContainerResources and ``docker update``
    (ctr 1.6 has no ``task update``, so the call is made here exactly as go-runc makes it)."""
    cid, _ = run_detached(ctr, "--memory-limit", str(96 << 20))
    limit = v1_cgroup_file("memory", cgroup(ctr, cid), "memory.limit_in_bytes")
    assert read_file(limit, "").strip() == str(96 << 20)
    bundle = ctr.p("ctd", "state", "io.containerd.runtime.v2.task", ctr.ctd_ns, cid)
    res = {"memory": {"limit": 64 << 20, "swap": 64 << 20}, "pids": {"limit": 123},
           "cpu": {"shares": 512}}
    r = ctr.run([ctr.wrapper, "--root", f"/run/containerd/runc/{ctr.ctd_ns}",
                 "--log", os.path.join(bundle, "log.json"), "--log-format", "json",
                 "update", *form.split(), cid], input=json.dumps(res).encode())
    assert r.ok, f"{r}\n{ctr.calls_tail(2000)}"
    assert read_file(limit, "").strip() == str(64 << 20)
    assert read_file(v1_cgroup_file("pids", cgroup(ctr, cid), "pids.max"), "").strip() == "123"
    assert read_file(v1_cgroup_file("cpu", cgroup(ctr, cid), "cpu.shares"), "").strip() == "512"
    m = ctr.ctr_ok("task", "metrics", cid).out
    assert any(line.split()[:2] == ["memory.limit_in_bytes", str(64 << 20)] for line in m.splitlines()), m
    ctr.ctr_ok("task", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: task_status(ctr, cid) == "STOPPED", what="STOPPED")
    remove(ctr, cid)
