"""One install path: `pip wheel .` builds a wheel (pyproject.toml: setuptools + cffi, build isolation,
so the build requirements come from the package index), `pip install` of it into a fresh venv gives an
`ociruntime` command that finds its schemas inside the package, runs a container, and starts as lean as
`make build`'s launcher: the venv's Python exec'd directly with -I -S (the command is a small static
program, csrc/entry/main.c; no shell in between), and no `site`, no `os`, no `re` for a light command
(tests/unit/test_import_hygiene.py's lists). `pip install .` is the same two steps in one.

The timing comparison lives in bench/entry.py, not here.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest

from ociruntime.testing import Runtime, new_container_id

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
from test_import_hygiene import HEAVY, NEVER_FOR_LIGHT  # noqa: E402

pytestmark = [pytest.mark.timeout(900)]


def _pip(venv, *args, timeout=600):
    r = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "--disable-pip-version-check",
                        *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"pip {' '.join(args)} failed (the package index must be reachable):\n" \
                              f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def pip_install(tmp_path_factory):
    """(venv, wheel): a wheel of this checkout built by `pip wheel .` and installed into a fresh venv."""
    d = tmp_path_factory.mktemp("pip-install")
    os.chmod(d, 0o755)
    venv = str(d / "venv")
    subprocess.run([os.path.realpath(sys.executable), "-m", "venv", venv], check=True)
    wheels = str(d / "wheels")
    _pip(venv, "wheel", "--no-deps", "-q", "-w", wheels, REPO)
    (wheel,) = [os.path.join(wheels, f) for f in os.listdir(wheels) if f.endswith(".whl")]
    _pip(venv, "install", "-q", wheel)
    return venv, wheel


def _from_git_checkout():
    return subprocess.run(["git", "-C", REPO, "rev-parse", "--git-dir"], capture_output=True).returncode == 0


def test_wheel_carries_schemas_init_shim_commit_and_the_entry_program(pip_install):
    _venv, wheel = pip_install
    z = zipfile.ZipFile(wheel)
    names = z.namelist()
    for f in ("config.json", "state.json", "features.json"):
        assert f"ociruntime/schemas/{f}" in names, names
    assert "ociruntime/libexec/ociruntime-init" in names
    if _from_git_checkout():
        assert "ociruntime/libexec/commit" in names, names
    assert any(re.fullmatch(r"ociruntime/_shim\..*\.so", n) for n in names), names
    script = [n for n in names if n.endswith(".data/scripts/ociruntime")]
    assert script, names
    data = z.read(script[0])
    assert data[:4] == b"\x7fELF", data[:64]  # a program: pip installs it as it is (no #!python line)
    assert z.getinfo(script[0]).external_attr >> 16 & 0o111, "not executable in the wheel"


def test_installed_command_runs_a_container(pip_install, make_test_bundle, oci_guard):
    venv, _ = pip_install
    cmd = os.path.join(venv, "bin", "ociruntime")
    assert open(cmd, "rb").read(4) == b"\x7fELF"
    rt = Runtime(cmd)
    oci_guard.runtimes.append(rt)
    version = rt.call("--version").check().stdout
    assert re.match(r"ociruntime version \S+\n" + (r"commit: \S+\n" if _from_git_checkout() else "") + "spec: ",
                    version), version
    b = make_test_bundle(args=["sh", "-c", "echo hello from $(hostname)"])
    r = rt.run(new_container_id(), b)
    assert r.rc == 0 and r.stdout.strip() == f"hello from {b.config['hostname']}", r.describe()
    r = rt.call("state", "nosuch")
    assert r.rc == 1 and "container does not exist" in r.stderr, r.describe()
    # a config error is explained through jsonschema, found in the venv from the lean start too
    b.config["process"]["args"] = 7
    b.write()
    r = rt.create(new_container_id(), b)
    assert r.rc == 1 and "config.json: /process/args: 7 is not of type 'array'" in r.stderr, r.describe()


def _exec_of_python(cmd, root, args):
    """The argv the installed command execs Python with (strace), checked to be the venv's python
    with -I -S, exec'd directly by the command (two execs in all: no shell between)."""
    venv = os.path.dirname(os.path.dirname(cmd))
    strace = shutil.which("strace")
    assert strace, "strace missing (make test installs it)"
    r = subprocess.run([strace, "-f", "-qq", "-s", "8192", "-e", "trace=execve", "-e", "signal=none",
                        "-o", "/dev/stderr", cmd, "--root", root, *args], capture_output=True, text=True, timeout=60)
    lines = [re.sub(r"^[0-9]+ +", "", line) for line in r.stderr.splitlines()]  # -f: "<pid> execve(..."
    execs = [line for line in lines if line.startswith("execve(") and line.endswith("= 0")]
    assert len(execs) == 2, r.stderr
    path, _, rest = execs[1][len("execve("):].partition(", [")
    listed = rest.rsplit("], ", 1)[0]  # the argv list (strace shows the environment as a count)
    # C-style quoted strings: "a", "b\n..."
    argv = [bytes(a, "ascii").decode("unicode_escape") for a in re.findall(r'"((?:[^"\\]|\\.)*)"', listed)]
    py = os.path.join(venv, "bin", "python%d.%d" % sys.version_info[:2])
    assert path == f'"{py}"' and argv[:4] == [py, "-I", "-S", "-c"], (execs, argv[:4])
    return argv


def test_installed_command_starts_lean(pip_install, tmp_path):
    """The installed command execs the venv's python directly, with -I -S; that very command line,
    with -X importtime, shows that a light command imports neither site nor os nor re, nor the heavy
    modules."""
    venv, _ = pip_install
    cmd = os.path.join(venv, "bin", "ociruntime")
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    for args in (["state", "nosuch"], ["list"], ["kill", "nosuch", "KILL"]):
        argv = _exec_of_python(cmd, str(root), args)
        assert argv[-len(args) - 2:] == ["--root", str(root), *args], shlex.join(argv)
        r = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, timeout=60)
        mods = [line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
        assert "ociruntime.cli" in mods, r.stderr
        bad = sorted(m for m in mods for n in ("site", "re") + NEVER_FOR_LIGHT + HEAVY
                     if m == n or m.startswith(n + "."))
        assert bad == [], (args, bad)
