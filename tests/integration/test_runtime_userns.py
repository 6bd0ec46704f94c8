"""The runtime's own user namespace drives its decisions, not only the config's (issue 15).

Rootless podman runs the runtime as uid 0 inside a user namespace podman made, with a config that
has no user namespace of its own. Everything the kernel forbids in a non-initial user namespace must
then be decided from where the runtime runs ("running in a user namespace, or the config asks for
one", runc's userns.RunningInUserNS()): device nodes (bind, never mknod), setgroups (skipped when
/proc/self/setgroups is "deny", read after the namespaces are entered, at create and at exec),
cgroups (the rootless manager), mount flags the parent namespace locked, oomScoreAdj, rlimits and
sysctls.

Each case runs runc 1.1.5 and ociruntime on the same bundle (no user namespace in the config) in the
same place, and compares what the container sees (or that both refuse):

* ``single``: as root under ``unshare -Ur`` (uid 0 -> 0, one id, setgroups deny: podman's mapping
  for a user without sub-ids);
* ``multi``: as an unprivileged user with an /etc/subuid range (bound over /etc only in a private
  mount namespace, as in test_rootless) under ``unshare --map-root-user --map-users=...``, which
  writes the multi-id map through the setuid newuidmap/newgidmap (podman's mapping with sub-ids).

Both run inside a private mount namespace in which a nosuid,nodev,noexec tmpfs is mounted first: a
bind mount of it in the container carries those flags locked.
"""

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from _util import kill_pid, memfd_inits, descends_from_us, reap_zombie_children
from _util import rootfs_template, _subreaper  # noqa: F401  (fixtures)
from test_rootless import RUNC, UNSHARE, User, _SKIP, _NEED_TOOLS, _proc_uid

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
              pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc (the reference runtime) is not installed"),
              pytest.mark.skipif(_NEED_TOOLS is not None, reason=_NEED_TOOLS or "")]

SUBIDS = 65536


def _hard_nofile():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _oom_now():
    with open("/proc/self/oom_score_adj") as f:
        return int(f.read())


class Place:
    """Runs a runtime as ``mode`` (single/multi) in a user namespace, on bundles of its own."""

    def __init__(self, user, mode):
        self.user, self.mode = user, mode
        self.locked = os.path.join(user.tmp, "locked")   # the nosuid,nodev,noexec tmpfs
        os.mkdir(self.locked, 0o755)
        if mode == "multi":
            self.first = user.with_subids(SUBIDS)
        self.roots = {}
        self.made = []   # (runtime, root, id) to delete --force afterwards
        self.cgroups = []

    def root(self, rt):
        if rt not in self.roots:
            d = os.path.join(self.user.tmp, f"state-{os.path.basename(rt)}")
            os.mkdir(d, 0o700)
            if self.mode == "multi":
                os.chown(d, self.user.uid, self.user.gid)
            self.roots[rt] = d
        return self.roots[rt]

    def argv(self, cmd):
        prep = f'mount -t tmpfs -o nosuid,nodev,noexec,mode=755 ocirl-locked "{self.locked}"'
        if self.mode == "single":
            return [UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c", f'{prep} && exec "$@"', "sh",
                    UNSHARE, "--user", "--map-root-user", *cmd]
        etc = os.path.join(self.user.tmp, "etc")
        binds = " && ".join(f'mount --bind "{etc}/{f}" /etc/{f}' for f in ("passwd", "subuid", "subgid"))
        maps = [f"--map-users={self.first},1,{SUBIDS}", f"--map-groups={self.first},1,{SUBIDS}"]
        return [UNSHARE, "--mount", "--propagation", "private", "/bin/sh", "-c", f'{binds} && {prep} && exec "$@"',
                "sh", *self.user.argv(UNSHARE, "--map-root-user", *maps, *cmd)]

    def rt(self, rt, *args, timeout=60):
        return self.cmd([rt, "--root", self.root(rt), *args], timeout)

    def cmd(self, cmd, timeout=60):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen(self.argv(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 env=self.user.env(), cwd=self.user.tmp)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_pid(p.pid)
                p.wait()
                raise AssertionError(f"timed out: {cmd}")
            out.seek(0)
            err.seek(0)
            return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")

    def bundle(self, script, mutate=None):
        """``spec --rootless`` without the user namespace and its maps (podman's kind of config)."""
        def strip(s):
            s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "user"]
            s["linux"].pop("uidMappings", None)
            s["linux"].pop("gidMappings", None)
            if mutate:
                mutate(s)
        return self.user.bundle(["sh", "-c", script], mutate=strip)

    def run(self, rt, bundle):
        cid = f"ul-{uuid.uuid4().hex[:10]}"
        self.made.append((rt, cid))
        rc, out, err = self.rt(rt, "run", "--bundle", bundle, cid)
        self.rt(rt, "delete", "--force", cid)
        return rc, out, err

    def cleanup(self):
        errors = []
        for rt, cid in self.made:
            if os.path.lexists(os.path.join(self.root(rt), cid)):
                rc, out, err = self.rt(rt, "delete", "--force", cid)
                if rc:
                    errors.append(f"{rt} delete --force {cid}: {err}")
        for pid in sorted(memfd_inits()):
            if descends_from_us(pid) and _proc_uid(pid) in (0, self.user.uid):
                kill_pid(pid)
                errors.append(f"container init {pid} survived delete --force; killed it")
        reap_zombie_children()
        for d in self.cgroups:
            for ctrl in os.listdir("/sys/fs/cgroup"):
                path = os.path.join("/sys/fs/cgroup", ctrl, d.strip("/"))
                if os.path.isdir(path):
                    try:
                        os.rmdir(path)
                    except OSError as e:
                        errors.append(f"cgroup {path}: {e}")
        for root in self.roots.values():
            shutil.rmtree(root, ignore_errors=True)
        return errors


@pytest.fixture(params=["single", "multi"])
def place(request, rootfs_template, oci_runtime_for_others):
    u = User(rootfs_template, oci_runtime_for_others)
    pl = Place(u, request.param)
    yield pl
    errors = pl.cleanup() + u.cleanup()
    assert not errors, "cleanup problems:\n" + "\n".join(errors)


def _same(pl, bundle, expect_ok=True):
    theirs = pl.run(RUNC, bundle)
    ours = pl.run(pl.user.runtime, bundle)
    if expect_ok is not None:
        assert (theirs[0] == 0) == expect_ok, f"runc ({pl.mode}): rc={theirs[0]}\n{theirs[1]}\n{theirs[2]}"
    assert (ours[0] == 0) == (theirs[0] == 0), \
        f"{pl.mode}: runc rc={theirs[0]} {theirs[2]!r}\nociruntime rc={ours[0]} {ours[2]!r}\n{ours[1]}"
    if theirs[0] == 0:
        assert ours[1] == theirs[1], f"{pl.mode}: runc:\n{theirs[1]}\nociruntime:\n{ours[1]}"
    return ours


DEV = "ls -ln /dev | sed 1d | awk '{print $1,$3,$4,$5,$6,$NF}'"


def test_devices_are_bound_not_made(place):
    """No mknod in a non-initial user namespace: the default devices and linux.devices are bind
    mounts of the host's nodes (the failure was `mknod /dev/null: operation not permitted`)."""
    def mutate(s):
        # bound from the host's node of the same path (both runtimes): one that exists here
        s["linux"]["devices"] = [{"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o666}]
    b = place.bundle(DEV + "; ls -ln /dev/net | sed 1d | awk '{print $1,$5,$6,$NF}'; "
                     "echo x > /dev/null && echo null-ok", mutate)
    rc, out, _ = _same(place, b)
    assert "tun" in out and "null-ok" in out


def test_setgroups_follows_the_runtimes_namespace(place):
    """additionalGids: set where setgroups is allowed (multi-id map), skipped silently where the
    runtime's own namespace denies it (single map), as runc."""
    def mutate(s):
        s["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [10]}
    b = place.bundle("grep -E '^Groups' /proc/self/status; cat /proc/self/setgroups", mutate)
    rc, out, _ = _same(place, b)
    assert ("deny" in out) == (place.mode == "single"), out


def test_exec_setgroups_follows_the_runtimes_namespace(place):
    """exec: the same decision, read after joining the container's namespaces (create, exec and
    delete in one user namespace: a sibling one could not join the container's)."""
    b = place.bundle("sleep 30")
    outs = {}
    for rt in (RUNC, place.user.runtime):
        cid = f"ul-{uuid.uuid4().hex[:10]}"
        place.made.append((rt, cid))
        r = f'"{rt}" --root "{place.root(rt)}"'
        script = (f'{r} run --detach --bundle "{b}" {cid} >/dev/null || exit 99; '
                  f'{r} exec --additional-gids 10 {cid} sh -c "grep -E ^Groups /proc/self/status; '
                  f'cat /proc/self/setgroups"; rc=$?; {r} delete --force {cid}; exit $rc')
        outs[rt] = place.cmd(["/bin/sh", "-c", script])
    assert outs[RUNC][0] == 0, outs
    assert outs[place.user.runtime][:2] == outs[RUNC][:2], outs


def test_locked_mount_flags_are_kept(place):
    """A read-only bind of a nosuid,nodev,noexec mount and a read-only root: the remounts keep the
    flags the parent namespace locked. Deliberate deviation: runc 1.1.5 remounts with only MS_RDONLY
    and fails (EPERM); later runc versions keep the locked flags as we do. The read-only root alone
    works in both."""
    def ro_root(s):
        s["root"]["readonly"] = True
    b = place.bundle("grep -E ' / ' /proc/self/mountinfo | cut -d' ' -f5,6", ro_root)
    _same(place, b)

    def locked(s):
        ro_root(s)
        s["mounts"].append({"destination": "/tmp", "type": "bind", "source": place.locked, "options": ["rbind", "ro"]})
    b = place.bundle("grep -E ' /tmp ' /proc/self/mountinfo | cut -d' ' -f5,6", locked)
    rc, out, err = place.run(RUNC, b)
    assert rc != 0 and "operation not permitted" in err, (rc, out, err)
    rc, out, err = place.run(place.user.runtime, b)
    assert rc == 0, err
    assert out.split() == ["/tmp", "ro,nosuid,nodev,noexec,relatime"], out


@pytest.mark.parametrize("delta,ok", [(100, True), (-1, False)])
def test_oom_score_adj(place, delta, ok):
    """Above the current value: set; below it: refused by the kernel (no CAP_SYS_RESOURCE in the
    initial namespace), by both runtimes."""
    value = _oom_now() + delta

    def mutate(s):
        s["process"]["oomScoreAdj"] = value
    b = place.bundle("cat /proc/self/oom_score_adj", mutate)
    rc, out, _ = _same(place, b, expect_ok=ok)
    if ok:
        assert out.strip() == str(value)


@pytest.mark.parametrize("above,ok", [(False, True), (True, False)])
def test_rlimits(place, above, ok):
    """A hard limit within the runtime's own: set; above it: refused (raising needs
    CAP_SYS_RESOURCE in the initial namespace), by both runtimes."""
    hard = _hard_nofile() + 1 if above else 512

    def mutate(s):
        s["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 256, "hard": hard}]
    b = place.bundle("ulimit -n; ulimit -Hn", mutate)
    _same(place, b, expect_ok=ok)


@pytest.mark.parametrize("key,value", [("net.ipv4.ip_unprivileged_port_start", "80"),
                                       ("kernel.msgmax", "4096"),
                                       ("kernel.domainname", "ocirl.example")])
def test_sysctls(place, key, value):
    """Sysctls of namespaces the container owns (net, ipc, uts) are written in the container's
    namespaces, as in runc."""
    def mutate(s):
        s["linux"]["sysctl"] = {key: value}
    b = place.bundle(f"cat /proc/sys/{key.replace('.', '/')}", mutate)
    rc, out, _ = _same(place, b, expect_ok=None)
    if rc == 0:
        assert out.strip() == value


def test_cgroups_rootless_manager(place):
    """No cgroupsPath: the rootless cgroup manager (runc: running in a user namespace) puts the
    container where it may and runs it without a cgroup where it may not; with a cgroupsPath and a
    limit, the outcome (limit applied, or create refused) is runc's."""
    b = place.bundle("cat /proc/self/cgroup | cut -d: -f2 | sort")
    _same(place, b)
    path = f"/ocirl-{uuid.uuid4().hex[:8]}"
    place.cgroups.append(path)

    def mutate(s):
        s["linux"]["cgroupsPath"] = path
        s["linux"]["resources"] = {"pids": {"limit": 100}}
    b = place.bundle("grep -c ocirl- /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || true", mutate)
    _same(place, b, expect_ok=None)


def test_stdio_dev_null_reopened_read_write(place):
    """stdio that is the null device becomes the container's own /dev/null opened read-write (runc
    reOpenDevNull), e.g. conmon's read-only /dev/null stdin of `podman run -d`."""
    b = place.bundle("ls -l /proc/self/fd/0 /proc/self/fd/2 | cut -c1-3")
    outs = {}
    for rt in (RUNC, place.user.runtime):
        cid = f"ul-{uuid.uuid4().hex[:10]}"
        place.made.append((rt, cid))
        r = f'"{rt}" --root "{place.root(rt)}"'
        script = (f'exec 3>&1; {r} run --detach --bundle "{b}" {cid} </dev/null >&3 2>/dev/null || exit 99; '
                  f'n=0; while ! {r} state {cid} | grep -q stopped && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; '
                  f'{r} delete --force {cid}')
        outs[rt] = place.cmd(["/bin/sh", "-c", script])
    assert outs[RUNC][:2] == (0, "lrw\nlrw\n"), outs
    assert outs[place.user.runtime][:2] == outs[RUNC][:2], outs


@pytest.mark.parametrize("netns,ok", [(True, True), (False, False)])
def test_sysfs_needs_its_own_network_namespace(place, netns, ok):
    """A sysfs mount in a non-initial user namespace: allowed with a network namespace it owns,
    refused (EPERM) in the runtime's own one, by both runtimes."""
    def mutate(s):
        s["mounts"] = [m for m in s["mounts"] if not m["destination"].startswith("/sys")]
        s["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                            "options": ["nosuid", "noexec", "nodev", "ro"]})
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "network"]
        if netns:
            s["linux"]["namespaces"].append({"type": "network"})
    b = place.bundle("grep -E ' /sys ' /proc/self/mountinfo | cut -d' ' -f5,6,9", mutate)
    _same(place, b, expect_ok=ok)
