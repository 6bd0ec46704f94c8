"""Shared pieces of the checkpoint/restore tests: the CRIU under test, containers whose stdio are pipes
(as containerd and podman give them: CRIU cannot dump a host file as stdio), a counter to read.

The CRIU is `make criu`'s build ($OCIRUNTIME_TEST_CRIU, else /var/tmp/ociruntime-criu/current/criu). When
there is none, or it fails `criu check`, the tests FAIL and say so: checkpoint/restore never turns into
silent skips.
"""
import os
import subprocess
import time

import pytest

from _util import wait_for

CRIU_DEFAULT = "/var/tmp/ociruntime-criu/current/criu"
RUNC = "/usr/sbin/runc"
COUNTER = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"


def criu_path():
    return os.environ.get("OCIRUNTIME_TEST_CRIU") or CRIU_DEFAULT


@pytest.fixture(scope="session")
def criu_bin():
    path = criu_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"no CRIU at {path}: `make criu` builds CRIU >= 4.1 there (checkpoint/restore tests "
                    f"cannot run without it)")
    r = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.fail(f"{path} check failed: {r.stdout[-300:]} {r.stderr[-300:]}")
    return path


class Stdio:
    """Three pipes as a container's stdio; the test keeps the other ends. read_ints() drains stdout."""

    def __init__(self):
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        os.set_blocking(self.out_r, False)
        os.set_blocking(self.err_r, False)
        self.buf = b""
        self.values = []

    def child_ends(self):
        return self.in_r, self.out_w, self.err_w

    def _close(self, *names):
        """Close each fd once: a second close of a number could hit whatever took it meanwhile."""
        for name in names:
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                try:
                    os.close(fd)
                except OSError:
                    pass

    def close_child_ends(self):
        self._close("in_r", "out_w", "err_w")

    def _drain(self, fd):
        out = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return out
            if not chunk:
                return out
            out += chunk

    def err(self):
        return self._drain(self.err_r).decode(errors="replace")

    def read_ints(self):
        self.buf += self._drain(self.out_r)
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        for ln in lines:
            try:
                self.values.append(int(ln))
            except ValueError:
                pass
        return self.values

    def wait_count(self, n=5, timeout=10.0):
        """Wait until n more values arrived; returns the last one."""
        start = len(self.read_ints())
        assert wait_for(lambda: len(self.read_ints()) >= start + n, timeout=timeout), \
            f"the counter did not go on: {self.values[-5:]} err={self.err()!r}"
        return self.values[-1]

    def close(self):
        self._close("in_r", "in_w", "out_r", "out_w", "err_r", "err_w")


def run_cli(argv, stdio=None, timeout=60, pass_fds=()):
    """Run a runtime command line with the given Stdio as its stdio (files when None). Returns
    (rc, stderr text)."""
    import tempfile
    with tempfile.TemporaryFile() as err:
        if stdio is None:
            fds = (subprocess.DEVNULL, subprocess.DEVNULL, err)
        else:
            fds = stdio.child_ends()
        p = subprocess.Popen(argv, stdin=fds[0], stdout=fds[1], stderr=fds[2] if stdio is not None else err,
                             pass_fds=pass_fds)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"timed out: {argv}")
        err.seek(0)
        text = err.read().decode(errors="replace")
    if stdio is not None and rc != 0:
        time.sleep(0.05)
        text += stdio.err()
    return rc, text


class Runner:
    """One runtime (ociruntime or runc) with a --root and the CRIU under test."""

    def __init__(self, binary, root, criu):
        self.binary, self.root, self.criu = binary, root, criu
        os.makedirs(root, 0o700, exist_ok=True)

    def argv(self, *args, root=None):
        return [self.binary, "--root", root or self.root, "--criu", self.criu, *map(str, args)]

    def __call__(self, *args, stdio=None, root=None, timeout=60, pass_fds=()):
        return run_cli(self.argv(*args, root=root), stdio, timeout=timeout, pass_fds=pass_fds)

    def ok(self, *args, **kw):
        rc, err = self(*args, **kw)
        assert rc == 0, f"{' '.join(map(str, args))}: rc={rc} {err}"
        return err

    def state(self, cid, root=None):
        import json
        p = subprocess.run(self.argv("state", cid, root=root), capture_output=True, text=True, timeout=30)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def exec_out(self, cid, *cmd, root=None):
        p = subprocess.run(self.argv("exec", cid, *cmd, root=root), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (cmd, p.stderr)
        return p.stdout


def start_counter(runner, bundle_path, cid, root=None):
    """run -d with pipes; returns the Stdio (the counter running)."""
    io = Stdio()
    rc, err = runner("run", "-d", "--bundle", bundle_path, cid, stdio=io, root=root)
    io.close_child_ends()
    assert rc == 0, err
    io.wait_count(3)
    return io


def restore_counter(runner, image, bundle_path, cid, *extra, root=None):
    io = Stdio()
    rc, err = runner("restore", "-d", "--image-path", image, "--bundle", bundle_path, *extra, cid, stdio=io,
                     root=root)
    io.close_child_ends()
    return io, rc, err
