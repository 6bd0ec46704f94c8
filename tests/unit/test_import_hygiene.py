"""Start-up cost: the light commands (state, kill, delete, list, start) must not import the config
validators, the planner, the cffi shim or the heavy third-party packages; `create` with a valid
config must not import jsonschema (only used to explain a schema error) or pyroute2.

The light commands (state, list, start, kill without --all, and their error paths) must not even
import `os` (≈1.2 ms: _collections_abc and os.environ), `importlib`/`warnings` (the dispatch uses
__import__) or the cgroups package (state.is_frozen reads the freezer itself): they use `posix`.
Neither does a plain `delete` of a stopped container (ociruntime.cgremove removes its cgroups).

Each command runs in a fresh `python -I -S` interpreter (as the generated launcher does: no `site`,
which would import os itself) through a small wrapper that calls ociruntime.cli.main([...]) and then
writes sys.modules to a file. The runs against real containers need root (they are skipped
otherwise); the runs against a missing container do not.
"""

import ast
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ociruntime.demo import busybox_rootfs
from ociruntime.misc import default_spec

CLI = os.path.join(os.path.dirname(sys.executable), "ociruntime")

# imports nothing itself (not even json: it would pull in os) before or after main()
WRAPPER = r"""
import sys
out, paths, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path[:0] = paths.split("\n")
from ociruntime import cli
try:
    rc = cli.main(argv)
except SystemExit as e:
    rc = e.code
mods = sorted(sys.modules)
with open(out, "w") as f:
    f.write(repr({"rc": rc, "modules": mods}))
"""
PATHS = "\n".join([os.path.dirname(os.path.dirname(os.path.abspath(__import__("ociruntime").__file__)))] +
                   [p for p in sys.path if p and os.path.isdir(p)])

HEAVY = ("jsonschema", "referencing", "pyroute2", "cffi", "_cffi_backend", "ociruntime.plan",
         "ociruntime.schema", "ociruntime.validate", "ociruntime.config", "ociruntime._shim",
         "ociruntime.lifecycle.create", "ociruntime.trace", "ociruntime.check") + \
        ("google", "ociruntime.criu", "ociruntime.lifecycle.checkpoint")
# tracing off (no --trace, $OCIRUNTIME_TRACE or --debug): nothing of the trace, nothing of `check`;
# CRIU's RPC client and protobuf (tens of ms) are for checkpoint/restore only
NEVER_FOR_CREATE = ("jsonschema", "referencing", "pyroute2", "ociruntime.trace", "ociruntime.check", "google",
                    "ociruntime.criu", "ociruntime.lifecycle.checkpoint")
# the systemd cgroup driver's D-Bus client: only for --systemd-cgroup and the containers it made
SYSTEMD_DRIVER = ("jeepney", "ociruntime.cgroups.systemd", "ociruntime.cgroups.sdbus")
# what the light commands (state, list, start, kill without --all; delete of a missing container) no
# longer import: each is start-up CPU on every call
NEVER_FOR_LIGHT = ("os", "_collections_abc", "importlib", "warnings", "ociruntime.cgroups", "signal", "json")


def loaded(modules, names):
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def run_wrapped(tmp_path, *args, env=None):
    """Runs `ociruntime ARGS` through the wrapper; stdio go to files (a created container inherits
    them, so they must not be pipes). Returns (rc, modules, stdout, stderr)."""
    tag = uuid.uuid4().hex[:8]
    res = tmp_path / f"mods-{tag}.json"
    out, err = tmp_path / f"out-{tag}", tmp_path / f"err-{tag}"
    with open(out, "wb") as o, open(err, "wb") as e:
        subprocess.run([sys.executable, "-I", "-S", "-c", WRAPPER, str(res), PATHS, "ociruntime", *args],
                       stdin=subprocess.DEVNULL, stdout=o, stderr=e, timeout=60, check=False, env=env)
    data = ast.literal_eval(res.read_text())
    return data["rc"], data["modules"], out.read_text(), err.read_text()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir(mode=0o700)
    return str(r)


@pytest.mark.parametrize("args", [
    ["state", "nosuch"], ["kill", "nosuch", "KILL"], ["kill", "--all", "nosuch", "9"], ["delete", "nosuch"],
    ["delete", "--force", "nosuch"], ["list"], ["list", "--format", "json"], ["list", "-q"],
    ["start", "nosuch"], ["state", "bad/id"],
], ids=lambda a: " ".join(a))
def test_light_commands_without_container(tmp_path, root, args):
    rc, mods, out, err = run_wrapped(tmp_path, "--root", root, *args)
    assert rc in (0, 1), err
    assert loaded(mods, HEAVY) == []
    assert loaded(mods, NEVER_FOR_LIGHT) == []


def test_usage_errors_import_no_command_module(tmp_path):
    rc, mods, out, err = run_wrapped(tmp_path, "state")
    assert rc == 1
    assert loaded(mods, HEAVY + NEVER_FOR_LIGHT + ("ociruntime.lifecycle",)) == []


# --- against a real container (root) ---------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("/bin/busybox missing")
    d = tmp_path_factory.mktemp("hygiene-rootfs")
    os.chmod(d, 0o755)
    busybox_rootfs(str(d / "rootfs"))
    return str(d / "rootfs")


@pytest.fixture
def bundle(tmp_path, rootfs):
    b = tmp_path / "bundle"
    b.mkdir()
    s = default_spec()
    s["process"]["terminal"] = False
    s["process"]["args"] = ["sleep", "60"]
    s["root"]["path"] = rootfs
    s["hostname"] = "hygiene"
    (b / "config.json").write_text(json.dumps(s))
    return str(b)


@pytest.fixture
def container(root, bundle, request):
    """A unique id; whatever happens, it is force-deleted (and its init killed by pid) afterwards."""
    cid = "hyg-" + uuid.uuid4().hex[:12]

    def cleanup():
        pid = 0
        try:
            st = subprocess.run([CLI, "--root", root, "state", cid], capture_output=True, text=True, timeout=30)
            if st.returncode == 0:
                pid = json.loads(st.stdout)["pid"]
        except Exception:
            pass
        subprocess.run([CLI, "--root", root, "delete", "--force", cid], capture_output=True, timeout=60)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    request.addfinalizer(cleanup)
    return cid


@needs_root
def test_create_does_not_import_jsonschema_or_pyroute2(tmp_path, root, bundle, container):
    rc, mods, out, err = run_wrapped(tmp_path, "--root", root, "create", "--bundle", bundle, container)
    assert rc == 0, err
    assert loaded(mods, NEVER_FOR_CREATE + SYSTEMD_DRIVER) == []
    # sanity: it really created it (through the planner and the shim)
    assert "ociruntime.plan" in mods and "ociruntime._shim" in mods


@needs_root
def test_light_commands_on_a_real_container(tmp_path, root, bundle, container):
    rc, mods, out, err = run_wrapped(tmp_path, "--root", root, "create", "--bundle", bundle, container)
    assert rc == 0, err
    steps = [
        (["state", container], 0),
        (["list"], 0),
        (["list", "--format", "json"], 0),
        (["kill", container, "0"], 0),
        (["start", container], 0),
        (["state", container], 0),
        (["exec", container, "true"], 0),
        (["kill", container, "KILL"], 0),
    ]
    for args, want in steps:
        rc, mods, out, err = run_wrapped(tmp_path, "--root", root, *args)
        assert rc == want, (args, err)
        if args[0] == "exec":
            # argv form: the config's process is not schema-checked again (only a process.json is)
            assert loaded(mods, NEVER_FOR_CREATE + ("ociruntime.schema",)) == [], args
            assert "ociruntime._shim" in mods
            continue
        assert loaded(mods, HEAVY + SYSTEMD_DRIVER) == [], args
        assert loaded(mods, NEVER_FOR_LIGHT) == [], args  # KILL: the init of a private pid namespace
    deadline = time.monotonic() + 10
    while True:
        rc, mods, out, err = run_wrapped(tmp_path, "--root", root, "state", container)
        if json.loads(out)["status"] == "stopped":
            assert loaded(mods, NEVER_FOR_LIGHT) == []
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.05)
    for args in (["kill", "--all", container, "KILL"], ["delete", container]):
        rc, mods, out, err = run_wrapped(tmp_path, "--root", root, *args)
        assert rc == 0, (args, err)
        assert loaded(mods, HEAVY + SYSTEMD_DRIVER) == [], args
    # a plain delete of a stopped container (private pid namespace) removes its cgroups through
    # ociruntime.cgremove, without the cgroups package or os
    assert "ociruntime.cgremove" in mods
    assert loaded(mods, NEVER_FOR_LIGHT) == []
    assert os.listdir(root) == []


def test_launcher_entry_collects_garbage_rarely():
    """run_and_exit (the launcher's entry) raises the young-generation GC threshold: with the default
    700 a create collected several times (≈1.5 ms CPU, with copy-on-write faults after the clone)."""
    code = ("import gc, sys\n"
            "sys.path[:0] = sys.argv[1].split('\\n')\n"
            "from ociruntime import cli\n"
            "cli.main = lambda argv=None: (sys.stdout.write(repr(gc.get_threshold())), 0)[1]\n"
            "cli.run_and_exit()\n")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code, PATHS], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert ast.literal_eval(r.stdout)[0] >= 10000


def test_default_root_lookup_stays_light(tmp_path):
    """No --root, $XDG_RUNTIME_DIR set and $USER unset (a root shell often has both): default_root
    asks whether we are in a user namespace, which must not pull in the cgroups package or os."""
    env = {k: v for k, v in os.environ.items() if k != "USER"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    rc, mods, _, err = run_wrapped(tmp_path, "state", "no-such-" + uuid.uuid4().hex[:8], env=env)
    assert rc != 0 and "does not exist" in err
    assert loaded(mods, NEVER_FOR_LIGHT) == []


def test_checkpoint_loads_protobuf_only_on_its_path(tmp_path, root):
    """`checkpoint` of a missing container imports the lifecycle module and the RPC client (a leaf) but
    never builds the protobuf classes: those are made on the first request to CRIU."""
    rc, mods, out, err = run_wrapped(tmp_path, "--root", root, "checkpoint", "nosuch")
    assert rc == 1 and "does not exist" in err
    assert "ociruntime.lifecycle.checkpoint" in mods and "ociruntime.criu" in mods
    assert loaded(mods, ("google",)) == []
