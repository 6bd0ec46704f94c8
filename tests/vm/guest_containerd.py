"""containerd 1.6 driving ociruntime on a pure cgroup v2 kernel: runs INSIDE the qemu guest.

``ctr run --runc-binary <ociruntime>``: containerd-shim-runc-v2 calls ociruntime exactly as it calls
runc (``--root /run/containerd/runc/<ns> --log … --log-format json create --bundle …``). The
container's rootfs is a busybox tree given with ``--rootfs`` (no image, no snapshotter: nothing but
the runtime differs from what the host's client tests do). The spec's cgroupsPath is ``/<ns>/<id>``.
A private containerd (own root, state, socket) runs for the module and is stopped by its pid.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import pytest

from ociruntime.testing.plugin import default_runtime_path
from ociruntime.testing.rootfs import busybox_rootfs

CG = "/sys/fs/cgroup"
NS = "ocivm"

pytestmark = pytest.mark.skipif(
    not (os.environ.get("OCI_VM_GUEST") and os.path.exists(f"{CG}/cgroup.controllers")
         and not os.path.isdir(f"{CG}/memory")),
    reason="runs inside the pure cgroup v2 guest (tests/vm/test_vm_v2.py)")


class Ctd:
    def __init__(self):
        self.W = tempfile.mkdtemp(prefix="ctd-", dir="/var/tmp")
        self.sock = os.path.join(self.W, "containerd.sock")
        self.runtime = default_runtime_path()
        self.rootfs = busybox_rootfs(os.path.join(self.W, "rootfs"), hostname="ctd")
        with open(os.path.join(self.W, "config.toml"), "w") as f:
            f.write(f"""version = 2
root = "{self.W}/root"
state = "{self.W}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.W}/opt"
""")
        self.log = open(os.path.join(self.W, "containerd.log"), "ab")
        self.proc = subprocess.Popen(["containerd", "--config", os.path.join(self.W, "config.toml")],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while not (os.path.exists(self.sock) and self.ctr("version").returncode == 0):
            assert self.proc.poll() is None, f"containerd exited: {self.logtail()}"
            assert time.monotonic() < deadline, f"containerd did not answer: {self.logtail()}"
            time.sleep(0.2)

    def logtail(self):
        with open(os.path.join(self.W, "containerd.log"), errors="replace") as f:
            return f.read()[-3000:]

    def ctr(self, *args, timeout=180):
        return subprocess.run(["ctr", "--address", self.sock, "--namespace", NS, *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, *args, **kw):
        r = self.ctr(*args, **kw)
        assert r.returncode == 0, f"ctr {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}\n" \
                                  f"--- containerd:\n{self.logtail()}"
        return r

    def run_args(self, cid, *extra):
        # --rootfs is a switch: the first argument is then a rootfs directory, not an image
        return ["run", "--runc-binary", self.runtime, *extra, "--rootfs", self.rootfs, cid]

    def status(self, cid):
        for line in self.ok("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == cid:
                return parts[2]
        return None

    def cleanup(self):
        left = []
        if self.proc.poll() is None:
            for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
                tid = line.split()[0]
                left.append(f"task {tid}")
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", tid)
                self.ctr("tasks", "rm", "-f", tid)
            for cid in self.ctr("containers", "ls", "-q").stdout.split():
                left.append(f"container {cid}")
                self.ctr("containers", "rm", cid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.W, ignore_errors=True)
        return left


@pytest.fixture(scope="module")
def ctd():
    missing = [t for t in ("containerd", "ctr", "containerd-shim-runc-v2") if not shutil.which(t)]
    assert not missing, f"{missing} not installed (make test installs the containerd package)"
    c = Ctd()
    yield c
    left = c.cleanup()
    assert not left, f"left behind by the tests: {left}"


def new_id():
    return f"c-{uuid.uuid4().hex[:8]}"


def wait_for(pred, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timeout waiting for {what}"
        time.sleep(0.1)


def test_ctr_run_rm_output_and_exit_status(ctd):
    cid = new_id()
    r = ctd.ctr(*ctd.run_args(cid, "--rm"), "/bin/sh", "-c", "echo hello from $(hostname); cat /proc/self/cgroup; exit 3")
    assert r.returncode == 3, (r.stdout, r.stderr, ctd.logtail())
    assert "hello from" in r.stdout, r.stdout
    assert r.stdout.splitlines()[-1].startswith("0::"), r.stdout  # one v2 line, nothing of v1
    assert cid not in ctd.ok("containers", "ls", "-q").stdout.split()
    assert not os.path.exists(f"{CG}/{NS}/{cid}")


def test_ctr_detached_limits_pause_exec_kill(ctd):
    cid = new_id()
    ctd.ok(*ctd.run_args(cid, "-d", "--memory-limit", "67108864"), "/bin/sh", "-c", "while :; do sleep 1; done")
    try:
        d = f"{CG}/{NS}/{cid}"
        wait_for(lambda: ctd.status(cid) == "RUNNING", what="RUNNING")
        with open(f"{d}/memory.max") as f:
            assert f.read().strip() == "67108864"
        pid = int(ctd.ok("tasks", "ls").stdout.split(cid, 1)[1].split()[0])
        with open(f"{d}/cgroup.procs") as f:
            assert str(pid) in f.read().split()
        ctd.ok("tasks", "pause", cid)
        assert ctd.status(cid) == "PAUSED"
        with open(f"{d}/cgroup.freeze") as f:
            assert f.read().strip() == "1"
        ctd.ok("tasks", "resume", cid)
        assert ctd.status(cid) == "RUNNING"
        r = ctd.ok("tasks", "exec", "--exec-id", "e1", cid, "/bin/sh", "-c", "cat /proc/self/cgroup; echo exec-ok")
        assert "exec-ok" in r.stdout
        ctd.ok("tasks", "kill", "-s", "SIGKILL", cid)
        wait_for(lambda: ctd.status(cid) == "STOPPED", what="STOPPED")
    finally:
        ctd.ctr("tasks", "rm", "-f", cid)
        ctd.ctr("containers", "rm", cid)
    assert not os.path.exists(f"{CG}/{NS}/{cid}")
