"""Namespaces: new ones differ from the host's, absent ones are shared, ``path`` joins
(config-linux.md "Namespaces", "User namespace mappings")."""

import os

import pytest

from ociruntime.testing import host_namespace_link as host_ns
from ociruntime.testing.plugin import assert_refuses_missing_namespace, host_lacks_namespace, require_namespace

pytestmark = pytest.mark.oci_root

PROC = {"ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid", "mount": "mnt",
        "cgroup": "cgroup", "user": "user", "time": "time"}


def ns_links(rt, bundle):
    r = rt.run_shell(bundle, 'for n in ipc uts net pid mnt cgroup user time; do '
                             'echo "$n $(readlink /proc/$$/ns/$n)"; done')
    assert r.rc == 0, r.describe()
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


@pytest.mark.parametrize("ns", ["ipc", "uts", "network", "pid", "mount", "cgroup"])
def test_new_namespace(oci_runtime, bundle, ns):
    require_namespace(oci_runtime, ns)
    bundle.add_namespace(ns)
    if ns == "uts":
        bundle.set_hostname("new-uts")
    links = ns_links(oci_runtime, bundle)
    assert links[PROC[ns]] != host_ns(PROC[ns])


@pytest.mark.parametrize("ns", ["ipc", "uts", "network", "pid", "cgroup"])
def test_shared_namespace(oci_runtime, bundle, ns):
    bundle.remove_namespace(ns)
    links = ns_links(oci_runtime, bundle)
    assert links[PROC[ns]] == host_ns(PROC[ns])


def test_time_namespace(oci_runtime, bundle):
    require_namespace(oci_runtime, "time")
    bundle.add_namespace("time")
    why = host_lacks_namespace("time")
    if why:  # host fact: no CONFIG_TIME_NS (Linux < 5.6 or configured out)
        return assert_refuses_missing_namespace(oci_runtime, bundle, "time", why)
    links = ns_links(oci_runtime, bundle)
    assert links["time"] != host_ns("time")


def test_user_namespace_mappings(oci_runtime, bundle):
    require_namespace(oci_runtime, "user")
    bundle.set_user_namespace(host_uid=100000, host_gid=200000, size=65536)
    r = oci_runtime.run_shell(bundle, "cat /proc/$$/uid_map /proc/$$/gid_map; id -u; id -g; "
                                      "stat -c '%u:%g' /bin/busybox; "
                                      "readlink /proc/$$/ns/user")
    assert r.rc == 0, r.describe()
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2:4] == ["0", "0"]
    assert lines[4] == "65534:65534"  # host root is unmapped: the overflow id
    assert lines[5] != host_ns("user")


def test_join_namespaces_by_path(oci_runtime, bundle, ns_holder):
    holder = ns_holder("net", "uts", "ipc")
    for ns in ("network", "uts", "ipc"):
        bundle.add_namespace(ns, path=holder.path(ns))
    links = ns_links(oci_runtime, bundle)
    for ns in ("network", "uts", "ipc"):
        assert links[PROC[ns]] == os.readlink(holder.path(ns)), ns
    assert links["pid"] != host_ns("pid")


def test_hostname_without_uts_namespace_rejected(oci_runtime, bundle):
    bundle.remove_namespace("uts")
    bundle.set_hostname("must-not-reach-the-host")
    bundle.write()
    before = os.uname().nodename
    cid = oci_runtime.new_id()
    r = oci_runtime.create(cid, bundle)
    assert r.rc != 0
    assert os.uname().nodename == before
    assert oci_runtime.state_result(cid).rc != 0
