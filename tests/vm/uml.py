"""A small User-Mode Linux runner: run a shell command in a pure cgroup v2 guest (../shared/docs/vm.md).

The guest kernel is Debian's ``user-mode-linux`` (``/usr/bin/linux.uml``), booted with
``cgroup_no_v1=all``; its root filesystem is the host's ``/`` through hostfs, read-only. The init
is a shell script (written into a private share directory on the host, which the guest mounts
read-write at /run/share): it mounts proc, sysfs, devtmpfs, tmpfs on /run /tmp /var/tmp
/dev/shm, devpts, mqueue, cgroup2 (nsdelegate) on /sys/fs/cgroup and bpffs, runs the command with
its output on ttyS0 (the host's stdout of linux.uml), records the exit code in the share and powers
off. A scratch disk (ubd0, /dev/ubda in the guest) is attached for io.max tests.

``linux.uml`` runs as an ordinary process in its own session; whatever happens (timeout, test
failure) the runner kills that process group, by its id.

Usage: ``python tests/vm/uml.py 'command'`` (prints the guest's output, exits with its status).
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

UML = "/usr/bin/linux.uml"

INIT = r"""#!/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
for d in /run /tmp /var/tmp /dev/shm; do mount -t tmpfs -o mode=1777 tmpfs $d; done
chmod 755 /run
# a checkout below one of those (CI clones anywhere, /tmp included) comes back through hostfs
for d in {keep}; do mkdir -p $d && mount -t hostfs -o $d none $d; done
mount -t mqueue mqueue /dev/mqueue
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mkdir -p /run/share
mount -t hostfs -o {share} none /run/share
ip link set lo up 2>/dev/null
echo "=== guest up: $(uname -r) cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)" > /dev/ttyS0
HOME=/tmp TMPDIR=/tmp PYTHONDONTWRITEBYTECODE=1 OCI_VM_GUEST=1 sh /run/share/cmd.sh > /dev/ttyS0 2>&1
echo $? > /run/share/rc.tmp && mv /run/share/rc.tmp /run/share/rc
sync
/bin/busybox poweroff -f
"""


def _hidden_dirs():
    """Host directories the guest's tmpfs mounts would hide but the tests need: the checkout (and so
    its .venv) when it lives below /tmp, /var/tmp, /run or /dev/shm."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = []
    for base in ("/tmp/", "/var/tmp/", "/run/", "/dev/shm/"):
        if repo.startswith(base):
            out.append(repo)
    return out


class Unavailable(Exception):
    """UML cannot be installed or started here (the reason is the message)."""


def ensure_uml(install=True):
    """linux.uml, installing the Debian package if it is missing. Raises Unavailable."""
    if os.access(UML, os.X_OK):
        return UML
    if not install:
        raise Unavailable(f"{UML} not found (apt-get install user-mode-linux)")
    if os.geteuid() != 0:
        raise Unavailable("user-mode-linux is not installed and installing it needs root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "user-mode-linux"], env=env, capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "user-mode-linux"], env=env,
                               capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"cannot install user-mode-linux: {e}")
    if r.returncode != 0 or not os.access(UML, os.X_OK):
        raise Unavailable(f"cannot install user-mode-linux: {(r.stderr or r.stdout).strip()[-500:]}")
    return UML


class Result:
    def __init__(self, rc, output, console, share, duration):
        self.rc = rc
        self.output = output
        self.console = console
        self.share = share
        self.duration = duration

    def __repr__(self):
        return f"Result(rc={self.rc}, {self.duration:.1f}s)"


def run(command, timeout=900, mem="2048M", share=None, disk_mb=64, keep_share=False):
    """Boot a guest, run ``command`` (sh syntax) in it and return a Result (rc None = no exit
    code recorded: the guest crashed or timed out). ``share`` is a host directory the guest sees
    at /run/share (a fresh one by default, removed unless keep_share)."""
    uml = ensure_uml()
    own_share = share is None
    if own_share:
        share = tempfile.mkdtemp(prefix="ociruntime-uml-")
    os.chmod(share, 0o755)
    init = os.path.join(share, "init.sh")
    with open(init, "w") as f:
        f.write(INIT.replace("{share}", share).replace("{keep}", " ".join(_hidden_dirs())))
    os.chmod(init, 0o755)
    with open(os.path.join(share, "cmd.sh"), "w") as f:
        f.write(command + "\n")
    disk = os.path.join(share, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(disk_mb << 20)
    for name in ("rc", "rc.tmp"):
        try:
            os.unlink(os.path.join(share, name))
        except FileNotFoundError:
            pass
    out_path = os.path.join(share, "output.log")
    con_path = os.path.join(share, "console.log")
    argv = [uml, f"mem={mem}", f"ubd0={disk}", "rootfstype=hostfs", "rootflags=/", "ro", f"init={init}", "quiet",
            "cgroup_no_v1=all", "systemd.unified_cgroup_hierarchy=1", "panic=-1",
            "con=null", "con0=null,fd:3", "ssl=null", "ssl0=null,fd:1"]
    # UML keeps guest memory in a file under TMPDIR: a tmpfs (/dev/shm) is what it wants
    env = dict(os.environ)
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        env["TMPDIR"] = "/dev/shm"
    t0 = time.monotonic()
    # the console goes to fd 3 (con0=fd:3): a shell puts the console log there and execs linux.uml
    argv = ["/bin/sh", "-c", 'exec 3>"$0"; exec "$@"', con_path] + argv
    with open(out_path, "wb") as out, open(os.devnull, "rb") as devnull:
        try:
            p = subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=env)
        except OSError as e:
            raise Unavailable(f"cannot start {uml}: {e}")
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_group(p)
    dur = time.monotonic() - t0
    with open(out_path, errors="replace") as f:
        output = f.read()
    with open(con_path, errors="replace") as f:
        console = f.read()
    rc = None
    try:
        with open(os.path.join(share, "rc")) as f:
            rc = int(f.read().strip())
    except (OSError, ValueError):
        pass
    if rc is None and "=== guest up" not in output:
        if own_share and not keep_share:
            shutil.rmtree(share, ignore_errors=True)
        raise Unavailable(f"the UML guest did not start (exit {p.returncode}): {(output + console)[-800:]}")
    res = Result(rc, output, console, share, dur)
    if own_share and not keep_share:
        os.unlink(disk)
    return res


def kill_group(p):
    """SIGKILL the linux.uml process group we started (by its id) and reap the leader."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    # the helpers (UML's I/O threads run as processes of the group) go with the group; make sure
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


if __name__ == "__main__":
    r = run(" ".join(sys.argv[1:]) or "uname -a", keep_share=True)
    sys.stdout.write(r.output)
    sys.stderr.write(f"[uml] rc={r.rc} in {r.duration:.1f}s, share {r.share}\n")
    sys.exit(r.rc if r.rc is not None else 125)
