"""process.apparmorProfile, process.selinuxLabel, linux.mountLabel and linux.intelRdt against the real CLI.

This host has neither AppArmor nor SELinux nor resctrl (each test that depends on that says so and skips
otherwise), so:
* the refusals are exercised for real: one error line naming the field and saying the LSM (or resctrl) is
  not enabled/available on this host, nothing left behind (create and exec);
* the write path is exercised with the test-only OCIRUNTIME_TEST_FAKE_LSM_PROC (ociruntime/lsm.py): the
  init writes the exact bytes it would write to /proc/thread-self/attr/... into regular files inside the
  container, for create and exec, and before the seccomp filter is loaded;
* the real procfs path is exercised by a wrapper that makes detection say "enabled" (test code only): the
  init reaches the kernel's own attr file through procfs, and the kernel (no LSM) refuses the write.
"""
import json
import os
import subprocess
import sys

import pytest

from ociruntime import lsm
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(60)]

FAKE = "/fakeproc"
ATTR = "thread-self/" + lsm.apparmor_attr()     # where "exec <profile>" goes on this kernel
SEL_ATTR = "thread-self/attr/exec"

no_apparmor = pytest.mark.skipif(lsm.apparmor_enabled(), reason="AppArmor is enabled on this host")
no_selinux = pytest.mark.skipif(lsm.selinux_enabled(), reason="SELinux is enabled on this host")
no_resctrl = pytest.mark.skipif(lsm.resctrl_available(), reason="resctrl is mounted on this host")


def fake_env():
    return dict(os.environ, **{lsm.FAKE_PROC_ENV: FAKE})


def create_fails(env, b, *fragments, rt_env=None):
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = env.rt("create", "--bundle", b.path, cid, env=rt_env)
    assert r.rc != 0, r
    assert "Traceback" not in r.stderr, r
    msg = r.error_msg()
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    snap.assert_clean()
    return msg


def attr_files(b):
    """Empty regular files where the fake procfs attrs are (the rootfs made writable for them);
    returns {subpath: host path}."""
    b.spec["root"]["readonly"] = False
    b.write()
    out = {}
    for sub in {ATTR, SEL_ATTR}:
        p = os.path.join(b.rootfs, FAKE.lstrip("/"), sub)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "w").close()
        out[sub] = p
    return out


def read(p):
    with open(p, "rb") as f:
        return f.read()


# ------------------------------------------------------------------------------------------ refusals

@no_apparmor
def test_apparmor_profile_refused_without_apparmor(env):
    b = env.bundle(args=("true",), rootfs="empty",
                   mutate=lambda s: s["process"].__setitem__("apparmorProfile", "acme"))
    create_fails(env, b, "/process/apparmorProfile", "AppArmor is not enabled on this host")


@no_selinux
def test_selinux_label_refused_without_selinux(env):
    b = env.bundle(args=("true",), rootfs="empty",
                   mutate=lambda s: s["process"].__setitem__("selinuxLabel", "system_u:system_r:container_t:s0"))
    create_fails(env, b, "/process/selinuxLabel", "SELinux is not enabled on this host")


@no_selinux
def test_mount_label_refused_without_selinux(env):
    b = env.bundle(args=("true",), rootfs="empty",
                   mutate=lambda s: s["linux"].__setitem__("mountLabel", "system_u:object_r:container_file_t:s0"))
    create_fails(env, b, "/linux/mountLabel", "SELinux is not enabled on this host")
    # the test override fakes /proc attrs only, never filesystem labels
    create_fails(env, b, "/linux/mountLabel", "SELinux is not enabled on this host", rt_env=fake_env())


@no_resctrl
@pytest.mark.parametrize("rdt", [{}, {"closID": "guaranteed"}, {"l3CacheSchema": "L3:0=7f0"}])
def test_intel_rdt_refused_without_resctrl(env, rdt):
    b = env.bundle(args=("true",), rootfs="empty", mutate=lambda s: s["linux"].__setitem__("intelRdt", rdt))
    create_fails(env, b, "/linux/intelRdt", "resctrl filesystem, which is not available on this host")


@no_apparmor
@no_selinux
def test_exec_refuses_labels_without_the_lsm(env):
    b = env.bundle()
    cid = env.running(b)
    proc = dict(b.spec["process"], args=["true"], apparmorProfile="acme")
    pf = os.path.join(env.tmp, "process.json")
    with open(pf, "w") as f:
        json.dump(proc, f)
    r = env.rt("exec", "--process", pf, cid)
    assert r.rc == 255 and "process.json: /apparmorProfile: AppArmor is not enabled on this host" in r.error_msg()
    r = env.rt("exec", "--process-label", "system_u:system_r:container_t:s0", cid, "true")
    assert r.rc == 255 and "/selinuxLabel: SELinux is not enabled on this host" in r.error_msg()
    r = env.rt("exec", "--apparmor", "acme", cid, "true")
    assert r.rc == 255 and "/apparmorProfile: AppArmor is not enabled on this host" in r.error_msg()
    assert env.rt.status(cid) == "running"
    assert env.rt("exec", cid, "true").ok       # the container itself is fine


@no_apparmor
@no_selinux
def test_fake_override_is_not_a_way_around_the_real_check(env):
    """Without the override the same config is refused: the override is what makes the fake tests pass."""
    b = env.bundle(args=("true",), mutate=lambda s: s["process"].__setitem__("apparmorProfile", "acme"))
    attr_files(b)
    create_fails(env, b, "AppArmor is not enabled on this host")


# ------------------------------------------------------------------------------------------ the write path

@no_apparmor
@no_selinux
@pytest.mark.parametrize("field,value,sub,want", [
    ("apparmorProfile", "acme-profile", ATTR, b"exec acme-profile"),
    ("selinuxLabel", "system_u:system_r:container_t:s0:c1,c2", SEL_ATTR, b"system_u:system_r:container_t:s0:c1,c2"),
])
def test_label_written_exactly_before_execve(env, field, value, sub, want):
    b = env.bundle(args=("cat", f"{FAKE}/{sub}"), mutate=lambda s: s["process"].__setitem__(field, value))
    files = attr_files(b)
    # create under the override, then start: the init writes while setting up the process
    cid = env.new_id()
    outp = os.path.join(env.tmp, "out")
    with open(outp, "wb") as f:
        env.rt("create", "--bundle", b.path, cid, stdout=f, env=fake_env()).check()
    assert read(files[sub]) == want, "written during create (before READY is acknowledged), exactly"
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    assert read(outp) == want                    # the process saw the same bytes
    others = {p for s, p in files.items() if s != sub}
    assert all(read(p) == b"" for p in others)


@no_apparmor
@no_selinux
@pytest.mark.parametrize("nnp", [True, False])
def test_label_written_before_the_seccomp_filter(env, nnp):
    """The filter denies openat2 (the init's way to the attr file): the write must come before it, as runc's
    SetExecLabel comes before InitSeccomp in either order (NNP or not)."""
    def mut(s):
        s["process"]["apparmorProfile"] = "acme"
        s["process"]["noNewPrivileges"] = nnp
        s["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    b = env.bundle(args=("true",), mutate=mut)
    files = attr_files(b)
    cid = env.created(b, env=fake_env())
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    assert read(files[ATTR]) == b"exec acme"


@no_apparmor
@no_selinux
def test_exec_writes_its_own_label_or_inherits_the_containers(env):
    b = env.bundle(args=("sleep", "30"), mutate=lambda s: s["process"].__setitem__("apparmorProfile", "ctr"))
    files = attr_files(b)
    cid = env.created(b, env=fake_env())
    env.rt("start", cid).check()
    f = files[ATTR]
    assert read(f) == b"exec ctr"

    open(f, "w").close()
    proc = dict(b.spec["process"], args=["true"], apparmorProfile="own")
    pf = os.path.join(env.tmp, "process.json")
    with open(pf, "w") as fh:
        json.dump(proc, fh)
    env.rt("exec", "--process", pf, cid, env=fake_env()).check()
    assert read(f) == b"exec own"

    open(f, "w").close()
    del proc["apparmorProfile"]                  # runc: the container's profile
    with open(pf, "w") as fh:
        json.dump(proc, fh)
    env.rt("exec", "--process", pf, cid, env=fake_env()).check()
    assert read(f) == b"exec ctr"

    open(f, "w").close()
    env.rt("exec", "--apparmor", "flag", cid, "true", env=fake_env()).check()
    assert read(f) == b"exec flag"


@no_apparmor
@no_selinux
def test_missing_fake_attr_file_fails_cleanly(env):
    b = env.bundle(args=("true",), mutate=lambda s: s["process"].__setitem__("apparmorProfile", "acme"))
    b.spec["root"]["readonly"] = False
    b.write()
    create_fails(env, b, "apply the AppArmor profile", FAKE, rt_env=fake_env())


# ------------------------------------------------------------------------------------------ the real procfs path

WRAPPER = """
import sys
from ociruntime import lsm, cli
lsm.apparmor_enabled = lambda: True      # test only: pretend, to see where the init's write lands
lsm.selinux_enabled = lambda: True
sys.exit(cli.main(["ociruntime"] + sys.argv[1:]))
"""


@no_apparmor
@no_selinux
@pytest.mark.parametrize("field,value,want", [
    ("apparmorProfile", "acme", 'apply the AppArmor profile (write "exec acme" to /proc/' + ATTR + ")"),
    ("selinuxLabel", "u:r:t:s0", 'apply the SELinux label (write "u:r:t:s0" to /proc/thread-self/attr/exec)'),
])
def test_real_write_reaches_the_kernels_attr_file(env, field, value, want):
    """With no LSM the kernel refuses the write (EINVAL): the init got to the real procfs attr file."""
    wrapper = os.path.join(env.tmp, "wrap.py")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    b = env.bundle(args=("true",), mutate=lambda s: s["process"].__setitem__(field, value))
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = subprocess.run([sys.executable, wrapper, "--root", env.root, "create", "--bundle", b.path, cid],
                       capture_output=True, text=True, timeout=30)
    err = r.stderr.replace(chr(92) + chr(34), chr(34))
    assert r.returncode != 0 and want in err and "invalid argument" in err, r.stderr
    snap.assert_clean()


# ------------------------------------------------------------------------------------------ against runc

RUNC = "/usr/sbin/runc"


@no_apparmor
@no_selinux
@pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc is not installed")
@pytest.mark.parametrize("mutate,ours,runcs", [
    (lambda s: s["process"].__setitem__("apparmorProfile", "acme"), "AppArmor is not enabled on this host",
     "apparmor"),
    (lambda s: s["linux"].__setitem__("mountLabel", "system_u:object_r:container_file_t:s0"),
     "SELinux is not enabled on this host", 'context=\\"system_u:object_r:container_file_t:s0\\"'),
], ids=["apparmorProfile", "mountLabel"])
def test_runc_fails_too_on_this_host(env, mutate, ours, runcs):
    """runc 1.1.5 tries (the attr write, or a tmpfs mount with the same context="..." option we would pass)
    and the kernel refuses; we refuse up front, saying why. Neither leaves a container."""
    b = env.bundle(args=("true",), mutate=mutate)
    cid = env.new_id()
    root = os.path.join(env.tmp, "runc-root")
    env.extra_roots.append(root)
    r = subprocess.run([RUNC, "--root", root, "create", "--bundle", b.path, cid], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and runcs in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(root, cid))
    create_fails(env, b, ours)
