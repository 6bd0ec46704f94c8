"""NOTIFY_SOCKET passthrough (runc notify_socket.go): the container gets /run/notify/notify.sock, `start`
waits for READY=… on it and forwards READY and MAINPID to the caller's NOTIFY_SOCKET."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from ociruntime.testing import make_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
OCI = os.path.join(os.path.dirname(sys.executable), "ociruntime")


def test_notify_socket_ready_forwarded(tmp_path, rootfs_template):
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host_path = str(tmp_path / "host-notify.sock")
    host.bind(host_path)
    host.settimeout(20)
    b = make_bundle(tmp_path, args=("sh", "-c", "echo $NOTIFY_SOCKET; ls -l /run/notify; sleep 600"),
                    rootfs_template=rootfs_template)
    root = str(tmp_path / "state")
    cid = "notify-" + os.urandom(4).hex()
    env = {**os.environ, "NOTIFY_SOCKET": host_path}
    out = open(tmp_path / "out", "w")
    try:
        # the container inherits create's stdio: files, never a pipe we would wait on
        subprocess.run([OCI, "--root", root, "create", "--bundle", b.path, cid], env=env, check=True,
                       stdout=out, stderr=out, timeout=30)
        inner = os.path.join(root, cid, "notify", "notify.sock")
        start = subprocess.Popen([OCI, "--root", root, "start", cid], env=env, stderr=out)
        # start waits for READY: send it where the container would (the socket's host path)
        deadline = time.monotonic() + 10
        while not os.path.exists(inner) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert start.poll() is None, "start must wait for READY"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1", inner)
        s.close()
        assert start.wait(20) == 0, (tmp_path / "out").read_text()
        msg = host.recv(4096).decode()
        pid = int(subprocess.check_output([OCI, "--root", root, "state", cid]).decode().split('"pid": ')[1]
                  .split(",")[0])
        assert msg == f"READY=1\nMAINPID={pid}\n"
        time.sleep(0.3)
        seen = (tmp_path / "out").read_text()
        assert "/run/notify/notify.sock" in seen
    finally:
        subprocess.run([OCI, "--root", root, "delete", "-f", cid], capture_output=True)
        host.close()
        out.close()


def test_start_returns_when_the_container_exits_without_ready(tmp_path, rootfs_template):
    host_path = str(tmp_path / "host-notify.sock")
    host = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    host.bind(host_path)
    b = make_bundle(tmp_path, args=("true",), rootfs_template=rootfs_template)
    root = str(tmp_path / "state")
    cid = "notify-" + os.urandom(4).hex()
    env = {**os.environ, "NOTIFY_SOCKET": host_path}
    try:
        subprocess.run([OCI, "--root", root, "create", "--bundle", b.path, cid], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
        r = subprocess.run([OCI, "--root", root, "start", cid], env=env, timeout=20)
        assert r.returncode == 0
    finally:
        subprocess.run([OCI, "--root", root, "delete", "-f", cid], capture_output=True)
        host.close()
