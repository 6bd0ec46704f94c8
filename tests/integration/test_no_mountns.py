"""A config without a mount namespace: its mounts are made below the rootfs in the runtime's own mount
namespace (runtime-tools linux_ns_itype; runc does the same) and `delete` unmounts them again.
The whole scenario runs inside a private mount namespace the test makes, never the host's."""
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from ociruntime.demo import busybox_rootfs
from ociruntime.misc import default_spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
OCI = os.path.join(os.path.dirname(sys.executable), "ociruntime")


def test_mounts_without_mount_namespace_are_undone_by_delete(tmp_path):
    bundle = tmp_path / "b"
    busybox_rootfs(str(bundle / "rootfs"))
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sh", "-c", "grep -c ' /proc ' /proc/self/mountinfo; ls /proc/self/ns | wc -l"]
    spec["root"]["readonly"] = False
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "mount"]
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] in ("/proc", "/dev")]
    spec["linux"]["maskedPaths"] = []   # runc too refuses masked/readonly paths without a mount namespace
    spec["linux"]["readonlyPaths"] = []
    (bundle / "config.json").write_text(json.dumps(spec))
    root = tmp_path / "state"
    cid = "nomnt-" + uuid.uuid4().hex[:8]
    rootfs = os.path.realpath(bundle / "rootfs")
    script = f"""
set -e
{OCI} --root {root} run --keep -b {bundle} {cid} > {tmp_path}/out
echo during=$(grep -c " {rootfs}" /proc/self/mountinfo)
{OCI} --root {root} delete {cid}
echo after=$(grep -c " {rootfs}" /proc/self/mountinfo || true)
"""
    try:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = dict(l.split("=") for l in r.stdout.split() if "=" in l)
        assert int(lines["during"]) >= 2          # /proc and /dev below the rootfs, in our namespace
        assert lines["after"] == "0"              # delete unmounted them
        out = (tmp_path / "out").read_text().split()
        assert out[0] == "1" and int(out[1]) > 0  # the container saw its own /proc
    finally:
        subprocess.run([OCI, "--root", str(root), "delete", "-f", cid], capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
