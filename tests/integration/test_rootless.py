"""Rootless: the CLI run by an unprivileged user (no passwd entry, no groups), in a user namespace
that maps only that user, as `runc --rootless` does.

Each test switches to a numeric uid/gid with ``setpriv --reuid --regid --clear-groups`` (nothing on
the host changes: no user is created, the host's /etc/subuid is not touched). The user gets a private
``$XDG_RUNTIME_DIR`` (so the default state root, ``$XDG_RUNTIME_DIR/ociruntime``, is exercised), a
bundle it can traverse, and the config ``ociruntime spec --rootless`` writes for it. On this host
(cgroup v1 owned by root) the user may create no cgroup: the rootless cgroup manager runs the
container without one, as runc does.

Multi-id maps (container ids 1.. on the user's sub-id range) go through the setuid newuidmap /
newgidmap: for those tests the user gets a passwd entry and /etc/subuid, /etc/subgid ranges in files
of its own, bound over /etc's in a private mount namespace made for the one command (unshare -m); the
host's /etc is never written.

The differential tests runs runc 1.1.5 rootless on the same bundle and compares what the container
sees (ids, maps, setgroups, capabilities, mounts, /dev, cgroups).
"""

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid

import pytest

from _util import (HostSnapshot, TMP_BASE, Result, descends_from_us, kill_pid, memfd_inits, read_mountinfo,
                   pid_alive, proc_status, reap_zombie_children, wait_for)
from ociruntime.testing import reach
from _util import rootfs_template, _subreaper  # noqa: F401  (fixtures)

RUNC = "/usr/sbin/runc"
SETPRIV = shutil.which("setpriv")
UNSHARE = shutil.which("unshare")


def _unused_uid():
    """A uid with no passwd entry and no process: nothing on the host belongs to it."""
    base = 3_000_000 + (os.getpid() % 50_000) * 16
    for uid in range(base, base + 16):
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if not any(_proc_uid(p) == uid for p in os.listdir("/proc") if p.isdigit()):
            return uid
    pytest.skip(f"every uid {base}..{base + 15} has a passwd entry or a process on this host")


def _proc_uid(pid):
    st = proc_status(pid)
    return int(st["Uid"].split()[1]) if st and "Uid" in st else None


def _userns_denied_reason():
    if os.geteuid() != 0:
        return "needs root (to switch to an unprivileged uid with setpriv)"
    if not SETPRIV:
        return "setpriv (util-linux) is not installed"
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                return "the kernel allows no user namespaces (user.max_user_namespaces = 0)"
    except OSError:
        return "the kernel has no user namespaces (/proc/sys/user/max_user_namespaces missing)"
    try:
        with open("/proc/sys/kernel/unprivileged_userns_clone") as f:
            if f.read().strip() == "0":
                return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
    except OSError:
        pass
    r = subprocess.run([SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "-U", "true"],
                       capture_output=True)
    if r.returncode != 0:
        return f"an unprivileged user may not create a user namespace here: {r.stderr.decode().strip()}"
    return None


_SKIP = _userns_denied_reason()
pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]


class User:
    """An unprivileged uid with its own XDG_RUNTIME_DIR and bundles; runs commands as that uid."""

    def __init__(self, template, runtime):
        self.uid = self.gid = _unused_uid()
        self.runtime = runtime  # a path of the runtime this uid can run (oci_runtime_for_others)
        # 0755, below a directory every uid traverses (wherever the checkout and $TMPDIR are)
        self.tmp = reach.mkdtemp(prefix="ocit-rootless-",
                                 base=TMP_BASE if reach.others_can_traverse(TMP_BASE) else None)
        self.out = os.path.join(self.tmp, "out")    # what detached containers print
        self.xdg = os.path.join(self.tmp, "xdg")
        os.mkdir(self.xdg, 0o700)
        os.chown(self.xdg, self.uid, self.gid)
        self.root = os.path.join(self.xdg, "ociruntime")  # the default state root of a rootless user
        self.template = template
        self.ids = []
        self._n = 0
        self.subids = None   # (first host id, count) once with_subids() ran

    def with_subids(self, count):
        """Give the user a passwd entry and /etc/subuid + /etc/subgid ranges -- in files of its own,
        bound over /etc/passwd, /etc/subuid and /etc/subgid only in a private mount namespace made for
        each command (run(..., subids=True)); the host's files are never touched."""
        first = 200_000_000 + (self.uid - 3_000_000) * 4096   # its own range, far above real ids
        name = f"ocit{self.uid}"
        self.subids = (first, count)
        etc = os.path.join(self.tmp, "etc")
        os.mkdir(etc, 0o755)
        with open("/etc/passwd") as f:
            passwd = f.read()
        files = {"passwd": passwd + f"{name}:x:{self.uid}:{self.gid}::/nonexistent:/usr/sbin/nologin\n",
                 "subuid": f"{name}:{first}:{count}\n", "subgid": f"{name}:{first}:{count}\n"}
        for fname, text in files.items():
            with open(os.path.join(etc, fname), "w") as f:
                f.write(text)
            os.chmod(os.path.join(etc, fname), 0o644)
        return first

    def env(self):
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "XDG_RUNTIME_DIR": self.xdg}

    def argv(self, *args):
        return [SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *map(str, args)]

    def run(self, *args, timeout=30, stdout=None, cgroup_procs=None, subids=False):
        """cgroup_procs: a cgroup.procs file the command is moved into first (by root, before setpriv).
        subids: the command runs in a private mount namespace (unshare -m: private propagation) where
        the user's passwd entry and sub-id ranges (with_subids) are bound over /etc's."""
        argv = self.argv(*args)
        if subids:
            etc = os.path.join(self.tmp, "etc")
            binds = " && ".join(f'mount --bind "{etc}/{f}" /etc/{f}' for f in ("passwd", "subuid", "subgid"))
            argv = [UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c",
                    f'{binds} && exec "$@"', "sh", *argv]
        if cgroup_procs:
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cgroup_procs, *argv]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout or out, stderr=err,
                                 env=self.env(), cwd=self.tmp)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_pid(p.pid)
                p.wait()
                raise AssertionError(f"timed out: {p.args}")
            out.seek(0)
            err.seek(0)
            return Result(["", "", "", *p.args], rc, out.read().decode(errors="replace"),
                          err.read().decode(errors="replace"))

    def rt(self, *args, **kw):
        return self.run(self.runtime, *args, **kw)

    def new_id(self, prefix="rl"):
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def bundle(self, args, mutate=None):
        """rootfs: a copy of the busybox template (root-owned, world-readable); config.json: what
        `ociruntime spec --rootless` writes when run as this user."""
        self._n += 1
        path = os.path.join(self.tmp, f"bundle{self._n}")
        os.mkdir(path, 0o755)
        subprocess.run(["cp", "-a", self.template, os.path.join(path, "rootfs")], check=True)
        os.chown(path, self.uid, self.gid)  # spec writes config.json here as the user
        self.rt("spec", "--rootless", "--bundle", path).check()
        cfg = os.path.join(path, "config.json")
        with open(cfg) as f:
            spec = json.load(f)
        spec["process"]["terminal"] = False
        spec["process"]["args"] = list(args)
        if mutate:
            mutate(spec)
        with open(cfg, "w") as f:
            json.dump(spec, f)
        return path

    def create(self, bundle, cid, subids=False):
        """create; the init keeps the command's stdout, so it goes to a file (self.out), never a pipe
        we would wait on. Returns the init's pid."""
        with open(self.out, "ab") as f:
            self.run(self.runtime, "create", "--bundle", bundle, cid, stdout=f, subids=subids).check()
        return self.state(cid)["pid"]

    def runc_run(self, bundle, subids=False):
        """`runc run` of the bundle as this user (the reference), deleted afterwards."""
        rid = self.new_id("runc")
        try:
            return self.run(RUNC, "run", "--bundle", bundle, rid, subids=subids)
        finally:
            self.run(RUNC, "delete", "--force", rid)
            self.ids.remove(rid)

    def state(self, cid):
        r = self.rt("state", cid)
        return json.loads(r.stdout) if r.rc == 0 else None

    def snapshot(self, *cids):
        return HostSnapshot(self.root, cids, [self.tmp])

    def cleanup(self):
        errors = []
        for cid in self.ids:
            if os.path.lexists(os.path.join(self.root, cid)):
                r = self.rt("delete", "--force", cid)
                if r.rc != 0:
                    errors.append(f"delete --force {cid}: {r}")
        # last resort: an init of ours (running as our uid) still alive after delete --force
        for pid in sorted(memfd_inits()):
            if descends_from_us(pid) and _proc_uid(pid) == self.uid:
                kill_pid(pid)
                errors.append(f"container init {pid} survived delete --force; killed it")
        reap_zombie_children()
        if any(self.tmp in line for line in read_mountinfo()):
            errors.append(f"not removing {self.tmp}: something is mounted below it")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return errors


@pytest.fixture
def user(rootfs_template, oci_runtime_for_others):
    u = User(rootfs_template, oci_runtime_for_others)
    yield u
    errors = u.cleanup()
    assert not errors, "cleanup problems:\n" + "\n".join(errors)


def _host_ids(pid):
    st = proc_status(pid)
    return int(st["Uid"].split()[1]), int(st["Gid"].split()[1])


# ------------------------------------------------------------------------------------ lifecycle

def test_rootless_create_start_state_exec_kill_delete(user):
    b = user.bundle(["sleep", "60"])
    cid = user.new_id()
    user.create(b, cid)
    # the default state root of an unprivileged user, private to it
    st_root = os.stat(user.root)
    assert (st_root.st_uid, st_root.st_mode & 0o7777) == (user.uid, 0o1700)  # sticky: kept by XDG cleaners
    st = user.state(cid)
    assert st["status"] == "created" and st["id"] == cid
    pid = st["pid"]
    assert _host_ids(pid) == (user.uid, user.gid)  # root in the container is the user on the host
    user.rt("start", cid).check()
    assert user.state(cid)["status"] == "running"

    r = user.rt("exec", cid, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map "
                                         "/proc/self/setgroups").check()
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert lines == ["0", "0", f"0 {user.uid} 1", f"0 {user.gid} 1", "deny"], r

    r = user.rt("exec", "--additional-gids", "5", cid, "true")
    assert r.rc != 0 and "cannot set any additional groups in a rootless container" in r.stderr, r

    r = user.rt("list", "--format", "json").check()
    assert [c["id"] for c in json.loads(r.stdout)] == [cid]

    user.rt("kill", cid, "KILL").check()
    assert wait_for(lambda: not pid_alive(pid)), "the container init did not die"
    assert user.state(cid)["status"] == "stopped"
    snap = user.snapshot(cid)
    user.rt("delete", cid).check()
    assert user.state(cid) is None
    assert not os.path.exists(os.path.join(user.root, cid))
    snap.assert_clean()


def test_rootless_run_is_root_in_its_user_namespace(user):
    b = user.bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; grep CapEff /proc/self/status; "
                                 "cat /proc/self/setgroups; exit 3"])
    cid = user.new_id()
    snap = user.snapshot(cid)
    r = user.rt("run", "--bundle", b, cid)
    assert r.rc == 3, r  # the process's exit code, as runc
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    # the default rootless caps (AUDIT_WRITE, KILL, NET_BIND_SERVICE) = 0x20000420
    assert lines == ["0", f"0 {user.uid} 1", "CapEff: 0000000020000420", "deny"], r
    snap.assert_clean()  # run deleted it: no state dir, no init, no cgroup


def test_rootless_flag_false_needs_cgroup_permissions(user):
    """--rootless=false as an unprivileged user: the cgroup cannot be made, and create fails cleanly."""
    b = user.bundle(["true"])
    cid = user.new_id()
    snap = user.snapshot(cid)
    r = user.rt("--rootless=false", "create", "--bundle", b, cid)
    assert r.rc != 0 and re.search(r"create cgroup: \S+: Permission denied", r.error_msg()), r
    snap.assert_clean()
    r = user.rt("--rootless=maybe", "create", "--bundle", b, cid)
    assert r.rc != 0 and 'strconv.ParseBool: parsing "maybe": invalid syntax' in r.error_msg(), r
    snap.assert_clean()


def _pure_v2():
    from ociruntime import cgroups
    return list(cgroups.hierarchies()) == [""]


def _limit_refusal():
    """How runc refuses a limit of a rootless container without a cgroup of its own: v1 (runc fs) when the
    controller's limit cannot be set; pure v2 (runc fs2 Apply) before the container starts."""
    if _pure_v2():
        return re.compile(r"unable to apply cgroup configuration: rootless needs no limits \+ no cgrouppath when no "
                          r"permission is granted for cgroups: mkdir /sys/fs/cgroup/\S+: permission denied")
    return re.compile(re.escape("cannot set memory limit: container could not join or create cgroup"))


@pytest.mark.parametrize("what", ["no-userns", "limit", "gid-map-tool", "mount"])
def test_rootless_failing_create_leaves_nothing(user, what):
    def no_userns(s):
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "user"]
        del s["linux"]["uidMappings"], s["linux"]["gidMappings"]

    def limit(s):
        s["linux"]["resources"] = {"memory": {"limit": 64 << 20}}

    def gid_map_tool(s):
        # more than our own gid: an unprivileged process may not write that gid_map itself, and
        # newgidmap refuses a uid without a passwd entry or /etc/subgid range (or is absent)
        s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1},
                                     {"containerID": 1, "hostID": 100000, "size": 1}]

    def mount(s):
        # fails in the container's init (after the user namespace was made): the rootfs belongs to
        # the host's root, so the container's root may not create the mount point
        s["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"})

    mutate, frag = {
        "no-userns": (no_userns, "config.json: /linux/namespaces: rootless container requires user namespaces"),
        "limit": (limit, _limit_refusal()),
        "gid-map-tool": (gid_map_tool, "newgidmap"),
        "mount": (mount, "mount destination /mnt: permission denied"),
    }[what]
    b = user.bundle(["true"], mutate=mutate)
    cid = user.new_id()
    snap = user.snapshot(cid)
    r = user.rt("create", "--bundle", b, cid)
    assert r.rc != 0, r
    assert "Traceback" not in r.stderr, r
    assert (frag.search(r.error_msg()) if isinstance(frag, re.Pattern) else frag in r.error_msg()), r
    snap.assert_clean()


# ------------------------------------------------------------------------------------ differential

_DEV_NODES = ("/null", "/zero", "/full", "/random", "/urandom", "/tty")


def _same_device_flags(text):
    """Deliberate difference: in a user namespace ours binds the device nodes nosuid,noexec (as crun;
    runc 1.1.5 does not; masked files are clones of that /dev/null): those two options are dropped from
    the lines of device-node mounts in both views."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) > 2 and parts[0] in _DEV_NODES and " devtmpfs " in line:
            parts[2] = ",".join(o for o in parts[2].split(",") if o not in ("nosuid", "noexec"))
        out.append(" ".join(parts))
    return "\n".join(out)


# what the runtimes decide, never host-volatile values: no dates (a listing straddling a minute differs),
# no link count of /proc (the number of the host's processes)
_VIEW = ("id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; grep ^Cap /proc/self/status; "
         "cut -d' ' -f4- /proc/self/mountinfo; stat -c '%A %h %u %g %s %t:%T %N' /dev/*; cat /proc/self/cgroup; "
         "hostname")
_VIEW_ROOT = "stat -c '%A %u %g %N' /*"


@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc (the reference runtime) is not installed")
@pytest.mark.parametrize("variant", ["spec", "cgroup-mount", "no-cgroupns"])
def test_rootless_differential_runc(user, variant):
    """What a rootless container sees under runc 1.1.5 and under ociruntime, same bundle, same user."""
    def mutate(s):
        if variant in ("cgroup-mount", "no-cgroupns"):
            # runc's own rootless spec keeps the /sys/fs/cgroup mount (ours does too)
            assert any(m["destination"] == "/sys/fs/cgroup" for m in s["mounts"])
        else:
            s["mounts"] = [m for m in s["mounts"] if m["destination"] != "/sys/fs/cgroup"]
        if variant == "no-cgroupns":  # runc 1.1.5's spec on a cgroup v1 host has no cgroup namespace
            s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "cgroup"]
    b = user.bundle(["sh", "-c", _VIEW], mutate=mutate)
    ours = user.rt("run", "--bundle", b, user.new_id()).check()
    theirs = user.runc_run(b).check()
    assert _same_device_flags(ours.stdout) == _same_device_flags(theirs.stdout), \
        f"runc:\n{theirs.stdout}\nociruntime:\n{ours.stdout}"


@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc (the reference runtime) is not installed")
def test_rootless_limit_without_cgroup_fails_as_runc(user):
    """A memory limit the rootless user cannot apply (no delegated cgroup): both refuse it the same way
    (_limit_refusal: v1's and v2's wording differ)."""
    b = user.bundle(["true"], mutate=lambda s: s["linux"].__setitem__("resources", {"memory": {"limit": 1 << 26}}))
    frag = _limit_refusal()
    cid = user.new_id()
    snap = user.snapshot(cid)
    ours = user.rt("run", "--bundle", b, cid)
    theirs = user.runc_run(b)
    assert theirs.rc != 0 and frag.search(theirs.stderr), theirs
    assert ours.rc != 0 and frag.search(ours.error_msg()), ours
    snap.assert_clean()


def test_rootless_delete_force_of_a_running_container(user):
    b = user.bundle(["sleep", "60"])
    cid = user.new_id()
    user.rt("run", "--detach", "--bundle", b, cid).check()
    st = user.state(cid)
    assert st["status"] == "running"
    snap = user.snapshot(cid)
    r = user.rt("delete", cid)
    assert r.rc != 0 and "is not stopped: running" in r.error_msg(), r
    user.rt("delete", "--force", cid).check()
    assert wait_for(lambda: not pid_alive(st["pid"])), "the container init survived delete --force"
    snap.assert_clean()


def _v1_pids_hierarchy():
    from ociruntime import cgroups
    h = cgroups.hierarchies()
    return h.get("pids")


@pytest.mark.skipif(_v1_pids_hierarchy() is None,
                    reason="no cgroup v1 pids hierarchy on this host (the delegation below is v1's)")
def test_rootless_uses_a_delegated_cgroup(user):
    """A hierarchy the user may write to (here: a pids cgroup root made and chowned to the user, the
    way a delegation hands one out) is used: the container's cgroup is made there, its limit applied,
    and delete removes it. The hierarchies the user may not write to are skipped."""
    mp, own = _v1_pids_hierarchy()
    deleg = os.path.join(mp, own.lstrip("/"), f"ocit-deleg-{uuid.uuid4().hex[:10]}")
    os.mkdir(deleg)
    try:
        for f in ("", "cgroup.procs", "tasks"):
            os.chown(os.path.join(deleg, f), user.uid, user.gid)
        procs = os.path.join(deleg, "cgroup.procs")
        b = user.bundle(["sleep", "60"], mutate=lambda s: s["linux"].__setitem__("resources",
                                                                                 {"pids": {"limit": 50}}))
        cid = user.new_id()
        user.rt("create", "--bundle", b, cid, cgroup_procs=procs).check()
        pid = user.state(cid)["pid"]
        ctr = os.path.join(deleg, cid)
        with open(os.path.join(ctr, "pids.max")) as f:
            assert f.read().strip() == "50"
        with open(os.path.join(ctr, "cgroup.procs")) as f:
            assert [int(x) for x in f.read().split()] == [pid]
        assert json.loads(user.rt("ps", "--format", "json", cid).check().stdout) == [pid]
        r = user.rt("pause", cid)  # no freezer hierarchy the user may write to
        assert r.rc != 0 and "cgroups not configured" in r.error_msg(), r
        user.rt("delete", "--force", cid).check()
        assert not os.path.exists(ctr)
    finally:
        for cid in user.ids:  # a failed assertion above: the container goes before its cgroup
            user.rt("delete", "--force", cid)
        for d in (os.path.join(deleg, x) for x in os.listdir(deleg) if os.path.isdir(os.path.join(deleg, x))):
            os.rmdir(d)
        os.rmdir(deleg)


# ---------------------------------------------------------- multi-id maps: newuidmap / newgidmap

_NEED_TOOLS = next((f"{t} (package uidmap) is not installed" for t in ("newuidmap", "newgidmap")
                    if not shutil.which(t)), None)


def _wide_maps(user, first, count):
    def mutate(s):
        s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                     {"containerID": 1, "hostID": first, "size": count}]
        s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1},
                                     {"containerID": 1, "hostID": first, "size": count}]
    return mutate


@pytest.mark.skipif(_NEED_TOOLS is not None, reason=_NEED_TOOLS or "")
def test_rootless_multi_id_maps_through_newuidmap(user):
    """Container root = the user, ids 1..count = its /etc/subuid range: the maps are more than an
    unprivileged process may write, so create runs the setuid newuidmap/newgidmap, which check the
    ranges; the container's ids land on the sub-ids on the host (process.user and exec --user)."""
    count = 2000
    first = user.with_subids(count)

    def mutate(s):
        _wide_maps(user, first, count)(s)
        s["process"]["user"] = {"uid": 1000, "gid": 1001}
    b = user.bundle(["sleep", "60"], mutate=mutate)
    cid = user.new_id()
    snap = user.snapshot(cid)
    pid = user.create(b, cid, subids=True)
    assert _host_ids(pid) == (first + 999, first + 1000)   # container 1000:1001 on the host
    user.rt("start", cid).check()
    r = user.rt("exec", "--user", "0:0", cid, "sh", "-c",
                "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; id -u; id -g").check()
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert lines == [f"0 {user.uid} 1", f"1 {first} {count}", f"0 {user.gid} 1", f"1 {first} {count}",
                     "allow", "0", "0"], r   # newgidmap leaves setgroups allowed for a sub-id range
    r = user.rt("exec", "--user", "5:6", cid, "sh", "-c", "id -u; id -g").check()
    assert r.stdout.split() == ["5", "6"], r
    # an exec'd process seen from the host: the sub-ids of the range
    with open(user.out, "ab") as f:
        user.rt("exec", "--detach", "--user", "1999:1998", cid, "sleep", "30", stdout=f).check()
    kids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != pid and _is_in_ns_of(int(p), pid)]
    try:
        assert [_host_ids(p) for p in kids] == [(first + 1998, first + 1997)], kids
    finally:
        for p in kids:   # orphaned to us (the subreaper): killed and reaped here, or the dying
            kill_pid(p)  # pid-namespace init would wait for its reaping during delete
    r = user.rt("exec", "--user", f"{count + 1}:0", cid, "true")
    assert r.rc != 0, r    # not mapped: the kernel refuses the id
    user.rt("delete", "--force", cid).check()
    assert wait_for(lambda: not pid_alive(pid)), "the container init survived delete --force"
    snap.assert_clean()


def _is_in_ns_of(pid, other):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{other}/ns/pid")
    except OSError:
        return False


@pytest.mark.skipif(_NEED_TOOLS is not None, reason=_NEED_TOOLS or "")
def test_rootless_multi_id_maps_refused_without_a_subid_range(user):
    """The same maps with an /etc/subuid range too small for them: newuidmap refuses, create fails
    with its reason and leaves nothing behind."""
    user.with_subids(10)       # a range, but smaller than the mapping asks for
    b = user.bundle(["true"], mutate=_wide_maps(user, user.subids[0], 2000))
    cid = user.new_id()
    snap = user.snapshot(cid)
    r = user.run(user.runtime, "create", "--bundle", b, cid, subids=True)
    assert r.rc != 0 and "newuidmap failed (exit status 1)" in r.error_msg() and "not allowed" in r.error_msg(), r
    snap.assert_clean()


@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc (the reference runtime) is not installed")
@pytest.mark.skipif(_NEED_TOOLS is not None, reason=_NEED_TOOLS or "")
@pytest.mark.parametrize("who", ["root", "user"])
def test_rootless_multi_id_maps_differential_runc(user, who):
    """What a rootless container with sub-id maps sees under runc 1.1.5 and under ociruntime."""
    count = 2000
    first = user.with_subids(count)

    def mutate(s):
        _wide_maps(user, first, count)(s)
        if who == "user":
            s["process"]["user"] = {"uid": 1000, "gid": 1000}
    b = user.bundle(["sh", "-c", _VIEW + "; " + _VIEW_ROOT + "; cat /proc/self/status | grep -E '^(Uid|Gid|Groups)'"],
                    mutate=mutate)
    ours = user.run(user.runtime, "run", "--bundle", b, user.new_id(), subids=True).check()
    theirs = user.runc_run(b, subids=True).check()
    assert _same_device_flags(ours.stdout) == _same_device_flags(theirs.stdout), \
        f"runc:\n{theirs.stdout}\nociruntime:\n{ours.stdout}"


@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc (the reference runtime) is not installed")
@pytest.mark.parametrize("subids", [False, True], ids=["own-ids", "sub-ids"])
def test_rootless_additional_gids_refused_as_runc(user, subids):
    """additionalGids in a rootless container: runc's setupUser refuses them ("cannot set any
    additional groups in a rootless container") even where newgidmap left setgroups allowed; ours
    refuses them before anything is made."""
    def mutate(s):
        if subids:
            _wide_maps(user, user.subids[0], 2000)(s)
        s["process"]["user"]["additionalGids"] = [7]
    if subids:
        user.with_subids(2000)
    b = user.bundle(["true"], mutate=mutate)
    frag = "cannot set any additional groups in a rootless container"
    cid = user.new_id()
    snap = user.snapshot(cid)
    ours = user.run(user.runtime, "run", "--bundle", b, cid, subids=subids)
    theirs = user.runc_run(b, subids=subids)
    assert theirs.rc != 0 and frag in theirs.stderr, theirs
    assert ours.rc != 0 and ours.error_msg().endswith(f"config.json: /process/user/additionalGids: {frag}"), ours
    snap.assert_clean()



@pytest.mark.skipif(_NEED_TOOLS is not None, reason=_NEED_TOOLS or "")
def test_rootless_container_root_on_a_sub_id(user):
    """The user's own uid not mapped at all: the container's root is the first id of its sub-id range.
    runc 1.1.5 fails ("fchown fd 7: operation not permitted": it gives the exec fifo to the container's
    root, which an unprivileged user may not); ours keeps the fifo (mode 0622 lets the init open it)
    and the whole lifecycle works: the init and exec'd processes are the sub-ids on the host."""
    count = 2000
    first = user.with_subids(count)

    def mutate(s):
        s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": first, "size": count}]
        s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": first, "size": count}]
    b = user.bundle(["sleep", "60"], mutate=mutate)
    cid = user.new_id()
    snap = user.snapshot(cid)
    pid = user.create(b, cid, subids=True)
    assert _host_ids(pid) == (first, first)
    user.rt("start", cid).check()
    assert user.state(cid)["status"] == "running"
    r = user.rt("exec", cid, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map; grep ^CapEff /proc/self/status").check()
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert lines == ["0", "0", f"0 {first} {count}", "CapEff: 0000000020000420"], r
    user.rt("kill", cid, "KILL").check()
    assert wait_for(lambda: not pid_alive(pid)), "the container init did not die"
    user.rt("delete", cid).check()
    snap.assert_clean()
