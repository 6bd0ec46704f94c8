"""One install path: `pip wheel .` builds a wheel (pyproject.toml: setuptools + cffi, build isolation,
so the build requirements come from the package index), `pip install` of it into a fresh venv gives an
`ociruntime` command that finds its schemas inside the package, runs a container, and starts as lean as
`make build`'s launcher: no `site`, no `os`, no `re` for a light command (tests/unit/test_import_hygiene.py's
lists). `pip install .` is the same two steps in one.

The timing comparison lives in bench/entry.py, not here.
"""
import os
import re
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


def test_wheel_carries_schemas_init_shim_and_the_lean_script(pip_install):
    _venv, wheel = pip_install
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("config.json", "state.json", "features.json"):
        assert f"ociruntime/schemas/{f}" in names, names
    assert "ociruntime/libexec/ociruntime-init" in names
    assert any(re.fullmatch(r"ociruntime/_shim\..*\.so", n) for n in names), names
    script = [n for n in names if n.endswith(".data/scripts/ociruntime")]
    assert script, names
    text = zipfile.ZipFile(wheel).read(script[0]).decode()
    assert text.startswith("#!/bin/sh\n") and "-IS" in text   # pip leaves it as it is (no #!python)


def test_installed_command_runs_a_container(pip_install, make_test_bundle, oci_guard):
    venv, _ = pip_install
    cmd = os.path.join(venv, "bin", "ociruntime")
    assert open(cmd).readline() == "#!/bin/sh\n"
    rt = Runtime(cmd)
    oci_guard.runtimes.append(rt)
    assert re.match(r"ociruntime version \S+\nspec: ", rt.call("--version").check().stdout)
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


def test_installed_command_starts_lean(pip_install, tmp_path):
    """The Python part of the installed script, started as its sh part starts it (the venv's python3,
    -I -S): a light command imports neither site nor os nor re, nor the heavy modules."""
    venv, _ = pip_install
    cmd = os.path.join(venv, "bin", "ociruntime")
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    for args in (["state", "nosuch"], ["list"], ["kill", "nosuch", "KILL"]):
        r = subprocess.run([os.path.join(venv, "bin", "python3"), "-IS", "-X", "importtime", cmd,
                            "--root", str(root), *args], capture_output=True, text=True, timeout=60)
        mods = [line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
        assert "ociruntime.cli" in mods, r.stderr
        bad = sorted(m for m in mods for n in ("site", "re") + NEVER_FOR_LIGHT + HEAVY
                     if m == n or m.startswith(n + "."))
        assert bad == [], (args, bad)
