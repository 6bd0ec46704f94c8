"""Scaffolding for the client tests (podman/conmon, containerd/ctr driving ociruntime).

Everything the clients touch lives in one scratch directory ``W`` (under /var/tmp) and one private
mount namespace held by a ``sleep`` process (``unshare --mount --propagation private``). Every
client command runs through ``nsenter --mount=/proc/<holder>/ns/mnt``. Inside that namespace only:

* ``/run``     is a bind mount of ``W/run``    (containerd's shim sockets ``/run/containerd/s``,
  the shim's runc root ``/run/containerd/runc/<ns>``, podman's ``/run/libpod``, and ociruntime's
  default root ``/run/ociruntime``, which podman relies on because it passes no ``--root``);
* ``/var/lib`` is a bind mount of ``W/varlib`` (``/var/lib/containers/cache`` and friends);
* ``/tmp``     is a bind mount of ``W/tmp``    (conmon's ``conmon-term.*`` sockets, the shim's
  ``/tmp/pty*/pty.sock`` and ``/tmp/runc-process*`` files);
* ``/dev/shm`` is a fresh tmpfs (podman's SHM lock segment ``/libpod_lock`` stays private).

podman gets ``CONTAINERS_CONF``/``CONTAINERS_STORAGE_CONF`` pointing at files in ``W/etc`` (cgroupfs,
``default_ulimits`` within this machine's hard limits, ``runtime_supports_json`` with ``ociruntime``,
``netns = "none"`` so nothing touches the host network); containerd gets its own config, root,
state, gRPC socket and ``opt`` dir, is started by ``ClientEnv.start_containerd`` and stopped by the
pid it was started with. The runtime is reached through a logging wrapper ``W/bin/ociruntime``
(``runtime-wrapper.sh.in``) that appends every call to ``W/calls.log``.

Nothing here changes a host-wide mount, sysctl or network setting; processes are only signalled by
pid, and only processes this module started or that live in its private mount namespace.
"""

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import termios
import time
import uuid

from ociruntime.testing.plugin import default_runtime_path
from ociruntime.testing.rootfs import busybox_rootfs
from ociruntime.testing.runtime import NamespaceHolder, safe_rmtree

HERE = os.path.dirname(os.path.abspath(__file__))
CGROUP_BASE = "/sys/fs/cgroup"
CLIENT_TOOLS = ("podman", "conmon", "containerd", "ctr", "containerd-shim-runc-v2")
APT_PACKAGES = ("podman", "containerd")  # podman pulls conmon; containerd ships ctr and the shim
IMAGE = "localhost/ocirt-busybox:latest"

# Processes that long-running test containers run as PID 1: they trap TERM/USR1 so that stop and
# signal delivery are quick and observable (PID 1 ignores signals without a handler).
TRAP_LOOP = ("trap 'echo got-usr1; echo usr1 >> /tmp/signals' USR1; "
             "trap 'echo got-term; exit 143' TERM; "
             "echo ready; while :; do sleep 0.1; done")


class ClientSetupError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------ packages

def missing_tools():
    return [t for t in CLIENT_TOOLS if not shutil.which(t, path="/usr/bin:/usr/sbin:/bin:/sbin")]


def ensure_client_packages():
    """Install podman (+conmon) and containerd (+ctr, shim) from Debian when missing.
    Returns None when everything is there, else a reason string (the caller skips)."""
    if not missing_tools():
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", *APT_PACKAGES]
    log = []
    for attempt in range(2):
        if attempt:
            r = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"],
                               capture_output=True, text=True, env=env)
            log.append(f"apt-get update: rc={r.returncode} {r.stderr.strip()[-500:]}")
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        log.append(f"{' '.join(cmd)}: rc={r.returncode} {r.stderr.strip()[-500:]}")
        if r.returncode == 0 and not missing_tools():
            return None
    return (f"client packages missing ({', '.join(missing_tools())}) and apt failed:\n"
            + "\n".join(log))


# ------------------------------------------------------------------------------------ helpers

def runtime_commands(path):
    """The subcommands the runtime under test lists in --help (for 'needs <command>' xfails)."""
    try:
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    cmds, on = set(), False
    for line in out.splitlines():
        if line.strip() == "COMMANDS:":
            on = True
            continue
        if on:
            if not line.startswith("   ") or not line.strip():
                if line.strip():
                    break
                continue
            cmds.add(line.split()[0])
    return cmds



class Res:
    def __init__(self, argv, rc, out, err, dur):
        self.argv, self.rc, self.out, self.err, self.dur = argv, rc, out, err, dur

    @property
    def ok(self):
        return self.rc == 0

    def __repr__(self):
        return (f"<$ {' '.join(self.argv)}\n  rc={self.rc} ({self.dur:.2f}s)\n  stdout={self.out!r}"
                f"\n  stderr={self.err[-3000:]!r}>")


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_file(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def cgroup_hierarchies():
    """Mount points of the host's cgroup hierarchies (v1 controllers, named, unified)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            fstype = parts[parts.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                out.append(parts[4])
    return out


def cgroup_tree(rel):
    """Every directory at or below /<rel> in every hierarchy (host paths), deepest first."""
    found = []
    for mp in cgroup_hierarchies():
        top = os.path.join(mp, rel.strip("/"))
        for dirpath, dirnames, _ in os.walk(top):
            found.append(dirpath)
    return sorted(found, key=len, reverse=True)


def remove_cgroup_tree(rel, timeout=5.0):
    """rmdir every cgroup directory at or below /<rel> (deepest first); returns what remained."""
    left = []
    for d in cgroup_tree(rel):
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    left.append(d)
                    break
                time.sleep(0.05)
    return left


def cgroup_procs_below(rel):
    pids = set()
    for d in cgroup_tree(rel):
        for name in ("cgroup.procs",):
            txt = read_file(os.path.join(d, name), "")
            pids.update(int(x) for x in txt.split())
    return pids


def v1_cgroup_file(controller, rel, name):
    return os.path.join(CGROUP_BASE, controller, rel.strip("/"), name)


def proc_comm(pid):
    return (read_file(f"/proc/{pid}/comm", "?") or "?").strip()


def proc_cmdline(pid):
    raw = read_file(f"/proc/{pid}/cmdline", "") or ""
    return raw.replace("\0", " ").strip()


def proc_start(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pty_run(argv, env=None, script=(), timeout=30.0, rows=24, cols=80):
    """Run ``argv`` with a new pty as its controlling terminal and stdio. ``script`` is a list of
    (expect_substring_or_None, bytes_to_send): wait until the output contains the substring (or
    send immediately), then send. Returns (exit status, output bytes)."""
    import fcntl
    import struct
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def child_setup():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                         preexec_fn=child_setup, close_fds=True)
    os.close(slave)
    out = b""
    steps = list(script)
    deadline = time.monotonic() + timeout
    try:
        while True:
            while steps and (steps[0][0] is None or steps[0][0].encode() in out):
                os.write(master, steps.pop(0)[1])
            if time.monotonic() > deadline:
                raise AssertionError(f"pty_run timed out: {argv}\noutput so far: {out!r}")
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every slave fd closed
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                # the process is gone; drain what is left without blocking
                r, _, _ = select.select([master], [], [], 0.2)
                if not r:
                    break
        rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            p.kill()  # only the client process we started
            p.wait()
        os.close(master)
    return rc, out


# ------------------------------------------------------------------------------------ the env

class ClientEnv:
    """One scratch dir + one private mount namespace for all client tests of a session."""

    def __init__(self, runtime=None):
        self.runtime = runtime or default_runtime_path()
        if not self.runtime or not os.path.exists(self.runtime):
            raise ClientSetupError(f"runtime under test not found ({self.runtime}); run make build")
        # short paths: podman refuses a runroot longer than 50 characters (conmon socket paths)
        self.W = tempfile.mkdtemp(prefix="ocirt-", dir="/var/tmp")
        self.tag = re.sub(r"[^a-z0-9]", "", os.path.basename(self.W)[len("ocirt-"):].lower()) + uuid.uuid4().hex[:4]
        os.chmod(self.W, 0o755)
        self.cg_parent = f"ocirt-test-{self.tag}"         # podman --cgroup-parent (absolute)
        self.ctd_ns = f"ocirt-{self.tag}"                  # containerd namespace: cgroups /<ns>/<id>
        self.calls_log = self.p("calls.log")
        self.holder = None
        self.containerd = None
        self.containerd_log = None
        self._ctd_started = False
        for d in ("bin", "run", "varlib", "tmp", "etc", "podman", "podman/tmp", "podman/cni",
                  "ctd", "ctd/root", "ctd/state", "ctd/opt", "image", "shared"):
            os.makedirs(self.p(d), exist_ok=True)
        os.chmod(self.p("tmp"), 0o1777)
        self._write_wrapper()
        self._write_podman_conf()
        self._write_containerd_conf()
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "TERM": "xterm",
            "CONTAINERS_CONF": self.p("etc/containers.conf"),
            "CONTAINERS_STORAGE_CONF": self.p("etc/storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": self.p("etc/registries.conf"),
        }

    def p(self, *parts):
        return os.path.join(self.W, *parts)

    # -- files -----------------------------------------------------------------------------
    @property
    def wrapper(self):
        return self.p("bin", "ociruntime")

    def _write_wrapper(self):
        with open(os.path.join(HERE, "runtime-wrapper.sh.in")) as f:
            text = f.read().replace("@LOG@", self.calls_log).replace("@REAL@", self.runtime)
        with open(self.wrapper, "w") as f:
            f.write(text)
        os.chmod(self.wrapper, 0o755)
        open(self.calls_log, "a").close()

    def _write_podman_conf(self):
        W = self.W
        with open(self.p("etc/containers.conf"), "w") as f:
            f.write(f"""# tests/clients: podman with ociruntime, private everything
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"
log_driver = "k8s-file"
pids_limit = 2048

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{W}/podman/events.log"
runtime = "ociruntime"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "ociruntime"]
tmp_dir = "{W}/podman/tmp"
conmon_path = ["/usr/bin/conmon"]
num_locks = 256
image_copy_tmp_dir = "{W}/tmp"

[engine.runtimes]
ociruntime = ["{self.wrapper}"]

[network]
network_backend = "cni"
network_config_dir = "{W}/podman/cni"
""")
        with open(self.p("etc/storage.conf"), "w") as f:
            f.write(f"""[storage]
driver = "overlay"
runroot = "{W}/pr"
graphroot = "{W}/ps"
""")
        with open(self.p("etc/registries.conf"), "w") as f:
            f.write("unqualified-search-registries = []\n")

    def _write_containerd_conf(self):
        W = self.W
        with open(self.p("ctd/config.toml"), "w") as f:
            f.write(f"""# tests/clients: a private containerd (own root, state, socket)
version = 2
root = "{W}/ctd/root"
state = "{W}/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{W}/ctd/containerd.sock"

[ttrpc]
  address = "{W}/ctd/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{W}/ctd/opt"
""")

    # -- the namespace ---------------------------------------------------------------------
    def enter_argv(self, argv):
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", *argv]

    def setup_namespace(self):
        self.holder = NamespaceHolder(("mount",))
        # the checkout (and its .venv) may live below a directory we cover (CI clones anywhere):
        # keep it visible at its own path in the private namespace
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        hidden = [repo] if repo.startswith(("/run/", "/var/lib/", "/tmp/", "/dev/shm/")) else []
        keep = "".join(f"mkdir -p {self.p('keep')}{i}; mount --bind {d} {self.p('keep')}{i}; "
                       for i, d in enumerate(hidden))
        back = "".join(f"; mkdir -p {d}; mount --bind {self.p('keep')}{i} {d}" for i, d in enumerate(hidden))
        script = (f"set -e; {keep}mount --bind {self.p('run')} /run; mount --bind {self.p('varlib')} /var/lib; "
                  f"mount --bind {self.p('tmp')} /tmp; mount -t tmpfs -o mode=1777,size=64m shm /dev/shm{back}")
        r = self.run(["/bin/sh", "-c", script])
        if not r.ok:
            raise ClientSetupError(f"cannot set up the private mount namespace: {r}")

    def ns_mountinfo(self):
        """Mount points of the private namespace (a list of mountpoint paths)."""
        out = []
        txt = read_file(f"/proc/{self.holder.pid}/mountinfo", "") or ""
        for line in txt.splitlines():
            out.append(line.split()[4])
        return out

    def ns_pids(self):
        """pids of the processes living in the private mount namespace (the holder excluded)."""
        want = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == self.holder.pid:
                continue
            try:
                if os.readlink(f"/proc/{d}/ns/mnt") == want:
                    pids.append(int(d))
            except OSError:
                pass
        return pids

    def run(self, argv, input=None, timeout=120, env=None, check=False):
        t0 = time.monotonic()
        try:
            p = subprocess.run(self.enter_argv(argv), input=input, capture_output=True,
                               env=env or self.env, timeout=timeout, cwd="/",
                               stdin=subprocess.DEVNULL if input is None else None)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"timed out after {timeout}s: {argv}\nstdout={e.stdout!r}\n"
                                 f"stderr={e.stderr!r}\n--- runtime calls:\n{self.calls_tail()}")
        r = Res(argv, p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace"), time.monotonic() - t0)
        if check and not r.ok:
            raise AssertionError(f"command failed: {r}\n--- runtime calls:\n{self.calls_tail()}")
        return r

    def pty_run(self, argv, **kw):
        return pty_run(self.enter_argv(argv), env=self.env, **kw)

    # -- the runtime call log --------------------------------------------------------------
    def calls_mark(self):
        return os.path.getsize(self.calls_log)

    def calls_since(self, mark=0):
        with open(self.calls_log, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def calls_tail(self, n=8000):
        txt = self.calls_since(0)
        return txt[-n:]

    def calls_argv(self, mark=0):
        return [line[len("argv: "):] for line in self.calls_since(mark).splitlines()
                if line.startswith("argv: ")]

    # -- podman ----------------------------------------------------------------------------
    def podman(self, *args, **kw):
        return self.run(["podman", *args], **kw)

    def podman_ok(self, *args, **kw):
        kw.setdefault("check", True)
        return self.podman(*args, **kw)

    def podman_run(self, *args, **kw):
        """``podman run --cgroup-parent /<ours> ARGS`` (so every container cgroup of the session
        lives below one parent that the teardown can check and remove)."""
        return self.podman("run", "--cgroup-parent", "/" + self.cg_parent, *args, **kw)

    def podman_create(self, *args, **kw):
        return self.podman("create", "--cgroup-parent", "/" + self.cg_parent, *args, **kw)

    def podman_rm(self, name, force=False):
        """``podman rm``; podman 4.3 races its own cleanup process (``container cleanup``) for
        user-namespaced containers (``unlinkat …/userdata/shm: device or resource busy``, same
        with runc): then wait until the container is gone anyway."""
        r = self.podman("rm", *(["-f", "-t", "0"] if force else []), name)
        if not r.ok:
            wait_for(lambda: self.podman("container", "exists", name).rc == 1, timeout=15,
                     what=f"container {name} to be removed after: {r}")
        return r

    def podman_id(self, name):
        return self.podman_ok("inspect", "--format", "{{.Id}}", name).out.strip()

    def podman_inspect(self, name):
        return json.loads(self.podman_ok("inspect", name).out)[0]

    def podman_cgroup(self, name):
        """The container's cgroup path as podman computed it (cgroupsPath of the spec)."""
        return f"/{self.cg_parent}/libpod-{self.podman_id(name)}"

    def podman_wait_log(self, name, text, timeout=15):
        return wait_for(lambda: text in self.podman("logs", name).out, timeout=timeout,
                        what=f"{text!r} in the logs of {name}")

    # -- containerd ------------------------------------------------------------------------
    @property
    def ctd_sock(self):
        return self.p("ctd/containerd.sock")

    def ctr(self, *args, **kw):
        return self.run(["ctr", "--address", self.ctd_sock, "--namespace", self.ctd_ns, *args], **kw)

    def ctr_ok(self, *args, **kw):
        kw.setdefault("check", True)
        return self.ctr(*args, **kw)

    def ctr_argv(self, *args):
        return ["ctr", "--address", self.ctd_sock, "--namespace", self.ctd_ns, *args]

    def start_containerd(self, timeout=30):
        self.containerd_log = open(self.p("ctd/containerd.log"), "ab")
        self.containerd = subprocess.Popen(
            self.enter_argv(["containerd", "--config", self.p("ctd/config.toml")]),
            stdin=subprocess.DEVNULL, stdout=self.containerd_log, stderr=self.containerd_log,
            env=self.env, cwd="/", start_new_session=True, close_fds=True)
        self._ctd_started = True

        def ready():
            if self.containerd.poll() is not None:
                raise ClientSetupError(f"containerd exited with {self.containerd.returncode}: "
                                       f"{read_file(self.p('ctd/containerd.log'), '')[-3000:]}")
            return os.path.exists(self.ctd_sock) and self.ctr("version", timeout=10).ok
        wait_for(ready, timeout=timeout, interval=0.1, what="containerd to answer")

    def stop_containerd(self):
        """SIGTERM (then SIGKILL) the containerd we started, by its pid."""
        if not self.containerd:
            return
        if self.containerd.poll() is None:
            os.kill(self.containerd.pid, signal.SIGTERM)
            try:
                self.containerd.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.containerd.pid, signal.SIGKILL)
                self.containerd.wait(timeout=10)
        self.containerd_log.close()
        self.containerd = None

    # -- the image -------------------------------------------------------------------------
    def build_images(self, with_containerd=True):
        """busybox-static rootfs -> tarball -> ``podman import``; with_containerd: also
        ``import_into_containerd``. No registry involved."""
        rootfs = busybox_rootfs(self.p("image", "rootfs"), hostname="ocirt")
        tarball = self.p("image", "rootfs.tar")
        subprocess.run(["tar", "--numeric-owner", "-C", rootfs, "-cf", tarball, "."], check=True)
        self.podman_ok("import", "--change", 'CMD ["/bin/sh"]',
                       "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", tarball, IMAGE,
                       timeout=300)
        if with_containerd:
            self.import_into_containerd()

    def import_into_containerd(self):
        """``podman save --format oci-archive`` -> ``ctr image import``."""
        archive = self.p("image", "busybox-oci.tar")
        if not os.path.exists(archive):
            self.podman_ok("save", "--format", "oci-archive", "-o", archive, IMAGE, timeout=300)
        self.ctr_ok("images", "import", archive, timeout=300)
        names = self.ctr_ok("images", "ls", "-q").out.split()
        if IMAGE not in names:
            raise ClientSetupError(f"ctr image import gave {names}, not {IMAGE}")

    def ctr_cleanup_all(self):
        """Kill and remove every task and container of our containerd namespace; returns a list
        of what had to be removed or could not be."""
        problems = []
        if not self.containerd or self.containerd.poll() is not None:
            return ["containerd is not running"] if self._ctd_started else []
        for line in self.ctr("tasks", "ls").out.splitlines()[1:]:
            tid = line.split()[0]
            self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", tid)
            r = self.ctr("tasks", "rm", "-f", tid, timeout=60)
            if not r.ok and "not found" not in r.err:
                problems.append(f"ctr task rm -f {tid}: {r}")
        for cid in self.ctr("containers", "ls", "-q").out.split():
            r = self.ctr("containers", "rm", cid, timeout=60)
            if not r.ok:
                problems.append(f"ctr container rm {cid}: {r}")
        return problems

    # -- teardown --------------------------------------------------------------------------
    def teardown(self):
        """Stop containerd, kill whatever still lives in the namespace (by pid), drop the
        namespace, remove our cgroup parents and the scratch dir. Returns a list of problems."""
        problems = []
        if self.containerd:
            problems += self.ctr_cleanup_all()
            self.stop_containerd()
        if self.holder:
            left = self.ns_pids()
            for pid in left:
                problems.append(f"process left in the private namespace: {pid} {proc_cmdline(pid)}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.holder.stop()
        for rel in (self.cg_parent, self.ctd_ns):
            procs = cgroup_procs_below(rel)
            if procs:
                problems.append(f"processes left in cgroups below /{rel}: {sorted(procs)}")
            left = remove_cgroup_tree(rel)
            if left:
                problems.append(f"cgroup directories could not be removed: {left}")
        try:
            safe_rmtree(self.W)
        except OSError as e:
            problems.append(f"could not remove {self.W}: {e}")
        st = os.stat("/dev/null")
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_rdev) != (0, 0, 0o666, os.makedev(1, 3)):
            problems.append(f"/dev/null was changed: uid={st.st_uid} gid={st.st_gid} "
                            f"mode={oct(st.st_mode)} rdev={st.st_rdev:#x}")
        return problems


# ------------------------------------------------------------------------------------ leak check

class Snapshot:
    """What a test must return to: mounts and processes of the private namespace, cgroup dirs
    below our parents, the runtime state dirs, the client's container lists."""

    def __init__(self, env):
        self.env = env
        self.mounts = sorted(env.ns_mountinfo())
        self.pids = set(env.ns_pids())
        self.cgroups = set(cgroup_tree(env.cg_parent) + cgroup_tree(env.ctd_ns))
        self.state_dirs = set(self._state_dirs())

    def _state_dirs(self):
        out = []
        for root in (self.env.p("run", "ociruntime"),
                     self.env.p("run", "containerd", "runc", self.env.ctd_ns)):
            try:
                out += [os.path.join(root, x) for x in os.listdir(root)]
            except OSError:
                pass
        return out

    def leaks(self, settle=10.0):
        """Problems (list of strings) compared with this snapshot; waits up to ``settle`` s for
        things that go away asynchronously (conmon, shims, cleanup processes)."""
        env = self.env
        deadline = time.monotonic() + settle
        while True:
            problems = []
            extra_pids = set(env.ns_pids()) - self.pids
            if env.containerd:
                extra_pids.discard(env.containerd.pid)
            if extra_pids:
                problems.append("processes left in the private namespace: "
                                + "; ".join(f"{p} {proc_cmdline(p)}" for p in sorted(extra_pids)))
            mounts = sorted(env.ns_mountinfo())
            # containers/storage bind-mounts its overlay home privately on itself while a podman
            # process uses it and drops it again when the last layer is unmounted: not a leak
            new_mounts = sorted(set(mounts) - set(self.mounts) - {env.p("ps", "overlay")})
            if new_mounts:
                problems.append(f"mounts left: {new_mounts}")
            cg = set(cgroup_tree(env.cg_parent) + cgroup_tree(env.ctd_ns)) - self.cgroups
            # podman keeps <parent>/conmon for its conmons: that is the client's, not a container's
            # and the session-wide parents themselves stay (runc does not remove parents it made)
            cg = {d for d in cg if os.path.basename(d) not in ("conmon", env.cg_parent, env.ctd_ns)}
            if cg:
                problems.append(f"cgroups left: {sorted(cg)}")
            st = set(self._state_dirs()) - self.state_dirs
            if st:
                problems.append(f"runtime state dirs left: {sorted(st)}")
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(0.1)


# ------------------------------------------------------------------------------------ views

#: what a container process sees, printed by busybox sh; compared between runc and ociruntime
VIEW_SCRIPT = r'''
echo "== status"; grep -E "^(Cap|Seccomp|NoNewPrivs|Uid|Gid|Groups)" /proc/self/status
echo "== id"; id
echo "== ulimit"; ulimit -a
echo "== cgroup"; cat /proc/self/cgroup
echo "== mounts"; awk '{$1=$2=$3=""; print}' /proc/self/mountinfo | sort
echo "== dev"; ls -ln /dev /dev/pts /dev/shm /dev/mqueue 2>&1 | sort
echo "== env"; env | sort
echo "== hostname"; hostname
echo "== cwd"; pwd
echo "== umask"; umask
echo "== ns"; for n in cgroup ipc mnt net pid time user uts; do echo "$n $(readlink /proc/self/ns/$n)"; done
echo "== oom"; cat /proc/self/oom_score_adj
echo "== fds"; for f in /proc/$$/fd/*; do echo "${f##*/} $(readlink $f)"; done
echo "== sysctl"; cat /proc/sys/net/ipv4/ip_unprivileged_port_start
echo "== writable"; for d in / /tmp /dev/shm /proc/sys /sys /sys/fs/cgroup /home/test; do
  if touch "$d/.w" 2>/dev/null; then rm -f "$d/.w"; echo "$d rw"; else echo "$d ro"; fi; done
echo "== masked"; cat /proc/kcore 2>&1 | head -c 40; echo; ls /sys/firmware 2>&1 | head -3
echo "== limits"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>&1
echo "== tty"; tty; [ -t 0 ] && echo stdin-is-tty
echo "== pid1"; tr '\0' ' ' < /proc/1/cmdline; echo
echo "== idmap"; cat /proc/self/uid_map /proc/self/gid_map
echo "== devices"; cat /sys/fs/cgroup/devices/devices.list 2>&1 | sort
if [ -e /dev/xzero ]; then head -c 3 /dev/xzero | wc -c; echo x 2>&1 > /dev/xzero || echo xzero-write-denied; fi
echo "== end"
'''


def host_ns_inodes():
    out = {}
    for n in ("cgroup", "ipc", "net", "pid", "time", "user", "uts"):
        try:
            out[os.readlink(f"/proc/self/ns/{n}")] = "HOST"
        except OSError:
            pass
    return out


def normalize_view(text, ids=()):
    """Replace what legitimately differs between two runs: container ids, overlay layer ids,
    timestamps, pipe/socket inode numbers; namespaces become HOST (the host's) or NEW."""
    for ns, label in host_ns_inodes().items():
        text = text.replace(ns, label)
    text = re.sub(r"\b(cgroup|ipc|mnt|net|pid|time|user|uts):\[\d+\]", r"\1:NEW", text)
    for i in ids:
        if i:
            text = text.replace(i, "<ID>")
            if len(i) >= 12:
                text = text.replace(i[:12], "<SHORTID>")
    text = re.sub(r"\b[0-9a-f]{64}\b", "<HEX>", text)
    text = re.sub(r"(pipe|socket|anon_inode):\[\d+\]", r"\1:[N]", text)
    text = re.sub(r"\b[A-Z][a-z]{2} +\d+ +(\d\d:\d\d|\d{4})\b", "<DATE>", text)
    text = re.sub(r"/var/tmp/ocirt-[^/\s]+", "<W>", text)
    text = re.sub(r"(overlayfs/snapshots)/\d+/", r"\1/<N>/", text)
    return text
