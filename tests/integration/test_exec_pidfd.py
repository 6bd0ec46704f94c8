"""exec against runc (the exec'd process's view) and --pidfd-socket with a real receiver."""
import array
import os
import socket
import threading

import pytest

from ociruntime.testing.view import parse_proc_status

pytestmark = [pytest.mark.oci_root, pytest.mark.oci_reference]

VIEW = ("grep -E '^(Cap|Uid|Gid|Groups|NoNewPrivs|Seccomp:)' /proc/self/status; pwd; id; umask; "
        "env | sort | grep -v '^HOSTNAME='; cat /proc/self/limits | sort; "
        "for n in ipc mnt net pid uts cgroup; do readlink /proc/self/ns/$n | cut -d: -f1; done; "
        "cat /proc/self/cgroup | sed 's/[0-9a-f]*-[0-9a-f-]*$//'")


def _exec_view(rt, bundle, args):
    cid = rt.new_id()
    rt.run(cid, bundle, detach=True).check()
    try:
        rt.wait_status(cid, "running")
        flags, cmd = args
        r = rt.call("exec", *flags, cid, *cmd)
        out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode()
        return r.rc, out.replace(cid, "<ID>")
    finally:
        rt.delete(cid, force=True)


@pytest.mark.parametrize("flags", [
    (),
    ("--user", "1000:1000", "--cwd", "/tmp", "-e", "FOO=bar"),
    ("--cap", "CAP_NET_RAW", "--additional-gids", "7"),
    ("--no-new-privs",),
], ids=["default", "user-cwd-env", "cap-groups", "nnp"])
def test_exec_view_equals_runc(reference_runtime, oci_runtime, make_test_bundle, flags):
    b = make_test_bundle(args=("sleep", "600"))
    b.set_no_new_privileges(False)
    b.write()
    views = [_exec_view(rt, b, (list(flags), ["sh", "-c", VIEW])) for rt in (reference_runtime, oci_runtime)]
    assert views[0][0] == 0, views[0]
    assert views[0] == views[1]


def test_exec_exit_code_and_signal(oci_runtime, make_test_bundle):
    b = make_test_bundle(args=("sleep", "600"))
    cid = oci_runtime.new_id()
    oci_runtime.run(cid, b, detach=True).check()
    try:
        assert oci_runtime.exec(cid, "sh", "-c", "exit 7").rc == 7
        assert oci_runtime.exec(cid, "sh", "-c", "kill -9 $$").rc == 137
        assert oci_runtime.exec(cid, "no-such-binary").rc == 255
    finally:
        oci_runtime.delete(cid, force=True)


def _receiver(path, got):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _f, _a = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        got["payload"], got["fds"] = msg, list(fds)
        conn.close()
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _pid_of_pidfd(fd):
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])


def test_pidfd_socket_create_and_exec(oci_runtime, make_test_bundle, oci_tmp):
    b = make_test_bundle(args=("sleep", "600"))
    cid = oci_runtime.new_id()
    got = {}
    path = os.path.join(oci_tmp, "pidfd.sock")
    t = _receiver(path, got)
    oci_runtime.create(cid, b, pidfd_socket=path).check()
    try:
        t.join(10)
        assert got["payload"] == b"standard" and len(got["fds"]) == 1
        assert _pid_of_pidfd(got["fds"][0]) == oci_runtime.state(cid)["pid"]
        os.close(got["fds"][0])
        oci_runtime.start(cid).check()
        got2 = {}
        path2 = os.path.join(oci_tmp, "pidfd2.sock")
        t2 = _receiver(path2, got2)
        oci_runtime.call("exec", "--detach", "--pidfd-socket", path2, cid, "true").check()
        t2.join(10)
        assert got2["payload"] == b"setns" and len(got2["fds"]) == 1
        os.close(got2["fds"][0])
    finally:
        oci_runtime.delete(cid, force=True)


def test_exec_into_a_sub_cgroup(oci_runtime, make_test_bundle):
    """exec --cgroup PATH puts the process in an existing sub-cgroup of the container's (runc): on v1
    ``pids:sub`` (that controller's hierarchy), on pure v2 ``sub`` (the one hierarchy)."""
    b = make_test_bundle(args=("sleep", "600"))
    cid = oci_runtime.new_id()
    oci_runtime.run(cid, b, detach=True).check()
    made = []
    v2 = not os.path.isdir("/sys/fs/cgroup/pids")
    ctrl, prefix = ("", "") if v2 else ("pids", "pids:")
    try:
        pid = oci_runtime.state(cid)["pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            own = [l.split(":", 2)[2].strip() for l in f if l.split(":")[1] == ctrl][0]
        sub = os.path.join("/sys/fs/cgroup", ctrl, own.lstrip("/"), "sub")
        os.mkdir(sub)
        made.append(sub)
        r = oci_runtime.call("exec", "--cgroup", prefix + "sub", cid, "cat", "/proc/self/cgroup")
        assert r.rc == 0, r.describe()
        out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode()
        assert any(l.split(":")[1] == ctrl and l.rstrip().endswith("/sub") for l in out.splitlines()), out
        bad = oci_runtime.call("exec", "--cgroup", prefix + "nope", cid, "true")
        assert bad.rc == 255 and "does not exist" in (bad.stderr if isinstance(bad.stderr, str) else bad.stderr.decode())
        assert oci_runtime.delete(cid, force=True).rc == 0
        assert not os.path.exists(sub), "delete removes sub-cgroups too"
    finally:
        oci_runtime.delete(cid, force=True)
        for d in made:
            try:
                os.rmdir(d)
            except OSError:
                pass
