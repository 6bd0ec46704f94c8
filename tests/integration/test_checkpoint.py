"""checkpoint / restore with CRIU (issue #13): runc's commands and flags, and where runc fails, better.

Every container here has pipes as stdio (criu_util.Stdio), runs a counter, a unique id and a temporary
--root (the env fixture deletes it, its cgroups and processes even on failure).
"""
import os
import shutil
import subprocess
import time

import pytest

from _util import env, rootfs_template, _subreaper, wait_for, RUNTIME, read_mountinfo  # noqa: F401
from criu_util import (COUNTER, Runner, Stdio, criu_bin, restore_counter, run_cli,  # noqa: F401
                       start_counter)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def rt(env, criu_bin):
    return Runner(RUNTIME, env.root, criu_bin)


def counter_bundle(env, mutate=None, script=COUNTER):
    return env.bundle(args=("sh", "-c", script), mutate=mutate)


def images(env, name="img"):
    return env.mkdir(name, 0o700)


# --- the basic cycle -----------------------------------------------------------------------------

def test_checkpoint_restore_counter_goes_on(env, rt):
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    rt.ok("checkpoint", "--image-path", img, cid)
    last = io.read_ints()[-1]
    # the container is gone, as runc: no state, no process
    assert rt.state(cid) is None
    assert os.path.exists(os.path.join(img, "descriptors.json")) and os.path.exists(os.path.join(img, "dump.log"))
    io2, rc, err = restore_counter(rt, img, b.path, cid)
    assert rc == 0, err
    first = io2.wait_count(5)
    vals = io2.values
    # no gap and no restart: the count goes on right where it was dumped
    assert vals[0] <= last + 2 and vals[0] >= last - 2 and first > last, (last, vals[:5])
    st = rt.state(cid)
    assert st["status"] == "running" and st["id"] == cid and st["bundle"] == b.path
    # the restored init is the container's: exec, kill and delete work on it
    assert rt.exec_out(cid, "cat", "/proc/1/cmdline").startswith("sh\0-c")
    rt.ok("kill", cid, "KILL")
    assert wait_for(lambda: rt.state(cid)["status"] == "stopped", timeout=10)
    rt.ok("delete", cid)
    io.close()
    io2.close()


def test_leave_running_keeps_it_and_restore_rolls_back(env, rt):
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    rt.ok("checkpoint", "--leave-running", "--image-path", img, cid)
    at_dump = io.read_ints()[-1]
    assert rt.state(cid)["status"] == "running"
    later = io.wait_count(10)
    assert later > at_dump
    rt.ok("delete", "--force", cid)
    io2, rc, err = restore_counter(rt, img, b.path, cid)
    assert rc == 0, err
    io2.wait_count(3)
    # restoring that image goes back to the checkpoint: the count restarts near the dump's value
    assert io2.values[0] <= at_dump + 2 < later, (at_dump, later, io2.values[:3])
    io.close()
    io2.close()


def test_foreground_restore_waits_and_returns_exit_code(env, rt):
    # long enough (>= 5 s) that the checkpoint never races the exit: CRIU hits a BUG on a root task that
    # became a zombie between its collection and its dump
    b = counter_bundle(env, script="i=0; while [ $i -lt 100 ]; do echo $i; i=$((i+1)); sleep 0.05; done; exit 7")
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    rt.ok("checkpoint", "--image-path", img, cid)
    io2 = Stdio()
    rc, err = rt("restore", "--image-path", img, "--bundle", b.path, cid, stdio=io2)
    io2.close_child_ends()
    assert rc == 7, err
    assert io2.read_ints()[-1] == 99
    assert rt.state(cid) is None  # deleted once it exited, as run does
    io.close()
    io2.close()


def test_pid_file_work_path_and_options(env, rt):
    """--pid-file, --work-path (logs there), --auto-dedup, --manage-cgroups-mode, --no-subreaper,
    --no-pivot, --file-locks, --shell-job, --ext-unix-sk, --empty-ns network all accepted end to end
    (tests/unit/test_checkpoint_opts.py checks each lands in its CRIU field)."""
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img, work = images(env), images(env, "work")
    rt.ok("checkpoint", "--image-path", img, "--work-path", work, "--auto-dedup", "--manage-cgroups-mode",
          "soft", "--file-locks", "--ext-unix-sk", "--empty-ns", "network", "--shell-job", cid)
    assert os.path.exists(os.path.join(work, "dump.log")) and not os.path.exists(os.path.join(img, "dump.log"))
    pidf = os.path.join(env.tmp, "pid")
    io2, rc, err = restore_counter(rt, img, b.path, cid, "--work-path", work, "--pid-file", pidf,
                                   "--manage-cgroups-mode", "full", "--no-subreaper", "--no-pivot",
                                   "--file-locks", "--ext-unix-sk", "--auto-dedup", "--empty-ns", "network")
    assert rc == 0, err
    io2.wait_count(3)
    assert os.path.exists(os.path.join(work, "restore.log"))
    with open(pidf) as f:
        assert int(f.read()) == rt.state(cid)["pid"]
    io.close()
    io2.close()


def test_bad_flags_are_one_line_errors(env, rt):
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    for args, want in ((("--manage-cgroups-mode", "bogus"), "manage cgroups mode"),
                       (("--empty-ns", "bogus"), "not supported"),
                       (("--parent-path", "/abs"), "--parent-path must be relative"),
                       (("--page-server", "nocolon"), "ADDRESS:PORT")):
        rc, err = rt("checkpoint", "--image-path", images(env), *args, cid)
        assert rc != 0 and want in err and len(err.strip().splitlines()) == 1, (args, err)
    assert rt.state(cid)["status"] == "running"
    io.wait_count(3)
    io.close()


# --- refused up front, clear errors ------------------------------------------------------------------

def _mem_track(criu):
    from ociruntime import criu as c
    return c.features(criu, mem_track=True)["mem_track"]


def test_pre_dump_refused_without_memory_tracking_or_works(env, rt, criu_bin):
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    os.mkdir(os.path.join(img, "parent"))
    if _mem_track(criu_bin):
        rt.ok("checkpoint", "--pre-dump", "--image-path", os.path.join(img, "parent"), cid)
        at_dump = io.read_ints()[-1]
        rt.ok("checkpoint", "--parent-path", "../parent", "--image-path", os.path.join(img, "final"), cid)
        assert os.path.islink(os.path.join(img, "final", "parent")), os.listdir(os.path.join(img, "final"))
        # the incremental image restores: its unchanged pages come from the pre-dump
        io2, rc, err = restore_counter(rt, os.path.join(img, "final"), b.path, cid)
        assert rc == 0, err
        assert io2.wait_count(5, timeout=60) > at_dump
        rt.ok("delete", "--force", cid)
        io.close()
        io2.close()
        return
    for args in (("--pre-dump",), ("--parent-path", "parent")):
        rc, err = rt("checkpoint", "--image-path", img, *args, cid)
        lines = err.strip().splitlines()
        assert rc != 0 and len(lines) == 1, err
        assert "mem_track" in err and "soft-dirty" in err and args[0] in err, err
    # nothing happened to the container
    assert rt.state(cid)["status"] == "running"
    io.wait_count(5)
    assert not os.path.exists(os.path.join(img, "dump.log"))
    io.close()


def test_missing_and_too_old_criu(env, rt):
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    rc, err = run_cli([RUNTIME, "--root", env.root, "--criu", "/nonexistent/criu", "checkpoint", "--image-path",
                       images(env), cid])
    assert rc != 0 and "CRIU >= " in err and len(err.strip().splitlines()) == 1, err
    old = os.path.join(env.tmp, "old-criu")
    with open(old, "w") as f:  # what Debian 12's criu 3.17 does on this kernel: --version works, the rest not
        f.write("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'Version: 3.17.1'; exit 0; }\n"
                "echo 'Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds' >&2; exit 1\n")
    os.chmod(old, 0o755)
    rc, err = run_cli([RUNTIME, "--root", env.root, "--criu", old, "checkpoint", "--image-path", images(env), cid])
    # (the version needed depends on the kernel: 4.1 from 6.13 on, 3.15 before, e.g. the v2 guest's 6.1)
    from ociruntime import criu
    need = "CRIU >= 4.1" if criu.kernel_needs_41() else "CRIU >= 3.15"
    assert rc != 0 and "3.17.1" in err and need in err and len(err.strip().splitlines()) == 1, err
    rc, err = run_cli([RUNTIME, "--root", env.root, "--criu", old, "restore", "--image-path", images(env),
                       "--bundle", b.path, env.new_id()])
    assert rc != 0 and need in err, err
    assert rt.state(cid)["status"] == "running"
    io.wait_count(3)
    io.close()


def test_host_dev_null_stdin_is_checkpointable(env, rt):
    """`podman run -d` gives the container the host's /dev/null as stdin: the init reopens it as the
    container's own /dev/null (runc reOpenDevNull), so CRIU can dump it."""
    b = counter_bundle(env)
    cid = env.new_id()
    io = Stdio()
    with open("/dev/null", "rb") as devnull:
        p = subprocess.Popen(rt.argv("run", "-d", "--bundle", b.path, cid), stdin=devnull, stdout=io.out_w,
                             stderr=io.err_w)
        assert p.wait(30) == 0, io.err()
    io.close_child_ends()
    io.wait_count(3)
    pid = rt.state(cid)["pid"]
    with open("/proc/self/mountinfo") as f:
        host_dev = [ln.split()[0] for ln in f if ln.split()[4] == "/dev"]
    with open(f"/proc/{pid}/fdinfo/0") as f:
        mnt = [ln.split()[1] for ln in f if ln.startswith("mnt_id:")]
    assert mnt and mnt[0] not in host_dev, "fd 0 is still the host's /dev/null"
    img = images(env)
    rt.ok("checkpoint", "--image-path", img, cid)
    io2, rc, err = restore_counter(rt, img, b.path, cid)
    assert rc == 0, err
    io2.wait_count(3)
    io.close()
    io2.close()


def test_failed_checkpoint_leaves_container_running(env, rt):
    """A host file as stdin cannot be dumped (CRIU: can't lookup mount): the checkpoint fails with CRIU's
    reason in one line and the container runs on untouched."""
    b = counter_bundle(env)
    cid = env.new_id()
    io = Stdio()
    host_file = os.path.join(env.tmp, "stdin-file")
    with open(host_file, "w") as f:
        f.write("x\n")
    with open(host_file, "rb") as stdin:
        p = subprocess.Popen(rt.argv("run", "-d", "--bundle", b.path, cid), stdin=stdin, stdout=io.out_w,
                             stderr=io.err_w)
        assert p.wait(30) == 0, io.err()
    io.close_child_ends()
    io.wait_count(3)
    before = rt.state(cid)
    img = images(env)
    rc, err = rt("checkpoint", "--image-path", img, cid)
    assert rc != 0 and "criu failed" in err and "dump.log" in err and len(err.strip().splitlines()) == 1, err
    after = rt.state(cid)
    assert after == before and after["status"] == "running"
    io.wait_count(10)
    # not frozen, not stopped: every process runs
    with open(f"/proc/{after['pid']}/stat") as f:
        assert f.read().split(") ")[1][0] in "SR"
    io.close()


def test_failed_restore_leaves_nothing(env, rt):
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    rt.ok("checkpoint", "--image-path", img, cid)
    io.close()
    # a broken image: the process tree's pages are gone
    for name in os.listdir(img):
        if name.startswith("pages-"):
            os.unlink(os.path.join(img, name))
    new = env.new_id()
    snap = env.snapshot(new, cgroup_names=(new,))
    io2, rc, err = restore_counter(rt, img, b.path, new)
    assert rc != 0 and "restore" in err and "restore.log" in err, err
    assert len(err.strip().splitlines()) == 1, err
    snap.assert_clean()
    assert not [ln for ln in read_mountinfo() if "criu-root" in ln]
    io2.close()


def test_restore_refuses_an_existing_id_and_a_non_image(env, rt):
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    rt.ok("checkpoint", "--leave-running", "--image-path", img, cid)
    rc, err = rt("restore", "-d", "--image-path", img, "--bundle", b.path, cid)
    assert rc != 0 and "already exists" in err, err
    empty = images(env, "empty")
    new = env.new_id()
    snap = env.snapshot(new)
    rc, err = rt("restore", "-d", "--image-path", empty, "--bundle", b.path, new)
    assert rc != 0 and "descriptors.json" in err, err
    snap.assert_clean()
    io.close()


# --- better than runc: loopback ------------------------------------------------------------------------

def _lo_line(runner, cid):
    out = runner.exec_out(cid, "ip", "-o", "addr", "show", "lo")
    link = runner.exec_out(cid, "ip", "-o", "link", "show", "lo")
    return link, out


def test_restored_network_namespace_has_loopback_up(env, rt, criu_bin):
    """The container's own network namespace (made by the runtime) comes back with lo up and 127.0.0.1;
    runc 1.1.5 restores it with lo down (CRIU empty_ns). Both checked."""
    b = counter_bundle(env)
    for runner, up in ((rt, True), (Runner("/usr/sbin/runc", os.path.join(env.tmp, "runc-root"), criu_bin), False)):
        cid = env.new_id()
        if runner is not rt:
            env.extra_roots.append(runner.root)
        io = start_counter(runner, b.path, cid)
        link, addr = _lo_line(runner, cid)
        assert "UP" in link.split(">")[0] and "127.0.0.1" in addr
        img = images(env, f"img-{cid}")
        runner.ok("checkpoint", "--image-path", img, cid)
        io2, rc, err = restore_counter(runner, img, b.path, cid)
        assert rc == 0, err
        io2.wait_count(3)
        link, addr = _lo_line(runner, cid)
        assert ("UP" in link.split(">")[0] and "127.0.0.1" in addr) == up, (runner.binary, link, addr)
        runner.ok("delete", "--force", cid)
        io.close()
        io2.close()


TCP_SCRIPT = ("sleep 100000 | nc -l -p 7777 & sleep 0.3; "
              "(i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done) | nc 127.0.0.1 7777 >/dev/null")


def test_tcp_established_over_loopback(env, rt, criu_bin):
    """An established TCP connection inside the container survives with --tcp-established (it needs lo
    up at restore, which runc cannot give: 'Network is unreachable'); without the flag CRIU refuses.
    Where the kernel refuses SO_PASSSEC on inet sockets (>= 6.18), CRIU <= 4.2.1 cannot dump any TCP
    socket: the runtime says so up front and the container runs on."""
    from ociruntime import criu
    b = counter_bundle(env, script=TCP_SCRIPT)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    rc, err = rt("checkpoint", "--image-path", images(env, "no-tcp"), cid)
    assert rc != 0 and "criu failed" in err and len(err.strip().splitlines()) == 1, err
    assert rt.state(cid)["status"] == "running"
    io.wait_count(3)
    img = images(env)
    if criu.version(criu_bin) <= criu.INET_PASSSEC_NEEDED_UP_TO and criu.kernel_refuses_inet_passsec():
        rc, err = rt("checkpoint", "--tcp-established", "--image-path", img, cid)
        assert rc != 0 and len(err.strip().splitlines()) == 1, err
        assert "--tcp-established" in err and "SO_PASSSEC" in err and "cannot dump TCP sockets" in err, err
        assert not os.path.exists(os.path.join(img, "dump.log"))
        io.wait_count(5)
        io.close()
        return
    rt.ok("checkpoint", "--tcp-established", "--image-path", img, cid)
    last = io.read_ints()[-1]
    io2, rc, err = restore_counter(rt, img, b.path, cid, "--tcp-established")
    assert rc == 0, err
    io2.wait_count(10)
    assert io2.values[-1] > last
    io.close()
    io2.close()


# --- terminal: --console-socket, two cycles -------------------------------------------------------------

class ConsoleSocket:
    """A --console-socket listener: accepts one connection per call of take(), returns the pty master."""

    def __init__(self, path):
        import socket
        self.path = path
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.bind(path)
        self.s.listen(4)
        self.s.settimeout(30)

    def take(self):
        import array
        import socket
        c, _ = self.s.accept()
        with c:
            fds = array.array("i")
            msg, anc, _f, _a = c.recvmsg(4096, socket.CMSG_SPACE(4))
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[:4])
        assert fds, "no pty master received"
        os.set_blocking(fds[0], False)
        return fds[0]

    def close(self):
        self.s.close()


def _read_tty_ints(fd, timeout=10.0, want=5):
    buf = b""
    deadline = time.monotonic() + timeout
    vals = []
    while time.monotonic() < deadline and len(vals) < want:
        try:
            buf += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            break
        vals = [int(x) for x in buf.replace(b"\r", b"").split(b"\n")[:-1] if x.strip().isdigit()]
    return vals


def test_terminal_container_survives_two_cycles(env, rt):
    def tty(spec):
        spec["process"]["terminal"] = True
    b = counter_bundle(env, mutate=tty)
    cid = env.new_id()
    cs = ConsoleSocket(os.path.join(env.tmp, "console.sock"))
    masters = []
    try:
        rc, err = rt("run", "-d", "--console-socket", cs.path, "--bundle", b.path, cid)
        assert rc == 0, err
        masters.append(cs.take())
        last = _read_tty_ints(masters[-1])[-1]
        for cycle in range(2):
            img = images(env, f"img{cycle}")
            rt.ok("checkpoint", "--image-path", img, cid)
            rc, err = rt("restore", "-d", "--console-socket", cs.path, "--image-path", img, "--bundle", b.path, cid)
            assert rc == 0, err
            masters.append(cs.take())
            vals = _read_tty_ints(masters[-1])
            assert vals and vals[-1] > last, (cycle, last, vals)
            last = vals[-1]
            assert rt.exec_out(cid, "sh", "-c", "readlink /proc/1/fd/1").startswith("/dev/pts/")
    finally:
        for m in masters:
            os.close(m)
        cs.close()


# --- migration: host A -> host B ----------------------------------------------------------------------

def _copy_bundle(env, b, name):
    dst = os.path.join(env.tmp, name)
    subprocess.run(["cp", "-a", b.path, dst], check=True)
    return dst


def test_migration_by_directory_copy(env, rt, criu_bin):
    """Checkpoint under --root A, copy the images and the bundle, restore under --root B with another id."""
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img_a = images(env, "host-a-img")
    rt.ok("checkpoint", "--image-path", img_a, cid)
    last = io.read_ints()[-1]
    bundle_b = _copy_bundle(env, b, "host-b-bundle")
    img_b = os.path.join(env.tmp, "host-b-img")
    shutil.copytree(img_a, img_b)
    root_b = os.path.join(env.tmp, "root-b")
    env.extra_roots.append(root_b)
    rt_b = Runner(RUNTIME, root_b, criu_bin)
    cid_b = env.new_id()
    io2, rc, err = restore_counter(rt_b, img_b, bundle_b, cid_b)
    assert rc == 0, err
    io2.wait_count(5)
    assert last - 2 <= io2.values[0] <= last + 2, (last, io2.values[:3])
    st = rt_b.state(cid_b)
    assert st["bundle"] == os.path.realpath(bundle_b) and st["status"] == "running"
    assert rt.state(cid) is None
    rt_b.ok("delete", "--force", cid_b)
    io.close()
    io2.close()


class Netns:
    """Two network namespaces made by the test ("host A" and "host B", ip netns), a veth pair made directly
    between them, addresses 10.213.n.1/30 (A) and .2/30 (B), lo up in both. The host's own network is never
    touched; both go (with the veth) at close()."""

    def __init__(self, tag):
        import random
        self.a, self.b = f"ocit-{tag}-a", f"ocit-{tag}-b"
        n = random.randrange(1, 250)
        self.a_ip, self.b_ip = f"10.213.{n}.1", f"10.213.{n}.2"
        self.a_if, self.b_if = f"oc{tag[:6]}a", f"oc{tag[:6]}b"
        self.made = []
        try:
            for ns in (self.a, self.b):
                self._ip("netns", "add", ns)
                self.made.append(ns)
            self._ip("link", "add", self.a_if, "netns", self.a, "type", "veth", "peer", "name", self.b_if,
                     "netns", self.b)
            for ns, ifn, ip in ((self.a, self.a_if, self.a_ip), (self.b, self.b_if, self.b_ip)):
                self._ip("-n", ns, "addr", "add", f"{ip}/30", "dev", ifn)
                self._ip("-n", ns, "link", "set", ifn, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def path(self, ns):
        return f"/run/netns/{ns}"

    def enter(self, ns, argv):
        """argv run in network namespace ns only (nsenter: no other namespace, no remounted /sys)."""
        return ["nsenter", f"--net={self.path(ns)}", "--", *argv]

    @staticmethod
    def _ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def close(self):
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made = []


def test_migration_by_page_server_in_another_netns(env, rt, criu_bin):
    """Host A and host B are two network namespaces the test made, joined by a veth pair: the checkpoint runs
    in A and sends the memory pages over the veth to a CRIU page server listening in B; the rest of the
    images are copied; restore on root B with a copied bundle and another id."""
    import uuid
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    ns = Netns(uuid.uuid4().hex[:6])
    ps = None
    try:
        img_b = images(env, "host-b-img")
        port = 27000 + os.getpid() % 1000
        ps = subprocess.Popen(ns.enter(ns.b, [criu_bin, "page-server", "--images-dir", img_b, "--address", ns.b_ip,
                                              "--port", str(port)]),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        env.helper_pids.append(ps.pid)
        time.sleep(0.5)
        img_a = images(env, "host-a-img")
        # the checkpoint runs on "host A" (its network namespace), the pages go over the veth to B
        rc, err = run_cli(ns.enter(ns.a, rt.argv("checkpoint", "--page-server", f"{ns.b_ip}:{port}",
                                                  "--image-path", img_a, cid)))
        assert rc == 0, err
        ps.wait(timeout=30)  # a page server serves one dump, then exits
        last = io.read_ints()[-1]
        assert not [n for n in os.listdir(img_a) if n.startswith("pages-")]
        assert [n for n in os.listdir(img_b) if n.startswith("pages-")]
        for n in os.listdir(img_a):
            if not os.path.exists(os.path.join(img_b, n)):
                shutil.copy2(os.path.join(img_a, n), os.path.join(img_b, n))
    finally:
        if ps and ps.poll() is None:
            ps.kill()
            ps.wait()
        ns.close()
    bundle_b = _copy_bundle(env, b, "host-b-bundle")
    root_b = os.path.join(env.tmp, "root-b")
    env.extra_roots.append(root_b)
    rt_b = Runner(RUNTIME, root_b, criu_bin)
    cid_b = env.new_id()
    io2, rc, err = restore_counter(rt_b, img_b, bundle_b, cid_b)
    assert rc == 0, err
    io2.wait_count(5)
    assert last - 2 <= io2.values[0] <= last + 2
    rt_b.ok("delete", "--force", cid_b)
    io.close()
    io2.close()


# --- lazy migration -------------------------------------------------------------------------------------

def test_lazy_pages_refused_where_the_transfer_cannot_work(env, rt, criu_bin):
    """--lazy-pages (+ --page-server, --status-fd): CRIU's lazy transfer needs 4 MiB pipes, i.e.
    CAP_SYS_RESOURCE or fs.pipe-max-size >= 4 MiB; runc starts anyway and its restore hangs. Where the host
    lacks both, checkpoint and restore refuse up front in one line and the container runs on; where it has
    them, the lazy migration runs: a `criu lazy-pages` daemon fetches the pages from the dump's page
    server while the restored counter goes on."""
    from ociruntime import criu
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    r, w = os.pipe()
    port = 28000 + os.getpid() % 1000
    why = criu.lazy_pages_blocker()
    if why:
        rc, err = rt("checkpoint", "--lazy-pages", "--page-server", f"127.0.0.1:{port}", "--status-fd", str(w),
                     "--image-path", img, cid, pass_fds=(w,))
        assert rc != 0 and len(err.strip().splitlines()) == 1, err
        assert "--lazy-pages" in err and "CAP_SYS_RESOURCE" in err and "pipe-max-size" in err, err
        assert rt.state(cid)["status"] == "running"
        io.wait_count(5)
        new = env.new_id()
        snap = env.snapshot(new)
        rc, err = rt("restore", "-d", "--lazy-pages", "--image-path", img, "--bundle", b.path, new)
        assert rc != 0 and "--lazy-pages" in err and "CAP_SYS_RESOURCE" in err, err
        snap.assert_clean()
        os.close(r)
        os.close(w)
        io.close()
        return
    # the host can: lazy migration end to end
    dump = subprocess.Popen(rt.argv("checkpoint", "--lazy-pages", "--page-server", f"127.0.0.1:{port}",
                                    "--status-fd", str(w), "--image-path", img, cid),
                            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    env.helper_pids.append(dump.pid)
    os.close(w)
    assert os.read(r, 1) == b"\0", "no status-fd notification"
    os.close(r)
    lazy = subprocess.Popen([criu_bin, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port",
                             str(port), "--images-dir", img], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env.helper_pids.append(lazy.pid)
    time.sleep(0.5)
    # the dumping checkpoint still holds `cid` (its container goes when the last page is fetched), so
    # the restore takes another id, as runc's own lazy-pages test does
    new = env.new_id()
    io2, rc, err = restore_counter(rt, img, b.path, new, "--lazy-pages")
    assert rc == 0, err
    io2.wait_count(10, timeout=60)
    assert dump.wait(120) == 0, dump.stderr.read()
    assert rt.state(cid) is None, "the lazily dumped container outlived its checkpoint"
    assert rt.state(new)["status"] == "running"
    io.close()
    io2.close()


# --- namespaces joined by path, cgroups, hooks ----------------------------------------------------------

def test_network_namespace_joined_by_path(env, rt):
    """A network namespace named by path is external to the checkpoint (runc: extRootNetNS): the restored
    container is back in that same namespace, not a new one."""
    import uuid
    ns = Netns(uuid.uuid4().hex[:6])
    try:
        path = ns.path(ns.b)

        def mutate(spec):
            spec["linux"]["namespaces"] = [n if n["type"] != "network" else {"type": "network", "path": path}
                                           for n in spec["linux"]["namespaces"]]
        b = counter_bundle(env, mutate=mutate)
        cid = env.new_id()
        io = start_counter(rt, b.path, cid)
        want = f"net:[{os.stat(path).st_ino}]"
        assert os.readlink(f"/proc/{rt.state(cid)['pid']}/ns/net") == want
        img = images(env)
        rt.ok("checkpoint", "--image-path", img, cid)
        io2, rc, err = restore_counter(rt, img, b.path, cid)
        assert rc == 0, err
        io2.wait_count(3)
        assert os.readlink(f"/proc/{rt.state(cid)['pid']}/ns/net") == want
        # the veth end that lives there is still seen from inside
        assert ns.b_if in rt.exec_out(cid, "ip", "-o", "link")
        rt.ok("delete", "--force", cid)
        io.close()
        io2.close()
    finally:
        ns.close()


# a counter that never forks (read's timeout as its clock): the pids limit can be reached from an exec
# without the container's own shell failing to fork
NOFORK_COUNTER = "i=0; while :; do echo $i; i=$((i+1)); read -t 0.05 x; done"


def _cg_counter(path, name, key):
    """A counter line ``key N`` of a cgroup file (memory.events, pids.events); 0 when absent."""
    with open(os.path.join(path, name)) as f:
        for ln in f:
            k, _, v = ln.partition(" ")
            if k == key:
                return int(v)
    return 0


def test_cgroups_and_limits_restored(env, rt):
    """Checkpoint with --leave-running (the container runs on, thawed), delete, restore that image: the
    restored tree is in the container's own cgroups again (every hierarchy on v1, the one cgroup on v2)
    with the config's limits in force: a fork past pids.max fails, memory past the memory limit hits it;
    the counter runs on; delete leaves nothing (state, cgroup, mount, process). Run in the v2 guest too."""
    def mutate(spec):
        spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 8}}
    b = counter_bundle(env, mutate=mutate, script=NOFORK_COUNTER)
    cid = env.new_id()
    snap = env.snapshot(cid)
    io = start_counter(rt, b.path, cid)
    from ociruntime import cgroups
    paths = cgroups.container_paths(None, cid)
    v2 = list(paths) == [""]
    mem, pids = (paths[""], paths[""]) if v2 else (paths["memory"], paths["pids"])
    img = images(env)
    rt.ok("checkpoint", "--leave-running", "--image-path", img, cid)
    at_dump = io.read_ints()[-1]
    assert rt.state(cid)["status"] == "running"
    if v2:  # CRIU froze it through cgroup.freeze and thawed it
        assert _cg_counter(paths[""], "cgroup.events", "frozen") == 0
    assert io.wait_count(5) > at_dump
    rt.ok("delete", "--force", cid)
    assert not [p for p in paths.values() if os.path.exists(p)]
    io2, rc, err = restore_counter(rt, img, b.path, cid)
    assert rc == 0, err
    io2.wait_count(3)
    assert io2.values[0] <= at_dump + 2, (at_dump, io2.values[:3])  # back to the checkpoint
    st = rt.state(cid)
    with open(f"/proc/{st['pid']}/cgroup") as f:
        lines = [ln.strip().split(":", 2) for ln in f if ln.strip()]
    for _, ctrl, path in lines:
        assert path.endswith("/" + cid), (ctrl, path)
    for d in {mem, pids}:
        with open(os.path.join(d, "cgroup.procs")) as f:
            assert str(st["pid"]) in f.read().split(), d
    with open(os.path.join(mem, "memory.max" if v2 else "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 64 << 20
    with open(os.path.join(pids, "pids.max")) as f:
        assert f.read().strip() == "8"
    # pids.max in force: an exec forks sleepers until the kernel refuses (EAGAIN)
    assert _cg_counter(pids, "pids.events", "max") == 0
    with open(os.path.join(pids, "pids.current")) as f:
        tasks_before = int(f.read())
    p = subprocess.run(rt.argv("exec", cid, "sh", "-c", "i=0; while [ $i -lt 20 ]; do sleep 3 & i=$((i+1)); done"),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "can't fork" in p.stderr, (p.returncode, p.stderr)
    assert _cg_counter(pids, "pids.events", "max") > 0

    def tasks():
        with open(os.path.join(pids, "pids.current")) as f:
            return int(f.read())
    # the sleepers hold the pids limit until they end (3 s, longer on a loaded machine): the next exec
    # needs its tasks back
    deadline = time.monotonic() + 60
    while tasks() > tasks_before:
        assert time.monotonic() < deadline, (tasks(), tasks_before)
        time.sleep(0.1)
    # the memory limit in force: a 96 MiB buffer runs into it (OOM-killed where there is no swap)
    def mem_hits():
        if v2:
            return _cg_counter(mem, "memory.events", "max")
        with open(os.path.join(mem, "memory.failcnt")) as f:
            return int(f.read())
    before = mem_hits()
    p = subprocess.run(rt.argv("exec", cid, "dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert mem_hits() > before, (p.returncode, p.stderr)
    io2.wait_count(3)  # the container's own shell never forked: it runs on
    rt.ok("delete", "--force", cid)
    assert not [p for p in paths.values() if os.path.exists(p)]
    snap.assert_clean()
    io.close()
    io2.close()


def test_restore_runs_hooks(env, rt):
    """prestart and createRuntime run at CRIU's setup-namespaces (the restored pid in their state),
    poststart once it runs, poststop at delete (runc's points)."""
    log = os.path.join(env.tmp, "hooks.log")

    def hook(name):
        return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {name} $(cat) >> {log}"]}

    def mutate(spec):
        spec["hooks"] = {k: [hook(k)] for k in ("prestart", "createRuntime", "poststart", "poststop")}
    b = counter_bundle(env, mutate=mutate)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    rt.ok("checkpoint", "--image-path", img, cid)
    os.unlink(log)
    io2, rc, err = restore_counter(rt, img, b.path, cid)
    assert rc == 0, err
    io2.wait_count(3)
    with open(log) as f:
        lines = f.read().splitlines()
    names = [ln.split()[0] for ln in lines]
    assert names == ["prestart", "createRuntime", "poststart"], lines
    import json as _json
    pid = rt.state(cid)["pid"]
    for ln in lines:
        s = _json.loads(ln.split(" ", 1)[1])
        assert s["id"] == cid and s["pid"] == pid, ln
    rt.ok("delete", "--force", cid)
    with open(log) as f:
        assert f.read().splitlines()[-1].startswith("poststop")
    io.close()
    io2.close()


def test_lsm_flags(env, rt):
    """--lsm-profile / --lsm-mount-context: passed to CRIU where the LSM is enabled; refused up front in one
    line (nothing left behind) where it is not, and a malformed profile always."""
    from ociruntime import lsm
    b = counter_bundle(env)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    img = images(env)
    rt.ok("checkpoint", "--image-path", img, cid)
    cases = [(("--lsm-profile", "bogus"), "expected apparmor:PROFILE or selinux:LABEL")]
    if not lsm.apparmor_enabled():
        cases.append((("--lsm-profile", "apparmor:unconfined"), "AppArmor is not enabled on this host"))
    if not lsm.selinux_enabled():
        cases.append((("--lsm-profile", "selinux:system_u:system_r:container_t:s0"),
                      "SELinux is not enabled on this host"))
        cases.append((("--lsm-mount-context", "system_u:object_r:container_file_t:s0"),
                      "SELinux is not enabled on this host"))
    for args, want in cases:
        new = env.new_id()
        snap = env.snapshot(new)
        io2, rc, err = restore_counter(rt, img, b.path, new, *args)
        assert rc != 0 and want in err and len(err.strip().splitlines()) == 1, (args, err)
        snap.assert_clean()
        io2.close()
    if lsm.apparmor_enabled():
        io2, rc, err = restore_counter(rt, img, b.path, cid, "--lsm-profile", "apparmor:unconfined")
        assert rc == 0, err
        io2.wait_count(3)
        io2.close()
    io.close()


def test_checkpoint_status_rules(env, rt):
    """As runc: a created (not started) container cannot be checkpointed; a paused one can, and with
    --leave-running it stays paused."""
    b = counter_bundle(env)
    cid = env.new_id()
    rc, err = rt("create", "--bundle", b.path, cid, stdio=None)
    assert rc == 0, err
    rc, err = rt("checkpoint", "--image-path", images(env, "created"), cid)
    assert rc != 0 and "Container cannot be checkpointed in created state" in err, err
    assert rt.state(cid)["status"] == "created"
    rt.ok("delete", "--force", cid)
    cid = env.new_id()
    io = start_counter(rt, b.path, cid)
    rt.ok("pause", cid)
    img = images(env)
    rt.ok("checkpoint", "--leave-running", "--image-path", img, cid)
    assert rt.state(cid)["status"] == "paused"
    rt.ok("resume", cid)
    io.wait_count(3)
    rt.ok("delete", "--force", cid)
    io2, rc, err = restore_counter(rt, img, b.path, cid)
    assert rc == 0, err
    io2.wait_count(3)
    io.close()
    io2.close()


def test_foreground_terminal_restore_relays_the_tty(env, rt):
    """restore of a terminal container without -d and without --console-socket: the runtime relays the
    pty itself (as `run` does); the count goes on on our terminal; the exit code is passed on."""
    import pty
    import signal as _signal

    def tty(spec):
        spec["process"]["terminal"] = True
    b = counter_bundle(env, mutate=tty)
    cid = env.new_id()
    cs = ConsoleSocket(os.path.join(env.tmp, "console.sock"))
    try:
        rt.ok("run", "-d", "--console-socket", cs.path, "--bundle", b.path, cid)
        m = cs.take()
        last = _read_tty_ints(m)[-1]
        img = images(env)
        rt.ok("checkpoint", "--image-path", img, cid)
        os.close(m)
    finally:
        cs.close()
    master, slave = pty.openpty()
    p = subprocess.Popen(rt.argv("restore", "--image-path", img, "--bundle", b.path, cid), stdin=slave,
                         stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    os.set_blocking(master, False)
    try:
        vals = _read_tty_ints(master, timeout=90, want=8)  # a restore under TCG (the v2 guest) takes seconds
        assert vals and vals[-1] > last, (last, vals)
        assert wait_for(lambda: (rt.state(cid) or {}).get("status") == "running", timeout=10)
        rt.ok("kill", cid, "KILL")
        assert p.wait(30) == 128 + _signal.SIGKILL
        assert rt.state(cid) is None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_rootless_is_refused_in_one_line(env, rt, oci_runtime_for_others):
    root = env.mkdir("user-root", 0o777)

    def drop():
        os.setgid(65534)
        os.setuid(65534)
    for args in (("checkpoint", "x"), ("restore", "-d", "--bundle", env.tmp, "x")):
        # the runtime uid 65534 can reach (the checkout may sit below a 0700 directory: ociruntime.testing.reach)
        p = subprocess.run([oci_runtime_for_others, "--root", root, *args], capture_output=True, text=True,
                           preexec_fn=drop,
                           timeout=30)
        assert p.returncode != 0 and "needs root" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p


def _reap_dead_children():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def test_pid_namespace_joined_by_path(env, rt):
    """A container in another container's pid namespace (joined by path): checkpointed and restored back
    into that namespace right away. The dumped pids stay taken there until their zombies are reaped by a
    parent the runtime does not control, so CRIU first fails 'Can't fork for N: File exists'; the restore
    waits for them (runc 1.1.5 fails: 'criu failed: type NOTIFY errno 17')."""
    b = counter_bundle(env)
    holder = env.new_id()
    io_h = start_counter(rt, b.path, holder)
    path = f"/proc/{rt.state(holder)['pid']}/ns/pid"

    def mutate(spec):
        spec["linux"]["namespaces"] = [n if n["type"] != "pid" else {"type": "pid", "path": path}
                                       for n in spec["linux"]["namespaces"]]
    b2 = counter_bundle(env, mutate=mutate)
    cid = env.new_id()
    io = start_counter(rt, b2.path, cid)
    want = os.readlink(path)
    img = images(env)
    rt.ok("checkpoint", "--image-path", img, cid)
    last = io.read_ints()[-1]
    # this test is the dumped processes' subreaper (as conmon or the containerd shim would be): it reaps
    # them, a little later, while the restore waits
    import threading
    threading.Timer(1.0, _reap_dead_children).start()
    io2, rc, err = restore_counter(rt, img, b2.path, cid)
    assert rc == 0, err
    io2.wait_count(3)
    assert io2.values[0] <= last + 2
    assert os.readlink(f"/proc/{rt.state(cid)['pid']}/ns/pid") == want
    rt.ok("delete", "--force", cid)
    # the holder's pid 1 can only finish exiting once every task of its namespace is reaped, the restored
    # one included (its zombie is ours: we are the subreaper)
    _reap_dead_children()
    rt.ok("delete", "--force", holder)
    io_h.close()
    io.close()
    io2.close()
