"""pytest plugin: bundle-level tests against any OCI runtime binary.

Enable with the ``pytest11`` entry point ``ociruntime = ociruntime.testing.plugin`` (installed
package) or ``pytest_plugins = ["ociruntime.testing.plugin"]`` in a top-level conftest.

Options: ``--oci-runtime=PATH`` (runtime under test; default ``$OCI_RUNTIME``, else the
``ociruntime`` console script next to ``sys.executable``, else ``ociruntime`` on ``$PATH``),
``--oci-reference=PATH`` (default ``$OCI_REFERENCE`` or ``/usr/sbin/runc``), ``--oci-timeout``,
``--oci-spec-version``, ``--oci-keep`` (keep temp dirs of failed tests).

Fixtures: ``oci_runtime``, ``reference_runtime`` (``Runtime`` objects with private roots),
``oci_runtime_for_others`` (session: a path of the runtime an unprivileged uid can run, see reach.py),
``bundle`` (a fresh busybox bundle), ``make_test_bundle`` (factory), ``rootfs_template``
(session), ``oci_tmp`` (a world-traversable per-test dir), ``ns_holder`` (factory of namespace
holder processes), ``ctl`` (a host dir to bind into the container) and ``waiting_bundle``.
Helpers: ``Ctl``, ``WAIT_FOR_GO``, ``require_spec()``, ``require_namespace()``. After each test that used them, a guard force-deletes every container the
test's runtimes created and fails the test (at teardown) if a mount below the test's temp dirs
or a cgroup directory named after one of its container ids remains (after trying to remove it).
"""

import os
import re
import shutil
import sys

import pytest

from .bundle import SPEC_VERSION, make_bundle, new_bundle_dir, set_default_rootfs_template
from .rootfs import RootfsTemplate
from .view import DEFAULT_IGNORE, wait_for
from .runtime import (CRUN_SPEC_VERSION, NamespaceHolder, Runtime, cgroup_dirs_named,
                      mounts_under, remove_cgroup_dir, safe_rmtree, unmount_under)

DEFAULT_REFERENCE = "/usr/sbin/runc"


def default_runtime_path():
    """$OCI_RUNTIME, else ``ociruntime`` next to ``sys.executable``, else on $PATH (or None)."""
    env = os.environ.get("OCI_RUNTIME")
    if env:
        return env
    cand = os.path.join(os.path.dirname(sys.executable), "ociruntime")
    if os.path.isfile(cand) and os.access(cand, os.X_OK):
        return cand
    return shutil.which("ociruntime")


def default_reference_path():
    return os.environ.get("OCI_REFERENCE") or DEFAULT_REFERENCE


def pytest_addoption(parser):
    g = parser.getgroup("ociruntime", "OCI runtime bundle-level testing")
    g.addoption("--oci-runtime", dest="oci_runtime", default=None, metavar="PATH",
                help="runtime binary under test (default: $OCI_RUNTIME, else the ociruntime "
                     "console script next to sys.executable, else ociruntime on $PATH)")
    g.addoption("--oci-reference", dest="oci_reference", default=None, metavar="PATH",
                help=f"reference runtime for differential tests (default: $OCI_REFERENCE or "
                     f"{DEFAULT_REFERENCE})")
    g.addoption("--oci-timeout", dest="oci_timeout", type=float, default=60.0, metavar="SECONDS",
                help="timeout of every runtime command (default 60)")
    g.addoption("--oci-spec-version", dest="oci_spec_version", default=None, metavar="VERSION",
                help=f"ociVersion written into test bundles (default {SPEC_VERSION}; "
                     f"{CRUN_SPEC_VERSION} when the runtime under test is crun*)")
    g.addoption("--oci-diff-ignore", dest="oci_diff_ignore", action="append", default=[],
                metavar="KEY[,KEY…]",
                help="view keys (dotted prefixes, e.g. lifecycle.state_created.format) that "
                     "differential tests ignore, in addition to 'raw'")
    g.addoption("--oci-keep", dest="oci_keep", action="store_true", default=False,
                help="keep the temp dirs (bundles, runtime roots) of failed tests")


def _resolve(path):
    if not path:
        return None
    if os.sep not in path:
        found = shutil.which(path)
        if found:
            return found
    return os.path.abspath(path)


def pytest_configure(config):
    config.addinivalue_line("markers", "oci_root: needs real root (skipped when euid != 0)")
    config.addinivalue_line("markers", "oci_reference: needs the reference runtime "
                                       "(skipped when it is missing)")
    config._oci_runtime_path = _resolve(config.getoption("oci_runtime") or default_runtime_path())
    config._oci_reference_path = _resolve(config.getoption("oci_reference")
                                          or default_reference_path())


def pytest_report_header(config):
    rt = getattr(config, "_oci_runtime_path", None)
    ref = getattr(config, "_oci_reference_path", None)
    return [f"oci runtime under test: {rt or '(none found: use --oci-runtime)'}; "
            f"reference: {ref}"]


def pytest_runtest_setup(item):
    if item.get_closest_marker("oci_root") and os.geteuid() != 0:
        pytest.skip("needs root")
    if item.get_closest_marker("oci_reference"):
        ref = item.config._oci_reference_path
        if not ref or not os.path.exists(ref):
            pytest.skip(f"reference runtime {ref} not found")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "_oci_rep_" + rep.when, rep)


# --------------------------------------------------------------------------------------------
# session fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def oci_session_dir(request):
    """A world-traversable session temp dir (user-namespaced containers must be able to reach
    their rootfs, which pytest's 0700 tmp_path does not allow)."""
    from .reach import mkdtemp
    d = mkdtemp(prefix="oci-tests-")  # below a directory every uid traverses, wherever $TMPDIR is
    yield d
    left = mounts_under(d)
    if left:
        unmount_under(d)
    if not request.config.getoption("oci_keep") or not os.listdir(d):
        try:
            safe_rmtree(d)
        except OSError as e:  # pragma: no cover
            sys.stderr.write(f"ociruntime.testing: could not remove {d}: {e}\n")


@pytest.fixture(scope="session")
def rootfs_template(oci_session_dir):
    """The session's busybox rootfs template (``RootfsTemplate``); bundles copy it."""
    tmpl = RootfsTemplate(base=new_bundle_dir(oci_session_dir, prefix="rootfs-template-"))
    set_default_rootfs_template(tmpl)
    yield tmpl
    set_default_rootfs_template(None)
    tmpl.remove()


@pytest.fixture(scope="session")
def oci_runtime_path(request):
    path = request.config._oci_runtime_path
    if not path or not os.path.exists(path):
        pytest.skip(f"no runtime under test (looked for {path or 'ociruntime'}): "
                    "pass --oci-runtime=PATH or set OCI_RUNTIME")
    return path


@pytest.fixture(scope="session")
def oci_runtime_for_others(oci_runtime_path):
    """A path of the runtime under test that an unprivileged uid (no groups) can run: the runtime
    itself when it can, else a temporary copy of this package below a directory every uid reaches
    (a checkout under a 0700 directory such as /root), removed after the session. Fails with the
    reason when neither works."""
    from .reach import ReachError, runtime_for_others
    try:
        path, copy = runtime_for_others(oci_runtime_path)
    except ReachError as e:
        pytest.fail(f"no runtime an unprivileged uid can run: {e}", pytrace=False)
    yield path
    if copy is not None:
        copy.remove()


@pytest.fixture(scope="session")
def oci_reference_path(request):
    path = request.config._oci_reference_path
    if not path or not os.path.exists(path):
        pytest.skip(f"reference runtime {path} not found (--oci-reference)")
    return path


@pytest.fixture(scope="session")
def oci_spec_version(request):
    v = request.config.getoption("oci_spec_version")
    if v:
        return v
    rt = request.config._oci_runtime_path or ""
    return CRUN_SPEC_VERSION if os.path.basename(rt).startswith("crun") else SPEC_VERSION


# --------------------------------------------------------------------------------------------
# per-test guard, temp dir, runtimes, bundles
# --------------------------------------------------------------------------------------------

class OciGuard:
    """Collects what a test created (runtimes, temp dirs, holder processes) and checks at
    teardown that nothing leaked."""

    def __init__(self):
        self.runtimes = []
        self.dirs = []
        self.holders = []

    def problems(self):
        problems = []
        for h in self.holders:
            h.stop()
        for rt in self.runtimes:
            if rt.cleaned:
                continue
            try:
                left = rt.cleanup(remove=False)
            except Exception as e:  # never let one runtime hide the others
                left = [f"cleanup raised {e!r}"]
            problems += [f"[{rt.name}] {x}" for x in left]
        dirs = list(self.dirs) + [rt.workdir for rt in self.runtimes]
        mps = mounts_under(*dirs)
        if mps:
            still = unmount_under(*dirs)
            problems.append("mounts left below the test's temp dirs (unmounted lazily"
                            + (f"; STILL MOUNTED: {still}" if still else "") + "):\n  "
                            + "\n  ".join(mps))
        ids = [cid for rt in self.runtimes for cid in rt.ids]
        cg = cgroup_dirs_named(ids)
        if cg:
            failed = [d for d in cg if not remove_cgroup_dir(d)]
            problems.append("cgroup directories named after the test's containers remained "
                            "(removed" + (f"; COULD NOT REMOVE: {failed}" if failed else "")
                            + "):\n  " + "\n  ".join(cg))
        for rt in self.runtimes:
            try:
                safe_rmtree(rt.workdir)
            except OSError as e:
                problems.append(str(e))
        return problems


def _test_failed(item):
    return any(getattr(getattr(item, "_oci_rep_" + w, None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture(scope="session")
def oci_diff_ignore(request):
    """Keys ``diff_views`` ignores in differential tests (``DEFAULT_IGNORE`` + --oci-diff-ignore)."""
    extra = [k.strip() for v in request.config.getoption("oci_diff_ignore") for k in v.split(",")
             if k.strip()]
    return tuple(DEFAULT_IGNORE) + tuple(extra)


@pytest.fixture
def oci_guard(request, oci_session_dir):
    guard = OciGuard()
    yield guard
    problems = guard.problems()
    keep = request.config.getoption("oci_keep") and _test_failed(request.node)
    if not keep:
        for d in guard.dirs:
            try:
                safe_rmtree(d)
            except OSError as e:
                problems.append(str(e))
    if problems:
        pytest.fail("ociruntime.testing leak check failed:\n" + "\n".join(problems),
                    pytrace=False)


@pytest.fixture
def oci_tmp(request, oci_session_dir, oci_guard):
    """A fresh world-traversable directory for this test (removed afterwards)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    d = new_bundle_dir(oci_session_dir, prefix=name + "-")
    oci_guard.dirs.append(d)
    return d


def _make_runtime(request, path, guard):
    rt = Runtime(path, timeout=request.config.getoption("oci_timeout"))
    guard.runtimes.append(rt)
    return rt


@pytest.fixture
def oci_runtime(request, oci_runtime_path, oci_guard):
    """The runtime under test, with a private --root; every container it created is
    force-deleted after the test, and leaks fail the test."""
    return _make_runtime(request, oci_runtime_path, oci_guard)


@pytest.fixture
def reference_runtime(request, oci_reference_path, oci_guard):
    """The reference runtime (runc by default), same guarantees as ``oci_runtime``."""
    return _make_runtime(request, oci_reference_path, oci_guard)


@pytest.fixture
def make_test_bundle(oci_tmp, rootfs_template, oci_spec_version):
    """Factory: ``make_test_bundle(args=[...], **overrides)`` -> a new ``Bundle`` under the
    test's temp dir (config.json written)."""

    def factory(args=("true",), **overrides):
        overrides.setdefault("ociVersion", oci_spec_version)
        return make_bundle(oci_tmp, args=args, rootfs_template=rootfs_template, **overrides)

    return factory


@pytest.fixture
def bundle(make_test_bundle):
    """A fresh busybox bundle (``runc spec`` defaults, terminal off, args ``true``, unique
    hostname). Edit ``bundle.config`` / use the setters, then ``bundle.write()``."""
    return make_test_bundle()


@pytest.fixture
def oci_check():
    """``oci_check(bundle, strict=False)`` -> the ``ociruntime check`` report of a bundle;
    ``oci_check.assert_findings(bundle, present=..., absent=..., only=...)``."""
    from .checks import assert_findings, check

    check.assert_findings = assert_findings
    return check


@pytest.fixture
def ns_holder(oci_guard):
    """Factory: ``ns_holder("net", "uts", "ipc")`` starts ``unshare --net --uts --ipc sleep``
    and returns a ``NamespaceHolder`` (``.pid``, ``.path("net")``); killed by pid at teardown."""

    def factory(*kinds):
        h = NamespaceHolder(kinds)
        oci_guard.holders.append(h)
        return h

    return factory


# --------------------------------------------------------------------------------------------
# helpers for bundle-level tests
# --------------------------------------------------------------------------------------------

class Ctl:
    """A host directory bind-mounted into the container (``/ctl`` by default): the test and the
    container talk through files in it (``touch``/``exists``/``read``/``wait``)."""

    def __init__(self, path):
        self.path = path

    def p(self, name):
        return os.path.join(self.path, name)

    def exists(self, name):
        return os.path.exists(self.p(name))

    def touch(self, name):
        with open(self.p(name), "a"):
            pass

    def read(self, name):
        with open(self.p(name)) as f:
            return f.read()

    def wait(self, name, timeout=10.0):
        wait_for(lambda: self.exists(name), timeout=timeout, what=f"ctl file {name}")
        return self.read(name)

    def attach(self, bundle, destination="/ctl"):
        bundle.add_bind_mount(self.path, destination)
        return bundle


#: a container process that reports it started, then waits for /ctl/go (exit $EXIT_CODE)
WAIT_FOR_GO = ("touch /ctl/started; while [ ! -e /ctl/go ]; do sleep 0.02; done; "
               "exit ${EXIT_CODE:-0}")


@pytest.fixture
def ctl(oci_tmp):
    """A ``Ctl`` directory (mode 0777) under the test's temp dir; ``ctl.attach(bundle)``."""
    d = os.path.join(oci_tmp, "ctl")
    os.makedirs(d)
    os.chmod(d, 0o777)
    return Ctl(d)


@pytest.fixture
def waiting_bundle(bundle, ctl):
    """A bundle whose process touches /ctl/started, then waits for /ctl/go."""
    ctl.attach(bundle)
    bundle.set_shell(WAIT_FOR_GO)
    bundle.write()
    return bundle


def spec_version_tuple(v):
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", v or "")
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def require_spec(runtime, minimum):
    """Skip unless ``runtime features`` reports ociVersionMax >= ``minimum`` (a runtime without
    a ``features`` command is assumed to support it)."""
    feats = runtime.features()
    if feats is None:
        return
    if spec_version_tuple(feats.get("ociVersionMax")) < spec_version_tuple(minimum):
        pytest.skip(f"{runtime.name} supports runtime-spec up to {feats.get('ociVersionMax')}"
                    f" (< {minimum})")


def host_lacks_namespace(ns):
    """Host fact: why this kernel cannot make a namespace of type ``ns`` (no /proc/self/ns/<name>, e.g.
    time without CONFIG_TIME_NS), or None where it can. A test then asserts the runtime's refusal."""
    name = {"network": "net", "mount": "mnt"}.get(ns, ns)
    if os.path.exists(f"/proc/self/ns/{name}"):
        return None
    return f"this kernel has no {ns} namespace (/proc/self/ns/{name} is missing)"


def assert_refuses_missing_namespace(runtime, bundle, ns, why):
    """The host lacks namespace ``ns``: the runtime must refuse the bundle (ociruntime with the entry's
    JSON pointer and the reason) instead of running it."""
    bundle.set_args("/bin/true")
    bundle.write()
    r = runtime.run(None, bundle)
    assert r.rc != 0, f"{why}, yet {runtime.name} ran the container: {r.describe()}"
    if runtime.name == "ociruntime":
        at = [n["type"] for n in bundle.namespaces()].index(ns)
        assert f"/linux/namespaces/{at}: this kernel has no {ns} namespace" in r.stderr, r.describe()


def require_namespace(runtime, ns):
    """Skip unless ``runtime features`` lists namespace ``ns`` (or has no features command)."""
    feats = runtime.features()
    if feats is None:
        return
    supported = ((feats.get("linux") or {}).get("namespaces")) or []
    if supported and ns not in supported:
        pytest.skip(f"{runtime.name} does not support the {ns} namespace")
