"""Hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): each hook appends
``<name> <state JSON>`` to a log; the test checks which ran when, in which order, with which
state on stdin."""

import json
import os

import pytest

from ociruntime.testing import HOOK_KINDS

pytestmark = pytest.mark.oci_root


class HookLog:
    def __init__(self, d):
        self.dir = d
        self.path = os.path.join(d, "hooks.log")
        open(self.path, "w").close()
        os.chmod(self.path, 0o666)

    def entries(self):
        out = []
        with open(self.path) as f:
            for line in f:
                name, _, body = line.rstrip("\n").partition(" ")
                out.append((name, json.loads(body)))
        return out

    def names(self):
        return [n for n, _ in self.entries()]


@pytest.fixture
def hooklog(oci_tmp):
    d = os.path.join(oci_tmp, "hooks")
    os.makedirs(d)
    os.chmod(d, 0o777)
    return HookLog(d)


def add_all_hooks(bundle, hooklog, kinds=HOOK_KINDS):
    # the log lives at the same path inside the container (bind mount) so that hooks run in
    # the container's namespaces (createContainer, startContainer) reach it too
    for k in kinds:
        bundle.add_logging_hook(k, hooklog.path)
    bundle.add_bind_mount(hooklog.dir, hooklog.dir)


def test_hooks_order_and_state(oci_runtime, bundle, hooklog):
    add_all_hooks(bundle, hooklog)
    bundle.set_args("true")
    bundle.write()
    rt = oci_runtime
    cid = rt.new_id()
    rt.create(cid, bundle).check()
    state_pid = rt.state(cid)["pid"]
    after_create = hooklog.names()
    assert after_create[:3] == ["prestart", "createRuntime", "createContainer"]
    # runc runs poststart at the end of create (cli-contract §6.2); runtime.md says after start
    assert set(after_create[3:]) <= {"poststart"}
    assert "startContainer" not in after_create

    rt.start(cid).check()
    rt.wait_stopped(cid)
    after_start = hooklog.names()
    assert "startContainer" in after_start and "poststart" in after_start
    assert after_start.index("startContainer") > after_start.index("createContainer")
    assert "poststop" not in after_start

    rt.delete(cid).check()
    entries = hooklog.entries()
    names = [n for n, _ in entries]
    assert names[-1] == "poststop"
    assert sorted(names) == sorted(HOOK_KINDS), "every hook must run exactly once"

    real_bundle = os.path.realpath(bundle.path)
    for name, st in entries:
        assert st["id"] == cid, name
        assert st["bundle"] == real_bundle, name
        assert isinstance(st.get("ociVersion"), str), name
    by_name = dict(entries)
    # the spec names no status for the deprecated prestart: runc says "creating", runtime-tools'
    # hooks_stdin expects "created"
    assert by_name["prestart"]["status"] in ("creating", "created")
    assert by_name["createRuntime"]["status"] == "creating"
    assert by_name["createContainer"]["status"] == "creating"
    assert by_name["poststop"]["status"] == "stopped"
    assert by_name["prestart"]["pid"] == state_pid
    assert by_name["createRuntime"]["pid"] == state_pid
    assert by_name["poststart"]["pid"] == state_pid
    assert by_name["createContainer"]["pid"] > 0
    assert by_name["startContainer"]["pid"] > 0


def test_hook_args_and_env(oci_runtime, bundle, hooklog):
    out = os.path.join(hooklog.dir, "prestart.out")
    # the hook's stdout is not the container's: it writes to a file named by its $2
    bundle.add_hook("prestart", "/bin/sh",
                    ["sh", "-c", '{ echo "$0 $1 $HOOK_VAR"; env; } > "$2"', "zero", "one", out],
                    env=["HOOK_VAR=hook value", "PATH=/usr/bin:/bin"])
    bundle.set_args("true")
    bundle.write()
    oci_runtime.run(None, bundle).check()
    with open(out) as f:
        lines = f.read().splitlines()
    assert lines[0] == "zero one hook value"
    env = set(lines[1:])
    assert "HOOK_VAR=hook value" in env
    assert not any(line.startswith("PYTEST_CURRENT_TEST=") for line in env), \
        "hooks must get exactly hook.env, not the runtime's environment"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create(oci_runtime, bundle, hooklog, kind):
    bundle.add_hook(kind, "/bin/sh", ["sh", "-c", "exit 3"])
    add_all_hooks(bundle, hooklog, kinds=["poststop"])
    bundle.set_args("true")
    bundle.write()
    cid = oci_runtime.new_id()
    r = oci_runtime.create(cid, bundle)
    assert r.rc != 0
    assert oci_runtime.state_result(cid).rc != 0
    assert cid not in oci_runtime.container_dirs()


def test_no_hooks_run_for_state_and_list(oci_runtime, bundle, hooklog):
    add_all_hooks(bundle, hooklog)
    bundle.set_args("true")
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    n = len(hooklog.names())
    oci_runtime.state(cid)
    oci_runtime.list().check()
    assert len(hooklog.names()) == n
