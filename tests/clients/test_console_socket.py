"""``--console-socket`` with a real receiver, the way containerd's shim and conmon receive it.

The test listens on an AF_UNIX stream socket *before* ``create``/``exec -d -t`` and accepts only
after the runtime returned (containerd does exactly that: the runtime must not wait for the peer).
Then one ``recvmsg`` must give exactly one ``SCM_RIGHTS`` control message carrying exactly one fd
and a payload of 1..4095 bytes (go-runc rejects n >= 4096, conmon's buffer is 4096). The fd must
be a pty master (``isatty``, ``TIOCGPTN`` works) allocated from the *container's* devpts instance
(its st_dev is the container's ``/dev/pts``, not the host's), and the container process's stdin
must be ``/dev/pts/<that N>``. Writing ``echo hi`` to the master must come back (tty echo + the
command's output).

Harness self-check: ``pytest tests/clients/test_console_socket.py --oci-runtime=/usr/sbin/runc``.
"""

import array
import ctypes
import fcntl
import json
import os
import select
import socket
import stat
import struct
import time

import pytest

pytestmark = [pytest.mark.oci_root]

TIOCGPTN = 0x80045430
PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


class Subreaper:
    """Make this process a child subreaper while the test runs, so the container init / exec
    process re-parent to us (as they do to conmon or the shim) and can be reaped by pid."""

    def __enter__(self):
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.pids = []
        return self

    def reap(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        for pid in self.pids:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break  # not (or no longer) our child
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.02)

    def __exit__(self, *exc):
        self.reap()
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        return False


def listening_socket(tmpdir):
    path = os.path.join(tmpdir, "console.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s, path


def receive_master(listener, timeout=10.0):
    """accept + one recvmsg. Returns (master fd, payload). Asserts the message shape."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    try:
        conn.settimeout(timeout)
        # room for several fds and cmsgs, to see whether the runtime sent more than one
        msg, ancdata, flags, _ = conn.recvmsg(8192, socket.CMSG_SPACE(16 * 4) * 4)
    finally:
        conn.close()
    fds = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[:len(data) - (len(data) % a.itemsize)])
            fds.extend(a)
    try:
        assert not flags & socket.MSG_CTRUNC, "control data truncated"
        assert len(ancdata) == 1, f"expected exactly one control message, got {ancdata!r}"
        level, kind, data = ancdata[0]
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS), ancdata
        assert len(fds) == 1, f"expected exactly one fd, got {fds}"
        assert 1 <= len(msg) < 4096, f"payload must be 1..4095 bytes, got {len(msg)}: {msg!r}"
    except AssertionError:
        for fd in fds:
            os.close(fd)
        raise
    return fds[0], msg


def ptn(master):
    buf = fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0))
    return struct.unpack("I", buf)[0]


def read_until(fd, needle, timeout=10.0):
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {needle!r}; got {out!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {needle!r}; got {out!r}")
            out += chunk
    return out


def check_master(master, pid):
    """The master is a pty master of the devpts mounted at the container's /dev/pts, and the
    process ``pid`` has /dev/pts/<N> as its stdin."""
    assert os.isatty(master), "received fd is not a tty"
    n = ptn(master)  # TIOCGPTN only works on a master
    st = os.fstat(master)
    assert stat.S_ISCHR(st.st_mode), oct(st.st_mode)
    ctr_pts = os.stat(f"/proc/{pid}/root/dev/pts")
    assert st.st_dev == ctr_pts.st_dev, (
        f"master comes from st_dev {st.st_dev:#x}, the container's /dev/pts is {ctr_pts.st_dev:#x} "
        f"(host /dev/pts: {os.stat('/dev/pts').st_dev:#x})")
    assert st.st_dev != os.stat("/dev/pts").st_dev, "master allocated from the host's devpts"
    assert os.readlink(f"/proc/{pid}/fd/0") == f"/dev/pts/{n}"
    slave = os.stat(f"/proc/{pid}/root/dev/pts/{n}")
    assert os.stat(f"/proc/{pid}/fd/0").st_rdev == slave.st_rdev
    return n


def talk(master, n):
    """Type ``echo hi`` and read the echo back; the shell reports its own tty."""
    os.write(master, b"echo hi\n")
    out = read_until(master, b"\nhi\r\n")
    assert b"echo hi" in out, out
    os.write(master, b"readlink /proc/$$/fd/0\n")
    read_until(master, f"\n/dev/pts/{n}\r\n".encode())


def tty_bundle(bundle, args=("sh",)):
    bundle.set_terminal(True)
    bundle.set_args(*args)
    bundle.process["env"] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=dumb", "PS1=$ "]
    bundle.write()
    return bundle


def test_create_console_socket(oci_runtime, bundle, oci_tmp):
    tty_bundle(bundle)
    listener, path = listening_socket(oci_tmp)
    with listener, Subreaper() as reaper:
        cid = oci_runtime.new_id()
        t0 = time.monotonic()
        r = oci_runtime.create(cid, bundle, console_socket=path, timeout=30)
        assert r.ok, r.describe()
        assert time.monotonic() - t0 < 20
        state = oci_runtime.state(cid)
        assert state["status"] == "created"
        reaper.pids.append(state["pid"])
        master, payload = receive_master(listener)
        try:
            n = check_master(master, state["pid"])
            oci_runtime.start(cid).check("start")
            talk(master, n)
            os.write(master, b"exit 0\n")
            oci_runtime.wait_stopped(cid)
        finally:
            os.close(master)
        oci_runtime.delete(cid).check("delete")


@pytest.mark.parametrize("form", ["flags", "process-file"])
def test_exec_detach_tty_console_socket(oci_runtime, bundle, oci_tmp, form):
    """``exec -d -t --console-socket S --pid-file P ID sh`` (flag form) and containerd's shape
    ``exec --process F --console-socket S --detach --pid-file P ID``."""
    bundle.set_terminal(False)
    bundle.set_args("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    bundle.write()
    listener, path = listening_socket(oci_tmp)
    pid_file = os.path.join(oci_tmp, "exec.pid")
    env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=dumb", "PS1=$ "]
    with listener, Subreaper() as reaper:
        cid = oci_runtime.new_id()
        oci_runtime.create(cid, bundle).check("create")
        reaper.pids.append(oci_runtime.state(cid)["pid"])
        oci_runtime.start(cid).check("start")
        if form == "flags":
            r = oci_runtime.exec(cid, "sh", detach=True, tty=True, console_socket=path,
                                 pid_file=pid_file, env=env[1:], timeout=30)
        else:
            proc_file = os.path.join(oci_tmp, "process.json")
            with open(proc_file, "w") as f:
                json.dump({"terminal": True, "args": ["sh"], "cwd": "/", "env": env,
                           "user": {"uid": 0, "gid": 0}}, f)
            r = oci_runtime.call("exec", "--process", proc_file, "--console-socket", path,
                                 "--detach", "--pid-file", pid_file, cid, timeout=30)
        assert r.ok, r.describe()
        with open(pid_file) as f:
            text = f.read()
        assert text.isdigit(), repr(text)
        epid = int(text)
        reaper.pids.append(epid)
        master, payload = receive_master(listener)
        try:
            n = check_master(master, epid)
            talk(master, n)
            os.write(master, b"exit 0\n")
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{epid}") and time.monotonic() < deadline:
                try:
                    if os.waitpid(epid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    pass
                time.sleep(0.02)
        finally:
            os.close(master)
        oci_runtime.kill(cid, "KILL").check("kill")
        oci_runtime.wait_stopped(cid)
        oci_runtime.delete(cid).check("delete")
