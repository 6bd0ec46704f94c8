"""Process hygiene (issue #16), differential against runc 1.1.5 where runc has the behaviour: hooks'
environment, the ownership of the container's stdio, devices outside /dev, kernel.hostname."""
import os
import subprocess

import pytest

from _util import Runtime
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(60)]
RUNC = "/usr/sbin/runc"
ALL_HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
IN_CONTAINER = ("createContainer", "startContainer")
VOLATILE = ("PWD", "_", "SHLVL", "OLDPWD")


@pytest.fixture
def runtimes(env):
    """[(name, Runtime)]: ociruntime and runc, each with its own --root; runc's containers are deleted
    by runc before env's cleanup."""
    root = env.mkdir("runc-root", 0o700)
    runc = Runtime(root, binary=RUNC)
    yield [("ociruntime", env.rt), ("runc", runc)]
    for cid in env.ids:
        if os.path.lexists(os.path.join(root, cid)):
            runc("delete", "-f", cid)


def _env_file(path):
    with open(path) as f:
        return {k: v for k, _, v in (ln.partition("=") for ln in f.read().splitlines()) if k not in VOLATILE}


# ------------------------------------------------------------------------ 16.3: hooks without env

def test_hooks_without_env_get_the_runtimes_environment(env, runtimes):
    """runc: a hook without `env` runs with the runtime's environment (prestart, createRuntime,
    poststart, poststop) or, in the container, with the process's (createContainer, startContainer);
    an explicit env is used as it is."""
    seen = {}
    for name, rt in runtimes:
        out = env.mkdir(f"hooks-{name}")
        b = env.bundle(args=("true",))
        b.spec["root"]["readonly"] = False
        b.spec["process"]["env"] = ["PATH=/bin:/usr/bin", "CONTAINERVAR=1"]
        hooks = {}
        for kind in ALL_HOOKS:
            # startContainer runs after pivot_root: it writes into the container's root
            where = "" if kind == "startContainer" else out
            hooks[kind] = [{"path": "/bin/sh", "args": ["sh", "-c", f"env > {where}/{kind}.env"]},
                           {"path": "/bin/sh", "args": ["sh", "-c", f"env > {where}/{kind}.explicit"],
                            "env": ["ONLY=this", "PATH=/bin:/usr/bin"]}]
        b.spec["hooks"] = hooks
        b.write()
        cid = env.new_id()
        r = rt("run", "--bundle", b.path, cid, env=dict(os.environ, OCIT_CALLER_VAR="from-the-caller"))
        assert r.rc == 0, (name, r)
        got = {}
        for kind in ALL_HOOKS:
            d = b.rootfs if kind == "startContainer" else out
            got[kind] = _env_file(os.path.join(d, f"{kind}.env"))
            assert _env_file(os.path.join(d, f"{kind}.explicit")) == {"ONLY": "this", "PATH": "/bin:/usr/bin"}, (name, kind)
        seen[name] = got
    ours = seen["ociruntime"]
    for kind in ALL_HOOKS:
        if kind in IN_CONTAINER:
            assert ours[kind].get("CONTAINERVAR") == "1" and "OCIT_CALLER_VAR" not in ours[kind], (kind, ours[kind])
        else:
            assert ours[kind].get("OCIT_CALLER_VAR") == "from-the-caller", (kind, ours[kind])
            assert ours[kind].get("PATH") == os.environ.get("PATH"), (kind, ours[kind])
        assert ours[kind] == seen["runc"][kind], (kind, ours[kind], seen["runc"][kind])


# ------------------------------------------------------------------------ 16.2: stdio to process.user

def _dev_null_owner():
    st = os.stat("/dev/null")
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


@pytest.mark.parametrize("userns", [False, True], ids=["no-userns", "userns"])
def test_non_root_process_can_reopen_its_stdout_pipe(env, runtimes, userns):
    """stdout a pipe (as containerd, podman and Docker run every container), process.user 1000: the
    process can write /dev/stdout (runc hands its stdio to the user); stdin is the host's /dev/null,
    which stays root:root 0666. In a user namespace the pipe belongs to the container's root, as
    containerd and podman make it (a pipe of an unmapped owner cannot be handed on: runc's foreground
    run makes its own pipes for that)."""
    null_before = _dev_null_owner()
    assert null_before == (0, 0, 0o666), null_before
    seen = {}
    for name, rt in runtimes:
        def mutate(spec):
            spec["process"]["user"] = {"uid": 1000, "gid": 1000}
            if userns:
                spec["linux"]["namespaces"].append({"type": "user"})
                spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
                spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        b = env.bundle(args=("sh", "-c", "echo via-stdout > /dev/stdout && echo ok; "
                             "stat -c '%u %a' /proc/self/fd/0 2>&1 | head -1"), mutate=mutate)
        cid = env.new_id()
        r, w = os.pipe()
        try:
            if userns:
                os.fchown(w, 100000, 100000)
            p = subprocess.Popen(rt.argv("run", "-d", "--bundle", b.path, cid), stdin=subprocess.DEVNULL,
                                 stdout=w, stderr=subprocess.DEVNULL)
            os.close(w)
            w = -1
            p.wait(timeout=30)
            with os.fdopen(r, "rb") as f:
                r = -1
                out = f.read().decode()
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
        seen[name] = (p.returncode, out.split("\n")[:2])
        assert _dev_null_owner() == null_before, f"{name} changed the host's /dev/null"
    assert seen["ociruntime"] == seen["runc"], seen
    assert seen["ociruntime"][1][:2] == ["via-stdout", "ok"], seen


# ------------------------------------------------------------------------ 16.5: device binds in a userns

def test_bind_mounted_device_nodes_are_nosuid_noexec_in_a_user_namespace(env):
    """In a user namespace the device nodes are the host's, bind-mounted: nosuid,noexec on each (crun
    does it; runc 1.1.5 does not, so this is not differential)."""
    def mutate(spec):
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b = env.bundle(args=("cat", "/proc/self/mountinfo"), mutate=mutate)
    _, out = env.run_to_completion(b)
    devs = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[4] in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"):
            devs[parts[4]] = parts[5].split(",")
    assert len(devs) == 6, out
    for path, opts in devs.items():
        assert "nosuid" in opts and "noexec" in opts, (path, opts)


def test_devices_missing_on_the_host_are_made_in_a_user_namespace(env, runtimes):
    """A linux.devices entry that has no node on the host (major/minor, owner, mode given): in a user
    namespace the container gets it as without one (mknod outside the user namespace, as crun); the
    view equals ours and runc's without a user namespace. Nothing is left below /dev but the node."""
    script = ("{ stat -c '%u %g %a %t,%T %F' /dev/ocit-full; echo x > /dev/ocit-full; "
              "ls -a /dev | grep -c devnodes; } 2>&1; true")

    def mutate(userns):
        def m(spec):
            spec["process"]["user"] = {"uid": 1000, "gid": 1000}
            spec["linux"]["devices"] = [{"path": "/dev/ocit-full", "type": "c", "major": 1, "minor": 7,
                                         "fileMode": 0o620, "uid": 1000, "gid": 1000}]
            if userns:
                spec["linux"]["namespaces"].append({"type": "user"})
                spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
                spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        return m
    assert not os.path.exists("/dev/ocit-full")
    views = {}
    for name, rt in runtimes:
        for userns in ((False, True) if name == "ociruntime" else (False,)):
            b = env.bundle(args=("sh", "-c", script), mutate=mutate(userns))
            out = os.path.join(env.tmp, f"out-{name}-{userns}")
            with open(out, "wb") as f:
                r = rt("run", "--bundle", b.path, env.new_id(), stdout=f)
            views[(name, userns)] = open(out).read()
            assert r.rc == 0, (name, userns, r, views[(name, userns)])
    first = views[("ociruntime", False)]
    assert first.splitlines()[0] == "1000 1000 620 1,7 character special file", first
    assert "No space left on device" in first and first.splitlines()[-1] == "0", first
    assert views[("ociruntime", True)] == first == views[("runc", False)], views


# ------------------------------------------------------------------------ 16.4: devices outside /dev

def test_devices_outside_dev_are_made_where_asked(env, runtimes):
    """config-linux.md: a device path "MAY be anywhere in the container filesystem, notably outside of
    /dev"; runc creates it there. Ours too (also in a user namespace), resolved inside the root: a symlink
    in the image towards a host directory leads into the rootfs, never to the host."""
    outside = env.outside_dir(base="/tmp")
    script = "{ stat -c '%t,%T %F %a' /foo-dev /lnk/bar-dev; echo x > /foo-dev; } 2>&1; true"

    def mutate(userns):
        def m(spec):
            spec["linux"]["devices"] = [
                {"path": "/foo-dev", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666},
                {"path": "/lnk/bar-dev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640}]
            if userns:
                spec["linux"]["namespaces"].append({"type": "user"})
                spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
                spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            spec["root"]["readonly"] = False
        return m
    views = {}
    for name, rt in runtimes:
        for userns in ((False, True) if name == "ociruntime" else (False,)):
            b = env.bundle(args=("sh", "-c", script), mutate=mutate(userns))
            os.symlink(outside, os.path.join(b.rootfs, "lnk"))
            os.makedirs(os.path.join(b.rootfs, outside.lstrip("/")))
            if userns:  # the image belongs to the container's root, as for any user-namespaced container
                subprocess.run(["chown", "-hR", "100000:100000", b.rootfs], check=True)
            out = os.path.join(env.tmp, f"out-{name}-{userns}")
            with open(out, "wb") as f:
                r = rt("run", "--bundle", b.path, env.new_id(), stdout=f)
            views[(name, userns)] = open(out).read()
            assert r.rc == 0, (name, userns, r, views[(name, userns)])
            assert os.listdir(outside) == [], f"{name} created a device on the host through the image's symlink"
    first = views[("ociruntime", False)]
    assert first.splitlines()[:2] == ["1,7 character special file 666", "1,3 character special file 640"], first
    assert "No space left on device" in first, first
    assert views[("ociruntime", True)] == first == views[("runc", False)], views
