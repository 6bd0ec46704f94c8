"""The exact ``state`` output (cli-contract §0.1, §6.4; runtime.md "State")."""

import datetime
import json
import os
import re

import pytest

from ociruntime.testing import SPEC_VERSION

pytestmark = pytest.mark.oci_root

KEYS = ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created"]
CREATED_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.(\d{1,9}))?Z$")
SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def _parse_created(s):
    m = CREATED_RE.match(s)
    assert m, f"created {s!r} is not RFC 3339 (nanoseconds, UTC 'Z')"
    frac = m.group(3) or ""
    assert not frac.endswith("0"), f"created {s!r}: Go RFC3339Nano trims trailing zeros"
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    base = base.replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() + (int(frac.ljust(9, "0")) / 1e9 if frac else 0.0)


def _check_format(r):
    """stdout is exactly json.MarshalIndent(v, "", "  ") without a newline; stderr empty."""
    assert r.rc == 0, r.describe()
    assert r.stderr == "", f"state wrote to stderr: {r.stderr!r}"
    assert not r.stdout.endswith("\n"), "state output must not end with a newline"
    obj = json.loads(r.stdout)
    assert r.stdout == json.dumps(obj, indent=2, ensure_ascii=False), \
        "state output is not 2-space indented JSON in Go's MarshalIndent layout"
    return obj


def test_state_created(oci_runtime, bundle):
    import time
    t0 = time.time()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    t1 = time.time()
    st = _check_format(oci_runtime.state_result(cid))
    assert list(st) == KEYS + ["owner"], "state keys or their order differ from runc"
    assert SEMVER_RE.match(st["ociVersion"])
    assert st["id"] == cid
    assert type(st["pid"]) is int and st["pid"] > 0
    assert os.path.exists(f"/proc/{st['pid']}")
    assert st["status"] == "created"
    assert st["bundle"] == os.path.realpath(bundle.path)
    assert os.path.isabs(st["bundle"])
    assert st["rootfs"] == os.path.realpath(bundle.rootfs)
    created = _parse_created(st["created"])
    assert t0 - 1 <= created <= t1 + 1
    assert st["owner"] == ""


def test_state_stopped_pid_zero(oci_runtime, bundle):
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    created = oci_runtime.state(cid)["created"]
    oci_runtime.start(cid).check()
    oci_runtime.wait_stopped(cid)
    st = _check_format(oci_runtime.state_result(cid))
    assert st["status"] == "stopped"
    assert st["pid"] == 0
    assert st["created"] == created, "created must not change over the lifecycle"


def test_state_annotations(oci_runtime, bundle):
    ann = {"io.kubernetes.cri.container-type": "container", "org.example/ü": "ünïcode"}
    for k, v in ann.items():
        bundle.set_annotation(k, v)
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    st = _check_format(oci_runtime.state_result(cid))
    assert list(st) == KEYS + ["annotations", "owner"]
    assert st["annotations"] == ann


def test_state_empty_annotations_omitted(oci_runtime, bundle):
    bundle.config["annotations"] = {}
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    st = _check_format(oci_runtime.state_result(cid))
    assert "annotations" not in st


def test_state_bundle_is_resolved(oci_runtime, bundle, oci_tmp):
    link = os.path.join(oci_tmp, "bundle-link")
    os.symlink(bundle.path, link)
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, link).check()
    st = oci_runtime.state(cid)
    assert st["bundle"] == os.path.realpath(bundle.path)


def test_state_ignores_bundle_oci_version(oci_runtime, bundle):
    # state.ociVersion is the runtime's spec version, not the bundle's
    bundle.config["ociVersion"] = "1.0.0"
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    assert oci_runtime.state(cid)["ociVersion"] != "1.0.0" or SPEC_VERSION == "1.0.0"


def test_config_changes_after_create_do_not_matter(oci_runtime, bundle, ctl):
    ctl.attach(bundle)
    bundle.set_shell("echo first > /ctl/out")
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    bundle.set_shell("echo second > /ctl/out")
    bundle.set_hostname("changed")
    bundle.write()
    oci_runtime.start(cid).check()
    oci_runtime.wait_stopped(cid)
    assert ctl.read("out") == "first\n"
