"""create / start / state / kill / delete / run / list at the bundle level (runtime.md
"Operations", cli-contract §4–§6)."""

import json
import os
import signal

import pytest

from ociruntime.testing import proc_start_time, wait_for

pytestmark = pytest.mark.oci_root


def _alive(pid):
    return proc_start_time(pid) is not None


def test_lifecycle(oci_runtime, waiting_bundle, ctl):
    rt = oci_runtime
    cid = rt.new_id()
    rt.create(cid, waiting_bundle).check("create")
    st = rt.state(cid)
    assert st["status"] == "created"
    assert isinstance(st["pid"], int) and st["pid"] > 0
    pid = st["pid"]
    assert _alive(pid), "state.pid of a created container must be a live process"
    assert not ctl.exists("started"), "process.args ran before start"

    rt.start(cid).check("start")
    ctl.wait("started")
    st = rt.state(cid)
    assert st["status"] == "running"
    assert st["pid"] == pid

    ctl.touch("go")
    st = rt.wait_stopped(cid)
    assert st["pid"] == 0
    assert not _alive(pid)

    rt.delete(cid).check("delete")
    r = rt.state_result(cid)
    assert r.rc != 0
    assert "does not exist" in r.output
    assert cid not in rt.container_dirs()


def test_create_does_not_run_process(oci_runtime, waiting_bundle, ctl):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    # give a (wrong) runtime time to run the process anyway
    import time
    time.sleep(0.3)
    assert not ctl.exists("started")
    assert oci_runtime.state(cid)["status"] == "created"


def test_duplicate_id_rejected(oci_runtime, waiting_bundle):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    pid = oci_runtime.state(cid)["pid"]
    r = oci_runtime.create(cid, waiting_bundle)
    assert r.rc != 0
    assert "already exists" in r.output
    st = oci_runtime.state(cid)
    assert st["status"] == "created" and st["pid"] == pid


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_run_exit_code(oci_runtime, bundle, code):
    r = oci_runtime.run_shell(bundle, f"echo out; echo err >&2; exit {code}")
    assert r.rc == code, r.describe()
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr


def test_run_exit_code_killed_by_signal(oci_runtime, bundle):
    # pid 1 of a pid namespace cannot SIGKILL itself: share the host pid namespace
    bundle.remove_namespace("pid")
    r = oci_runtime.run_shell(bundle, "kill -9 $$")
    assert r.rc == 128 + 9, r.describe()


def test_run_removes_container(oci_runtime, bundle):
    cid = oci_runtime.new_id()
    oci_runtime.run_shell(bundle, "true", id=cid).check()
    assert oci_runtime.state_result(cid).rc != 0
    assert cid not in oci_runtime.container_dirs()


def test_pid_file(oci_runtime, waiting_bundle, oci_tmp):
    pid_file = os.path.join(oci_tmp, "init.pid")
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle, pid_file=pid_file).check()
    with open(pid_file) as f:
        content = f.read()
    assert content.isdigit() and content.isascii(), repr(content)
    assert int(content) == oci_runtime.state(cid)["pid"]


def test_pid_file_relative_to_caller_cwd(oci_runtime, waiting_bundle, oci_tmp):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle, pid_file="rel.pid", cwd=oci_tmp).check()
    with open(os.path.join(oci_tmp, "rel.pid")) as f:
        content = f.read()
    assert content.isdigit()
    assert int(content) == oci_runtime.state(cid)["pid"]


TRAP_SCRIPT = ("trap 'echo {sig} > /ctl/got.tmp; mv /ctl/got.tmp /ctl/got; exit 0' {sig}; touch /ctl/ready; "  # got appears whole
               "while :; do sleep 0.02; done")


@pytest.mark.parametrize("spec,sig", [
    ("USR1", "USR1"), ("SIGUSR1", "USR1"), ("usr1", "USR1"), ("sigusr1", "USR1"),
    (str(int(signal.SIGUSR1)), "USR1"), ("HUP", "HUP"), ("SIGTERM", "TERM"),
    (None, "TERM"),
])
def test_kill_signal_reaches_process(oci_runtime, bundle, ctl, spec, sig):
    ctl.attach(bundle)
    bundle.set_shell(TRAP_SCRIPT.format(sig=sig))
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    oci_runtime.start(cid).check()
    ctl.wait("ready")
    oci_runtime.kill(cid, spec).check(f"kill {spec}")
    assert ctl.wait("got").strip() == sig
    oci_runtime.wait_stopped(cid)


@pytest.mark.parametrize("spec", ["KILL", "SIGKILL", "9", "kill"])
def test_kill_kills_running(oci_runtime, waiting_bundle, ctl, spec):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    oci_runtime.start(cid).check()
    ctl.wait("started")
    pid = oci_runtime.state(cid)["pid"]
    oci_runtime.kill(cid, spec).check()
    st = oci_runtime.wait_stopped(cid)
    assert st["pid"] == 0
    wait_for(lambda: not _alive(pid), timeout=5, what="init to die")


def test_kill_created_container(oci_runtime, waiting_bundle, ctl):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    oci_runtime.kill(cid, "KILL").check()
    oci_runtime.wait_stopped(cid)
    assert not ctl.exists("started")


def test_kill_unknown_signal(oci_runtime, waiting_bundle):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    r = oci_runtime.kill(cid, "NOSUCHSIG")
    assert r.rc != 0
    assert oci_runtime.state(cid)["status"] == "created"


def test_kill_stopped_fails_without_effect(oci_runtime, bundle):
    bundle.set_args("true")
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    oci_runtime.start(cid).check()
    oci_runtime.wait_stopped(cid)
    before = oci_runtime.state_result(cid).stdout
    r = oci_runtime.kill(cid, "KILL")
    assert r.rc != 0
    assert "not running" in r.output
    assert oci_runtime.state_result(cid).stdout == before
    # --all (hidden, sent by containerd/podman/CRI-O) turns "not running" into success
    assert oci_runtime.kill(cid, "KILL", all=True).rc == 0
    assert oci_runtime.state_result(cid).stdout == before


def test_start_twice_fails_without_effect(oci_runtime, waiting_bundle, ctl):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    oci_runtime.start(cid).check()
    ctl.wait("started")
    before = oci_runtime.state(cid)
    r = oci_runtime.start(cid)
    assert r.rc != 0
    assert "already running" in r.output
    after = oci_runtime.state(cid)
    assert after == before


def test_start_stopped_fails(oci_runtime, bundle):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    oci_runtime.start(cid).check()
    before = oci_runtime.wait_stopped(cid)
    r = oci_runtime.start(cid)
    assert r.rc != 0
    assert "stopped" in r.output
    assert oci_runtime.state(cid) == before


def test_delete_running_fails_without_force(oci_runtime, waiting_bundle, ctl):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    oci_runtime.start(cid).check()
    ctl.wait("started")
    before = oci_runtime.state(cid)
    r = oci_runtime.delete(cid)
    assert r.rc != 0
    assert "not stopped" in r.output
    assert oci_runtime.state(cid) == before
    oci_runtime.delete(cid, force=True).check("delete --force")
    assert oci_runtime.state_result(cid).rc != 0
    wait_for(lambda: not _alive(before["pid"]), timeout=5, what="init to die")


def test_delete_created_kills_and_removes(oci_runtime, waiting_bundle, ctl):
    # runc (and containerd, which relies on it) deletes a created container without --force
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, waiting_bundle).check()
    pid = oci_runtime.state(cid)["pid"]
    oci_runtime.delete(cid).check()
    assert oci_runtime.state_result(cid).rc != 0
    wait_for(lambda: not _alive(pid), timeout=5, what="init to die")
    assert not ctl.exists("started")


def test_delete_force_missing_id_succeeds_silently(oci_runtime):
    r = oci_runtime.delete(oci_runtime.new_id(), force=True)
    assert r.rc == 0
    assert r.stdout == "" and r.stderr == ""


@pytest.mark.parametrize("cmd", ["state", "delete", "start", "kill"])
def test_missing_id(oci_runtime, cmd):
    cid = oci_runtime.new_id()
    r = getattr(oci_runtime, cmd)(cid) if cmd != "state" else oci_runtime.state_result(cid)
    assert r.rc == 1
    assert "does not exist" in r.output
    assert r.stdout == ""


@pytest.mark.parametrize("bad", [".", "..", "a/b", "foo bar", "../escape", ""])
def test_bad_ids_rejected(oci_runtime, bundle, bad):
    rt = oci_runtime
    parent = os.path.dirname(rt.root)
    os.makedirs(rt.root, mode=0o700, exist_ok=True)
    parent_before = sorted(os.listdir(parent))
    r = rt.create(bad, bundle)
    assert r.rc != 0, r.describe()
    if bad:
        assert "invalid container ID format" in r.output
    assert rt.container_dirs() == []
    r = rt.state_result(bad)
    assert r.rc != 0
    r = rt.delete(bad, force=True)
    assert sorted(os.listdir(parent)) == parent_before
    assert os.path.isdir(rt.iodir)


def test_list(oci_runtime, make_test_bundle):
    rt = oci_runtime
    ids = []
    for _ in range(2):
        b = make_test_bundle(args=["sleep", "100"])
        cid = rt.new_id()
        rt.create(cid, b).check()
        ids.append((cid, b))
    r = rt.list(format="json").check()
    assert r.stdout.endswith("\n") and "\n" not in r.stdout[:-1]
    data = json.loads(r.stdout)
    assert sorted(c["id"] for c in data) == sorted(c for c, _ in ids)
    for c, b in ids:
        entry = next(e for e in data if e["id"] == c)
        assert entry["status"] == "created"
        assert entry["pid"] == rt.state(c)["pid"] > 0
        assert entry["bundle"] == b.path
        assert list(entry)[:7] == ["ociVersion", "id", "pid", "status", "bundle", "rootfs",
                                   "created"]
        assert entry["owner"] == "root"
    q = rt.list(quiet=True).check()
    assert sorted(q.stdout.split("\n")[:-1]) == sorted(c for c, _ in ids)
    assert q.stdout.endswith("\n")
    table = rt.list().check().stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted(c for c, _ in ids)
    for c, _ in ids:
        rt.delete(c, force=True).check()
    r = rt.list(format="json").check()
    assert r.stdout == "null\n"
    assert rt.list(quiet=True).check().stdout == ""


def test_list_invalid_format(oci_runtime, bundle):
    oci_runtime.create(None, bundle).check()
    r = oci_runtime.list(format="yaml")
    assert r.rc != 0
    assert "invalid format option" in r.output
