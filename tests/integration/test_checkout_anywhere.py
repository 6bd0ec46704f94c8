"""The suite does not depend on where the checkout lives (issue #18).

A copy of this checkout (the files git knows, tracked or not ignored, plus the built shim and C init)
is put under a 0700 directory of root's (as a clone in /root is), with a venv of its own there whose
`ociruntime` launcher `make build` would write; $TMPDIR (and $OCIT_TMPDIR) point into that private
directory as well. The rootless tests then run from it, in a pytest of their own, and must all pass:
the session finds that an unprivileged uid cannot run that runtime and runs a temporary copy placed
where every uid reaches (ociruntime.testing.reach), and keeps the bundles out of $TMPDIR. The same run
from a world-traversable place (as /tmp/x) uses the runtime as it is.

Nothing of the user's changes permissions: the private directory is the test's own, removed afterwards.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from ociruntime.testing import reach

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.timeout(600)]


def _checkout_files():
    """The files of this checkout a clone (plus make build) would have, relative to REPO."""
    if not shutil.which("git") or not os.path.isdir(os.path.join(REPO, ".git")) and \
            not os.path.isfile(os.path.join(REPO, ".git")):
        pytest.fail(f"{REPO} is not a git checkout (or git is missing): cannot tell its files")
    out = subprocess.run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard", "-z"],
                         capture_output=True, check=True).stdout.decode()
    files = [f for f in out.split("\0") if f and os.path.isfile(os.path.join(REPO, f))]
    built = [os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "ociruntime", "_shim*.so"))]
    built.append(os.path.join("ociruntime", "libexec", "ociruntime-init"))
    missing = [b for b in built if not os.path.isfile(os.path.join(REPO, b))]
    assert not missing and len(built) > 1, f"not built (run make build): {missing or 'ociruntime/_shim*.so'}"
    return files + built


def _make_checkout(parent, copy_site=False):
    """A copy of the checkout at parent/ociruntime with .venv/bin/ociruntime as make build writes it (the
    venv's own interpreter; its packages are this session's, listed in the launcher and a .pth)."""
    co = os.path.join(parent, "ociruntime")
    for f in _checkout_files():
        dst = os.path.join(co, f)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(REPO, f), dst)
    venv = os.path.join(co, ".venv")
    subprocess.run([os.path.realpath(sys.executable), "-m", "venv", "--without-pip", venv], check=True)
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    if copy_site:
        # a checkout every uid reaches must not lean on this session's packages, which may sit below a
        # 0700 directory themselves (CI's clone in /root): its own copy of them, as a venv of its own has
        copies = []
        for i, p in enumerate(ours):
            dst = os.path.join(co, ".site", str(i))
            shutil.copytree(p, dst, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "ociruntime*", "__editable__*", "*.pth"))
            copies.append(dst)
        ours = copies
    vpy = os.path.join(venv, "bin", "python")
    site = subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "ocit-session.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    subprocess.run([vpy, "-c", "import sys; from ociruntime import launcher; "
                               "launcher.write(sys.argv[1], site=sys.argv[2:])",
                    os.path.join(venv, "bin", "ociruntime"), site, *ours], cwd=co, check=True)
    return co, vpy


@pytest.mark.skipif(os.geteuid() != 0, reason="the rootless tests switch uids: needs root")
@pytest.mark.parametrize("where", ["private-0700", "world-traversable"])
def test_rootless_tests_pass_from_a_checkout_anywhere(where):
    base = tempfile.mkdtemp(prefix="ocit-checkout-")   # 0700, root's
    try:
        if where == "world-traversable":
            shutil.rmtree(base)
            base = reach.mkdtemp(prefix="ocit-checkout-")  # 0755 below a traversable directory
        co, vpy = _make_checkout(base, copy_site=where == "world-traversable")
        runtime = os.path.join(co, ".venv", "bin", "ociruntime")
        ok, why = reach.can_run_as(runtime)
        assert ok == (where == "world-traversable"), (where, why)   # the premise of each case
        tmp = os.path.join(base, "tmp")
        os.mkdir(tmp, 0o700)
        env = dict(os.environ, OCI_RUNTIME=runtime, TMPDIR=tmp, OCIT_TMPDIR=tmp, PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTEST_ADDOPTS", None)
        r = subprocess.run([vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                            "tests/integration/test_rootless.py"], cwd=co, env=env, capture_output=True,
                           text=True, timeout=540)
        tail = (r.stdout + r.stderr)[-4000:]
        assert r.returncode == 0, tail
        m = re.search(r"(\d+) passed", r.stdout)
        assert m and int(m.group(1)) >= 15 and not re.search(r"\d+ (skipped|failed|error)", r.stdout), tail
    finally:
        shutil.rmtree(base, ignore_errors=True)
