"""The `ociruntime` command a wheel installs (csrc/entry/main.c, built by ociruntime.launcher.build_entry
as setup.py builds it): a static program that execs the install's Python with -I -S directly (no shell
in between, which cost ≈0.6 ms per command), passing the site-packages it finds next to itself.

Laid out here by hand, without pip (tests/integration/test_pip_install.py does the real install): a
prefix with bin/ociruntime, bin/python3.X (a link to this interpreter) and lib/python3.X/site-packages
holding this package (a link)."""
import os
import shutil
import subprocess
import sys

import pytest

import ociruntime
from ociruntime import launcher

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VER = "%d.%d" % sys.version_info[:2]
PY = os.path.realpath(sys.executable)


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("entry") / "ociruntime")
    launcher.build_entry(out, REPO)
    return out


def prefix(tmp_path, entry, python_next_to_it=True, kind="site-packages"):
    """A pip-like prefix: (its bin/ociruntime, its site-packages)."""
    bindir = tmp_path / "prefix" / "bin"
    site = tmp_path / "prefix" / "lib" / f"python{VER}" / kind
    bindir.mkdir(parents=True)
    site.mkdir(parents=True)
    os.symlink(os.path.dirname(ociruntime.__file__), site / "ociruntime")
    if python_next_to_it:
        os.symlink(PY, bindir / f"python{VER}")
    cmd = str(bindir / "ociruntime")
    shutil.copy2(entry, cmd)
    return cmd, str(site)


def run(cmd, tmp_path, *args, env=None, argv0=None):
    root = tmp_path / "root"
    root.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([argv0 or cmd, "--root", str(root), *args], executable=cmd, capture_output=True,
                          text=True, timeout=60, env=env or {"PATH": "/nonexistent"})


def traced_execs(cmd, tmp_path, *args, env=None):
    """The argv of every execve the command makes (strace)."""
    log = tmp_path / "strace.log"
    root = tmp_path / "root"
    root.mkdir(mode=0o700, exist_ok=True)
    r = subprocess.run([shutil.which("strace"), "-f", "-qq", "-s", "8192", "-e", "trace=execve", "-e", "signal=none",
                        "-o", str(log), cmd, "--root", str(root), *args],
                       capture_output=True, text=True, timeout=60, env=env or {"PATH": "/nonexistent"})
    execs = [line for line in log.read_text().splitlines() if "execve(" in line and "= 0" in line]
    return r, execs


def test_is_a_static_program_carrying_the_entry_code(entry):
    data = open(entry, "rb").read()
    assert data[:4] == b"\x7fELF"
    assert launcher.ENTRY_CODE.encode() in data
    r = subprocess.run(["ldd", entry], capture_output=True, text=True)
    assert "not a dynamic executable" in (r.stdout + r.stderr) or "statically linked" in r.stdout, r


def test_runs_the_cli_with_the_python_next_to_it(entry, tmp_path):
    cmd, _ = prefix(tmp_path, entry)
    r = run(cmd, tmp_path, "state", "nosuch")
    assert r.returncode == 1 and "container does not exist" in r.stderr, r
    r = run(cmd, tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.startswith("ociruntime version "), r


@pytest.mark.skipif(not shutil.which("strace"), reason="host lacks strace (make test installs it)")
def test_execs_python_directly_without_site(entry, tmp_path):
    """One exec after its own: the python next to it, with -I -S, the site-packages and argv[0]."""
    cmd, site = prefix(tmp_path, entry)
    r, execs = traced_execs(cmd, tmp_path, "state", "nosuch")
    assert r.returncode == 1, (r, execs)
    assert len(execs) == 2, execs
    py = os.path.join(os.path.dirname(cmd), f"python{VER}")
    assert execs[1].split("(", 1)[1].startswith(f'"{py}", ["{py}", "-I", "-S", "-c", '), execs[1]
    assert f'"{site}", "{cmd}", "--root", ' in execs[1], execs[1]


def test_argv0_is_the_one_it_was_called_with(entry, tmp_path):
    """Messages name the command as it was called (`<argv0>: "state" requires ...`, as runc)."""
    cmd, _ = prefix(tmp_path, entry)
    r = run(cmd, tmp_path, "state", argv0="docker-runc")
    assert r.returncode != 0 and 'docker-runc: \\"state\\" requires' in r.stderr, r


def test_a_link_to_it_elsewhere_finds_its_install(entry, tmp_path):
    cmd, _ = prefix(tmp_path, entry)
    (tmp_path / "elsewhere").mkdir()
    link = str(tmp_path / "elsewhere" / "ociruntime")
    os.symlink(cmd, link)
    r = run(link, tmp_path, "state", "nosuch")
    assert r.returncode == 1 and "container does not exist" in r.stderr, r


def test_dist_packages_and_the_python_on_path(entry, tmp_path):
    """Debian's pip into /usr/local: lib/python3.X/dist-packages, no python3.X in that bin/."""
    cmd, _ = prefix(tmp_path, entry, python_next_to_it=False, kind="dist-packages")
    pybin = tmp_path / "pybin"
    pybin.mkdir()
    os.symlink(PY, pybin / f"python{VER}")
    r = run(cmd, tmp_path, "state", "nosuch", env={"PATH": str(pybin)})
    assert r.returncode == 1 and "container does not exist" in r.stderr, r


def test_no_python_is_a_clear_error(entry, tmp_path):
    cmd, _ = prefix(tmp_path, entry, python_next_to_it=False)
    r = run(cmd, tmp_path, "state", "nosuch")
    assert r.returncode == 127, r
    assert r.stderr.startswith(f"ociruntime: cannot run python{VER} (next to "), r.stderr


def test_a_layout_it_does_not_know_starts_with_site(entry, tmp_path):
    """No site-packages next to it: ENTRY_CODE_SITE, the ordinary start (`site` finds the venv of the
    python on PATH through its pyvenv.cfg)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    site = venv / "lib" / f"python{VER}" / "site-packages"
    site.mkdir(parents=True)
    os.symlink(os.path.dirname(ociruntime.__file__), site / "ociruntime")
    os.symlink(PY, venv / "bin" / f"python{VER}")
    (venv / "pyvenv.cfg").write_text(f"home = {os.path.dirname(PY)}\ninclude-system-site-packages = false\n")
    (tmp_path / "opt").mkdir()
    cmd = str(tmp_path / "opt" / "ociruntime")
    shutil.copy2(entry, cmd)
    r = run(cmd, tmp_path, "state", "nosuch", env={"PATH": str(venv / "bin")})
    assert r.returncode == 1 and "container does not exist" in r.stderr, r
    assert launcher.ENTRY_CODE_SITE.encode() in open(entry, "rb").read()


def test_reach_knows_it_as_this_packages_runtime(entry, tmp_path):
    """ociruntime.testing.reach copies the package for other uids when they cannot reach the command
    (a 0700 checkout or venv): the wheel's command counts as this package's, as make build's launcher."""
    from ociruntime.testing import reach
    assert reach.is_this_package_runtime(entry)
    other = tmp_path / "other"
    other.write_bytes(b"\x7fELF" + b"\0" * 100)
    assert not reach.is_this_package_runtime(str(other))
