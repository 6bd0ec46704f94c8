"""Fixtures of the client tests: podman (+conmon) and containerd (+ctr, containerd-shim-runc-v2)
driving ociruntime, everything inside one private mount namespace (see clients_env.py).

* ``client_env`` (package scope: set up once for tests/clients and torn down as soon as its last
  test ran): packages (apt-get install when missing; skip with the reason only if apt fails), the
  scratch dir, the namespace, the busybox image in podman's private storage.
* ``ctd_env`` (package): a private containerd started in that namespace (stopped by its pid at the
  end) and the same image imported with ``ctr image import``.
* ``podman`` / ``ctr`` (function): the env plus a finalizer that removes what the test left
  (``podman rm -f``, ``ctr task rm -f`` + ``ctr container rm``) and then fails the test if a
  process, mount, cgroup or runtime state dir remains compared with the start of the test.
* ``runtime_for_uid`` (session): ``f(uid, scratch)`` -> the runtime path an unprivileged uid is given
  (the plugin's oci_runtime_for_others: the build itself, or a session copy that uid can reach).
* ``rootless_podman`` (module, once with and once without sub-id ranges): an ordinary user's podman
  in a private mount namespace (rootless_env.py), torn down with a check that nothing was left.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from clients_env import ClientEnv, Snapshot, ensure_client_packages  # noqa: E402
import rootless_env  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "clients: podman/containerd client tests (root; installs podman and containerd "
                   "from Debian when missing; deselect with -m 'not clients')")


@pytest.fixture(scope="package")
def client_env():
    if os.geteuid() != 0:
        pytest.skip("client tests need root")
    reason = ensure_client_packages()
    if reason:
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    env = ClientEnv()
    try:
        env.setup_namespace()
        env.build_images(with_containerd=False)
    except BaseException:
        env.teardown()
        raise
    yield env
    problems = env.teardown()
    assert not problems, "client env teardown:\n" + "\n".join(problems)


@pytest.fixture(scope="package")
def ctd_env(client_env):
    env = client_env
    env.start_containerd()
    try:
        env.import_into_containerd()
    except BaseException:
        env.stop_containerd()
        raise
    yield env
    # remove whatever a test left in our namespace, then stop the daemon by its pid
    env.ctr_cleanup_all()
    env.stop_containerd()


def _finish(env, snap, problems):
    problems += snap.leaks()
    if problems:
        pytest.fail("client test left things behind:\n  " + "\n  ".join(problems)
                    + "\n--- last runtime calls:\n" + env.calls_tail(4000), pytrace=False)


@pytest.fixture
def podman(client_env):
    env = client_env
    snap = Snapshot(env)
    yield env
    problems = []
    if env.podman("pod", "ps", "-q").out.split():
        env.podman("pod", "rm", "-af", "-t", "0", timeout=120)
    left = env.podman("ps", "-aq", "--no-trunc").out.split()
    if left:
        r = env.podman("rm", "-f", "-t", "0", *left, timeout=120)
        if not r.ok:
            problems.append(f"podman rm -f of the test's containers failed: {r}")
    _finish(env, snap, problems)


@pytest.fixture
def ctr(ctd_env):
    env = ctd_env
    snap = Snapshot(env)
    yield env
    problems = env.ctr_cleanup_all()
    _finish(env, snap, problems)


@pytest.fixture(scope="session")
def runtime_for_uid(oci_runtime_for_others):
    # the plugin's session copy when the checkout is not reachable by other uids (ociruntime.testing.reach)
    return lambda uid, scratch: oci_runtime_for_others


@pytest.fixture(scope="module", params=["subids", "single"])
def rootless_podman(request, runtime_for_uid):
    if os.geteuid() != 0:
        pytest.skip("client tests need root")
    reason = ensure_client_packages() or rootless_env.ensure_rootless_packages()
    if reason:
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    env = rootless_env.RootlessPodman(runtime_for_uid, subids=request.param == "subids")
    try:
        env.setup()
    except BaseException:
        env.teardown()
        raise
    yield env
    problems = env.teardown()
    assert not problems, "rootless podman teardown:\n" + "\n".join(problems)
