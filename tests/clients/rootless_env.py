"""Scaffolding for rootless podman client tests: an ordinary user's podman driving a runtime.

``RootlessPodman(runtime, subids=True)`` makes, for one test module:

* a **test user**: an unused uid with a passwd/group entry and (``subids``) a 65536-id range in
  /etc/subuid and /etc/subgid -- written to files of its own and bind-mounted over the host's
  /etc/passwd, /etc/group, /etc/subuid, /etc/subgid **only inside one private mount namespace**
  (``unshare --mount --propagation private``, held by a ``sleep``). The host's /etc is never written.
  Without ``subids`` podman falls back to its single-id mapping (``0 <uid> 1``, setgroups deny).
* ``/dev/net/tun`` usable by the user for slirp4netns: the host's node is 0600 here (Debian's udev
  default is 0666). Rather than chmod the host's node for the test's duration, a node of the same
  device (10:200, mode 0666) is made on a tmpfs of our own and bind-mounted over /dev/net/tun in the
  private namespace: the host's node is never touched (the teardown checks its mode anyway).
* podman's own files: ``$HOME``, ``$XDG_RUNTIME_DIR`` (0700, the user's), a ``containers.conf``
  (cgroupfs manager, file events, ``[engine.runtimes]`` with ``ociruntime`` and runc, both listed in
  ``runtime_supports_json``) and a ``storage.conf`` (vfs, graphroot/runroot in the scratch dir) given
  through ``CONTAINERS_CONF``/``CONTAINERS_STORAGE_CONF``: podman never touches the host's storage.
* the busybox image, imported with ``podman import`` as the user (files owned by 0 only, so the
  single-mapping user can store it too).

Every podman command runs as the user (``setpriv --reuid --regid --init-groups``) inside the private
namespace (``nsenter --mount``). ``teardown()`` removes the containers, ends the user's processes
(podman's pause process, conmons, slirp4netns: all of that uid, which nothing else uses) by pid,
drops the namespace and the scratch dir and returns what it found left behind.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from clients_env import Res, pty_run, read_file, wait_for
from ociruntime.testing.rootfs import busybox_rootfs
from ociruntime.testing.runtime import NamespaceHolder, safe_rmtree

RUNC = "/usr/sbin/runc"
IMAGE = "localhost/ocirt-rl-busybox:latest"
SUBID_COUNT = 65536
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TUN = "/dev/net/tun"


class RootlessSetupError(RuntimeError):
    pass


def _proc_uids(pid):
    txt = read_file(f"/proc/{pid}/status", "") or ""
    for line in txt.splitlines():
        if line.startswith("Uid:"):
            return {int(x) for x in line.split()[1:]}
    return set()


def pids_of_uid(uid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and uid in _proc_uids(d):
            out.append(int(d))
    return out


def unused_uid(base):
    """A uid with no passwd entry and no process: nothing on the host belongs to it."""
    for uid in range(base, base + 64):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if not pids_of_uid(uid):
            return uid
    raise RootlessSetupError("no unused uid found")


def as_uid_argv(uid, gid, argv):
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]


ROOTLESS_TOOLS = {"slirp4netns": "slirp4netns", "newuidmap": "uidmap", "newgidmap": "uidmap"}


def ensure_rootless_packages():
    """slirp4netns and newuidmap/newgidmap (package uidmap), installed from Debian when missing
    (make test installs them too). Returns None, or a reason string."""
    missing = sorted({pkg for tool, pkg in ROOTLESS_TOOLS.items() if not shutil.which(tool, path=PATH)})
    if not missing:
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", *missing],
                ["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"],
                ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", *missing]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode == 0 and all(shutil.which(t, path=PATH) for t in ROOTLESS_TOOLS):
            return None
    return f"rootless podman needs {', '.join(missing)} and apt failed: {r.stderr.strip()[-500:]}"


class RootlessPodman:
    def __init__(self, runtime_for, subids=True):
        """runtime_for(uid, scratch) -> the runtime path this user is given (conftest.runtime_for_uid)."""
        self.subids = subids
        self.W = tempfile.mkdtemp(prefix="ocirl-", dir="/var/tmp")
        os.chmod(self.W, 0o755)
        # apart from test_rootless's uids (3.0M-3.8M): the teardown ends this uid's processes by pid,
        # which are then only ever ours
        self.uid = self.gid = unused_uid(5_000_000 + (os.getpid() % 10_000) * 64 + (0 if subids else 32))
        self.name = f"ocirl{self.uid}"
        self.first_subid = 400_000_000 + ((self.uid - 5_000_000) % 40_000) * SUBID_COUNT
        self.holder = None
        self.home, self.xdg = self.p("home"), self.p("xdg")
        self.tun_mode = self._tun_mode()
        try:
            self.runtime = runtime_for(self.uid, self.W)
            self._write_files()
        except BaseException:
            safe_rmtree(self.W)
            raise
        self.env = {"PATH": PATH, "HOME": self.home, "USER": self.name, "LOGNAME": self.name,
                    "LANG": "C.UTF-8", "TERM": "xterm", "XDG_RUNTIME_DIR": self.xdg,
                    "CONTAINERS_CONF": self.p("etc/containers.conf"),
                    "CONTAINERS_STORAGE_CONF": self.p("etc/storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": self.p("etc/registries.conf")}

    def p(self, *parts):
        return os.path.join(self.W, *parts)

    @staticmethod
    def _tun_mode():
        try:
            st = os.stat(TUN)
            return (st.st_mode, st.st_uid, st.st_gid, st.st_rdev)
        except OSError:
            return None

    # -- files -----------------------------------------------------------------------------
    def _write_files(self):
        for d, mode, own in (("home", 0o755, True), ("xdg", 0o700, True), ("etc", 0o755, False),
                             ("hostetc", 0o755, False), ("dev", 0o755, False), ("image", 0o755, False),
                             ("home/data", 0o755, True)):
            os.makedirs(self.p(d), exist_ok=True)
            os.chmod(self.p(d), mode)
            if own:
                os.chown(self.p(d), self.uid, self.gid)
        files = {"passwd": read_file("/etc/passwd", "") + f"{self.name}:x:{self.uid}:{self.gid}::{self.home}:/bin/sh\n",
                 "group": read_file("/etc/group", "") + f"{self.name}:x:{self.gid}:\n",
                 # no range for the single-mapping user: the files exist but do not name it
                 "subuid": f"{self.name}:{self.first_subid}:{SUBID_COUNT}\n" if self.subids else "",
                 "subgid": f"{self.name}:{self.first_subid}:{SUBID_COUNT}\n" if self.subids else ""}
        for fname, text in files.items():
            path = self.p("hostetc", fname)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
        rts = f'ociruntime = ["{self.runtime}"]\nrunc = ["{RUNC}"]\n'
        conf = {"containers.conf": f"""# tests/clients rootless: an ordinary user's podman, private everything
[containers]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "ociruntime"]
conmon_path = ["/usr/bin/conmon"]
num_locks = 128

[engine.runtimes]
{rts}
[network]
network_backend = "cni"
network_config_dir = "{self.home}/cni"
""",
                # rootless podman ignores graphroot (rootless_storage_path is the user's); the runroot
                # is $XDG_RUNTIME_DIR/containers
                "storage.conf": f"""[storage]
driver = "vfs"
runroot = "{self.xdg}/containers"
graphroot = "{self.home}/storage"
rootless_storage_path = "{self.home}/storage"
""",
                "registries.conf": "unqualified-search-registries = []\n"}
        for fname, text in conf.items():
            with open(self.p("etc", fname), "w") as f:
                f.write(text)
            os.chmod(self.p("etc", fname), 0o644)

    # -- the namespace ---------------------------------------------------------------------
    def setup(self):
        self.holder = NamespaceHolder(("mount",))
        binds = "; ".join(f"mount --bind {self.p('hostetc', f)} /etc/{f}" for f in ("passwd", "group", "subuid", "subgid"))
        script = f"set -e; {binds}"
        if self.tun_mode is not None:
            script += (f"; mount -t tmpfs -o mode=755,size=64k ocirl-dev {self.p('dev')}"
                       f"; mknod -m 666 {self.p('dev', 'tun')} c 10 200; mount --bind {self.p('dev', 'tun')} {TUN}")
        r = self.run_root(["/bin/sh", "-c", script])
        if not r.ok:
            raise RootlessSetupError(f"cannot set up the private mount namespace: {r}")
        rootfs = busybox_rootfs(self.p("image", "rootfs"), hostname="ocirl")
        tarball = self.p("image", "rootfs.tar")
        subprocess.run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", rootfs, "-cf", tarball, "."],
                       check=True)
        os.chmod(tarball, 0o644)
        r = self.podman("import", "--change", 'CMD ["/bin/sh"]', "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                        tarball, IMAGE, timeout=300)
        if not r.ok:
            raise RootlessSetupError(f"podman import as the test user failed: {r}")

    def enter_argv(self, argv, as_user=True):
        inner = as_uid_argv(self.uid, self.gid, argv) if as_user else list(argv)
        if as_user:
            inner[3] = "--init-groups"  # the user's own group from the private /etc/group
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *inner]

    def _run(self, argv, timeout, input=None):
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, input=input, capture_output=True, env=self.env, timeout=timeout,
                               cwd="/", stdin=subprocess.DEVNULL if input is None else None)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"timed out after {timeout}s: {argv}\nstdout={e.stdout!r}\nstderr={e.stderr!r}")
        return Res(argv[5:], p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
                   time.monotonic() - t0)

    def run_root(self, argv, timeout=60):
        return self._run(self.enter_argv(argv, as_user=False), timeout)

    def run(self, argv, timeout=120, input=None):
        return self._run(self.enter_argv(argv), timeout, input)

    def podman(self, *args, timeout=120, **kw):
        return self.run(["podman", *args], timeout=timeout, **kw)

    def pty_podman(self, *args, **kw):
        return pty_run(self.enter_argv(["podman", *args]), env=self.env, **kw)

    def wait_log(self, name, text, timeout=20):
        return wait_for(lambda: text in self.podman("logs", name).out, timeout=timeout,
                        what=f"{text!r} in the logs of {name}")

    def remove_all(self):
        """podman rm -af as the user; returns a problem string or None."""
        left = self.podman("ps", "-aq").out.split()
        if left:
            r = self.podman("rm", "-f", "-t", "0", *left, timeout=120)
            if not r.ok and self.podman("ps", "-aq").out.split():
                return f"podman rm -f failed: {r}"
        return None

    # -- teardown --------------------------------------------------------------------------
    def teardown(self):
        """Returns a list of problems (an empty list: nothing was left)."""
        problems = []
        if self.holder:
            msg = self.remove_all()
            if msg:
                problems.append(msg)
            # podman keeps a pause process (holding its user + mount namespace) for the user's
            # session; it and anything else of this uid are ours: end them by pid
            pause = (read_file(os.path.join(self.xdg, "libpod", "tmp", "pause.pid"), "") or "").strip()

            def others():
                return [pid for pid in pids_of_uid(self.uid) if str(pid) != pause]
            try:  # conmon and podman's cleanup process end on their own a moment after the container
                wait_for(lambda: not others(), timeout=15, what="the test user's processes to end")
            except AssertionError:
                pass
            others = others()
            pids = pids_of_uid(self.uid)
            if others:
                problems.append("processes of the test user besides podman's pause process: "
                                + "; ".join(f"{pid} {(read_file(f'/proc/{pid}/cmdline', '') or '').replace(chr(0), ' ')}"
                                            for pid in others))
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                wait_for(lambda: not pids_of_uid(self.uid), timeout=10, what="the test user's processes to end")
            except AssertionError as e:
                problems.append(str(e))
            self.holder.stop()
            self.holder = None
        # podman's rootless shm lock file is the host's /dev/shm (named by the uid): the test user's only
        try:
            os.unlink(f"/dev/shm/libpod_rootless_lock_{self.uid}")
        except FileNotFoundError:
            pass
        if os.path.exists(f"/dev/shm/libpod_rootless_lock_{self.uid}"):
            problems.append(f"/dev/shm/libpod_rootless_lock_{self.uid} was left")
        if os.path.exists(f"/run/user/{self.uid}"):
            problems.append(f"/run/user/{self.uid} exists")
        for f in ("subuid", "subgid", "passwd", "group"):
            if self.name in (read_file(f"/etc/{f}", "") or ""):
                problems.append(f"the host's /etc/{f} names the test user")
        if self._tun_mode() != self.tun_mode:
            problems.append(f"{TUN} changed: {self.tun_mode} -> {self._tun_mode()}")
        st = os.stat("/dev/null")
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, 0, 0o666):
            problems.append(f"/dev/null was changed: uid={st.st_uid} gid={st.st_gid} mode={oct(st.st_mode)}")
        try:
            safe_rmtree(self.W)
        except OSError as e:
            problems.append(f"could not remove {self.W}: {e}")
        return problems
