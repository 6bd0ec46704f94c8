"""Behaviour of current runc (1.4) where it differs from Debian's 1.1.5 (issue #11).

Each test asserts the runc 1.4 behaviour itself. Where runc 1.1.5 (the repo's differential reference)
already behaves the same, the test runs the same bundle under it too and compares what the container
sees (``_both``).
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import time

import pytest

from _util import env, rootfs_template, _subreaper, Runtime, kill_pid, pid_alive, wait_for  # noqa: F401

RUNC = shutil.which("runc") or "/usr/sbin/runc"


def _runc(env):
    """runc 1.1.5 with a private root under the test's tmp dir (its containers are run in the
    foreground only, so `run` deletes them; see _run_runc)."""
    root = env.mkdir("runc-root", 0o700)
    return Runtime(root, binary=RUNC)


def _run_runc(env, b, timeout=20):
    rt = _runc(env)
    cid = env.new_id("r")
    try:
        return rt("run", "--bundle", b.path, cid, timeout=timeout)
    finally:
        rt("delete", "--force", cid)


def _run_ours(env, b, timeout=20):
    cid = env.new_id()
    return env.rt("run", "--bundle", b.path, cid, timeout=timeout)


def _both(env, b):
    """(runc's result, ours) of a foreground `run` of the same bundle."""
    return _run_runc(env, b), _run_ours(env, b)


# -- 2. process.env ---------------------------------------------------------------------------

def test_env_duplicates_collapse_and_empty_home_is_replaced(env):
    """runc prepareEnv (>= 1.2): the last value of a duplicate wins, at its place; an empty HOME is the
    user's home from the container's /etc/passwd. runc 1.1.5 gives the same set (in another order)."""
    def mut(s):
        s["process"]["env"] = ["ONE=two", "ONE=", "HOME=", "PATH=/bin"]
    b = env.bundle(args=("/bin/env",), mutate=mut)
    theirs, ours = _both(env, b)
    assert ours.rc == 0, ours
    assert ours.stdout.splitlines() == ["ONE=", "PATH=/bin", "HOME=/root"], ours
    assert theirs.rc == 0, theirs
    assert sorted(theirs.stdout.splitlines()) == sorted(ours.stdout.splitlines())


def test_env_missing_home_of_a_user_without_passwd_entry(env):
    def mut(s):
        s["process"]["env"] = ["PATH=/bin", "PATH=/usr/bin:/bin"]
        s["process"]["user"] = {"uid": 4242, "gid": 4242}
    b = env.bundle(args=("/bin/env",), mutate=mut)
    theirs, ours = _both(env, b)
    assert ours.stdout.splitlines() == ["PATH=/usr/bin:/bin", "HOME=/"], ours
    assert sorted(theirs.stdout.splitlines()) == sorted(ours.stdout.splitlines()), theirs


# -- 3. cwd entered while privileged ----------------------------------------------------------

def test_cwd_only_root_may_enter(env):
    """cwd=/root (0700, root's) with uid 42 and no capabilities: runc enters it before the user switch."""
    def mut(s):
        s["process"]["cwd"] = "/root"
        s["process"]["user"] = {"uid": 42, "gid": 42}
    b = env.bundle(args=("/bin/sh", "-c", "pwd; id -u"), mutate=mut)
    os.chmod(os.path.join(b.rootfs, "root"), 0o700)
    theirs, ours = _both(env, b)
    assert ours.rc == 0 and ours.stdout.split() == ["/root", "42"], ours
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs


def test_cwd_only_the_user_may_enter(env):
    """...and again after the user switch when root was denied (a 0700 dir of the user, root without
    CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH in the runtime... here: a user namespace root that does not own it)."""
    def mut(s):
        s["process"]["cwd"] = "/home/u"
        s["process"]["user"] = {"uid": 1000, "gid": 1000}
    b = env.bundle(args=("/bin/sh", "-c", "pwd"), mutate=mut)
    d = os.path.join(b.rootfs, "home", "u")
    os.makedirs(d)
    os.chown(d, 1000, 1000)
    os.chmod(d, 0o700)
    ours = _run_ours(env, b)
    assert ours.rc == 0 and ours.stdout.strip() == "/home/u", ours


def test_exec_user_with_root_only_cwd(env):
    b = env.bundle(args=("sleep", "30"))
    os.chmod(os.path.join(b.rootfs, "root"), 0o700)
    cid = env.running(b)
    r = env.rt("exec", "--user", "42:42", "--cwd", "/root", cid, "/bin/sh", "-c", "pwd; id -u")
    assert r.rc == 0 and r.stdout.split() == ["/root", "42"], r


# -- 4. args[0] found with the process's capabilities -----------------------------------------

def _private_program(b):
    """/x/echo: a copy of busybox (its applet is argv[0]'s basename), root's, mode 0700."""
    os.mkdir(os.path.join(b.rootfs, "x"))
    prog = os.path.join(b.rootfs, "x", "echo")
    shutil.copyfile(os.path.realpath(os.path.join(b.rootfs, "bin", "busybox")), prog)
    os.chmod(prog, 0o700)


def test_executable_through_cap_dac_override(env):
    """A root-owned 0700 program, uid 42 with CAP_DAC_OVERRIDE: faccessat2(AT_EACCESS) honours the cap
    (runc >= 1.2; runc 1.1.5 checks only the mode bits, so it accepts it too)."""
    def mut(s):
        s["process"]["user"] = {"uid": 42, "gid": 42}
        caps = ["CAP_DAC_OVERRIDE"]
        s["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
        s["process"]["noNewPrivileges"] = True
    b = env.bundle(args=("/x/echo", "ran"), mutate=mut)
    _private_program(b)
    theirs, ours = _both(env, b)
    assert ours.rc == 0 and ours.stdout == "ran\n", ours
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs


def test_executable_without_cap_is_refused_at_create(env):
    """The same program without the cap: not executable for uid 42, a create-time error (runc 1.4)."""
    def mut(s):
        s["process"]["user"] = {"uid": 42, "gid": 42}
        s["process"]["capabilities"] = {}
    b = env.bundle(args=("/x/echo", "ran"), mutate=mut)
    _private_program(b)
    cid, r = env.create(b)
    assert r.rc != 0 and "permission denied" in r.stderr, r


# -- 8. a created container stops on TERM -----------------------------------------------------

@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP"])
def test_created_container_stops_on_term(env, sig):
    b = env.bundle(args=("sleep", "30"))
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    env.rt("kill", cid, sig).check()
    assert wait_for(lambda: not pid_alive(pid), timeout=5), f"created container ignored SIG{sig}"
    assert env.rt.status(cid) == "stopped"


def test_created_container_stops_on_term_runc(env):
    """runc 1.1.5 does the same (its waiting init is a Go program whose runtime exits on SIGTERM)."""
    b = env.bundle(args=("sleep", "30"))
    rt = _runc(env)
    cid = env.new_id("r")
    try:
        with open(os.path.join(env.tmp, "runc-out"), "wb") as out:
            rt("create", "--bundle", b.path, cid, stdout=out).check()
        pid = json.loads(rt("state", cid).stdout)["pid"]
        rt("kill", cid, "TERM").check()
        assert wait_for(lambda: not pid_alive(pid), timeout=5)
    finally:
        rt("delete", "--force", cid)


# -- 21. hooks ---------------------------------------------------------------------------------

def test_create_container_hook_runs_in_the_rootfs(env):
    """runc fchdirs to the rootfs before the createContainer hooks (both 1.1.5 and 1.4)."""
    outs = {}

    def mk(tag):
        out = os.path.join(env.tmp, f"hook-{tag}")
        outs[tag] = out

        def mut(s):
            s["hooks"] = {"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"pwd > {out}"]}]}
        return mut
    b1 = env.bundle(args=("true",), mutate=mk("runc"))
    b2 = env.bundle(args=("true",), mutate=mk("ours"))
    assert _run_runc(env, b1).rc == 0
    assert _run_ours(env, b2).rc == 0
    with open(outs["runc"]) as f:
        assert f.read().strip() == os.path.realpath(b1.rootfs)
    with open(outs["ours"]) as f:
        assert f.read().strip() == os.path.realpath(b2.rootfs)


def test_start_container_hook_gets_the_process_env(env):
    """A startContainer hook without env runs with the process's prepared environment (runc
    SetDefaultEnv), duplicates collapsed and HOME filled in."""
    def mut(s):
        s["process"]["env"] = ["A=1", "A=2", "PATH=/bin"]
        s["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "env > /tmp/hookenv"]}]}
    b = env.bundle(args=("/bin/cat", "/tmp/hookenv"), mutate=mut)
    b.spec["root"]["readonly"] = False
    b.write()
    ours = _run_ours(env, b)
    assert ours.rc == 0, ours
    assert sorted(ours.stdout.split()) == sorted(["A=2", "PATH=/bin", "HOME=/root", "PWD=/"]) or \
        {"A=2", "PATH=/bin", "HOME=/root"} <= set(ours.stdout.split()), ours
    assert "A=1" not in ours.stdout.split()


# -- 28. ambient capabilities -----------------------------------------------------------------

def test_ambient_cap_that_cannot_be_raised_is_a_warning(env):
    def mut(s):
        s["process"]["capabilities"] = {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                                        "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"],
                                        "ambient": ["CAP_KILL", "CAP_CHOWN"]}
    b = env.bundle(args=("true",), mutate=mut)
    r = _run_ours(env, b)
    assert r.rc == 0, r
    assert "can't raise ambient capability CAP_CHOWN: operation not permitted" in r.stderr, r
    assert "level=warning" in r.stderr and "CAP_KILL" not in r.stderr, r


# -- 1. foreground terminal: ONLCR cleared ----------------------------------------------------

def test_foreground_terminal_output_is_the_process_bytes(env):
    """runc (1.1.5 too) clears ONLCR on the pty it relays: `echo hi` gives b"hi\\n", not b"hi\\r\\n"."""
    def mut(s):
        s["process"]["terminal"] = True
    b = env.bundle(args=("/bin/echo", "hi"), mutate=mut)
    ours = _run_ours(env, b)
    assert ours.rc == 0 and ours.stdout == "hi\n", ours
    # runc insists on a controlling terminal (it opens /dev/tty): give it one, stdout still a file
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()

    def ctty():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        os.dup2(slave, 0)
    rt = _runc(env)
    cid = env.new_id("r")
    try:
        theirs = rt("run", "--bundle", b.path, cid, preexec_fn=ctty, close_fds=False)
    finally:
        rt("delete", "--force", cid)
        os.close(master)
        os.close(slave)
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs


def test_exec_tty_output_is_the_process_bytes(env):
    cid = env.running(env.bundle())
    r = env.rt("exec", "-t", cid, "/bin/printf", "a\\nb\\n")
    assert r.rc == 0 and r.stdout == "a\nb\n", r


# -- 5. exec --process from a pipe ------------------------------------------------------------

def test_exec_process_from_a_pipe(env):
    cid = env.running(env.bundle())
    proc = dict(env.bundle(args=("/bin/echo", "from a pipe")).spec["process"])
    rfd, wfd = os.pipe()
    os.write(wfd, json.dumps(proc).encode())
    os.close(wfd)
    try:
        r = env.rt("exec", "--process", f"/dev/fd/{rfd}", cid, pass_fds=(rfd,))
    finally:
        os.close(rfd)
    assert r.rc == 0 and r.stdout == "from a pipe\n", r


# -- 6. exec --pid-file that cannot be written ------------------------------------------------

def test_exec_pid_file_unwritable_fails_255_and_kills_the_process(env):
    cid = env.running(env.bundle())
    bad = os.path.join(env.tmp, "no", "such", "dir", "pid")
    r = env.rt("exec", "--detach", "--pid-file", bad, cid, "/bin/sleep", "31")
    assert r.rc == 255, r
    assert "pid file" in r.stderr and "no such file or directory" in r.stderr.lower(), r
    # the process it started is gone (killed and reaped by the runtime)
    ps = env.rt("exec", cid, "/bin/ps", "-o", "pid,args").check().stdout
    assert "sleep 31" not in ps, ps


# -- 7. exec --cgroup / -----------------------------------------------------------------------

def _own_cgroups(cid, pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.split(":", 2)[1]: line.strip().split(":", 2)[2] for line in f}


@pytest.mark.parametrize("arg", ["/", "CTRL:/", ""])
def test_exec_cgroup_root_is_the_containers_cgroup(env, arg):
    cid = env.running(env.bundle())
    init = env.rt.init_pid(cid)
    mine = _own_cgroups(cid, init)
    ctrl = next((k for k in mine if k and "," not in k and k not in ("name=systemd",)), None)
    if arg.startswith("CTRL"):
        if ctrl is None:
            pytest.skip("no cgroup v1 controller on this host")  # pure v2: the "/" case covers it
        arg = arg.replace("CTRL", ctrl)
    out = os.path.join(env.tmp, "pid")
    r = env.rt("exec", "--detach", "--pid-file", out, "--cgroup", arg, cid, "sleep", "5")
    assert r.rc == 0, r
    with open(out) as f:
        pid = int(f.read())
    try:
        assert _own_cgroups(cid, pid) == mine
    finally:
        kill_pid(pid)  # a detached exec'd process is ours (subreaper): reaped here, or the init never goes


def test_exec_cgroup_escaping_the_container_is_refused(env):
    cid = env.running(env.bundle())
    r = env.rt("exec", "--cgroup", "../..", cid, "true")
    assert r.rc == 255 and "bad sub cgroup path" in r.stderr, r


# -- 9. kill KILL of a container sharing the pid namespace whose init is gone -----------------

def test_kill_shared_pidns_after_init_exit_kills_the_cgroup(env):
    def mut(s):
        s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "pid"]
    b = env.bundle(args=("/bin/sh", "-c", "sleep 30 & echo $! > /tmp/bg; exit 0"), mutate=mut)
    b.spec["root"]["readonly"] = False
    b.write()
    cid = env.running(b)
    assert env.wait_stopped(cid)
    with open(os.path.join(b.rootfs, "tmp", "bg")) as f:
        bg = int(f.read())
    assert pid_alive(bg), "the background process should have outlived the init"
    r = env.rt("kill", cid, "KILL")
    assert r.rc == 0, r
    assert wait_for(lambda: not pid_alive(bg), timeout=5), "the leftover process was not killed"
    assert env.rt("kill", cid, "TERM").rc == 1  # other signals: still "container not running"


# -- 22. poststart hook failing after the process exited ---------------------------------------

def test_poststart_error_is_reported_when_the_process_is_gone(env):
    def mut(s):
        s["hooks"] = {"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 0.5; echo broken >&2; exit 7"]}]}
    b = env.bundle(args=("true",), mutate=mut)
    cid = env.created(b)
    r = env.rt("start", cid)
    assert r.rc == 1, r
    assert "error running poststart hook #0: exit status 7" in r.stderr and "broken" in r.stderr, r
    assert "container not running" not in r.stderr, r


# -- 23. JSON null means absent ---------------------------------------------------------------

def test_json_null_is_absent(env):
    b = env.bundle(args=("true",))
    raw = json.dumps(b.spec)[:-1] + ', "annotations": null, "hooks": null}'
    spec = json.loads(raw)
    spec["linux"]["timeOffsets"] = None
    spec["linux"]["seccomp"] = None
    spec["process"]["rlimits"] = None
    b.write(spec)
    r = _run_ours(env, b)
    assert r.rc == 0, r
    assert _run_runc(env, b).rc == 0  # runc 1.1.5 too


# -- 24. what runc accepts with a warning -----------------------------------------------------

def test_missing_gid_is_zero_with_a_warning(env):
    def mut(s):
        s["process"]["user"] = {"uid": 0}
    b = env.bundle(args=("/bin/sh", "-c", "id -g"), mutate=mut)
    theirs, ours = _both(env, b)
    assert ours.rc == 0 and ours.stdout == "0\n", ours
    assert "level=warning" in ours.stderr and "/process/user/gid" in ours.stderr, ours
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs


def test_device_access_letters_runc_ignores(env):
    def mut(s):
        s["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwa"})
    b = env.bundle(args=("/bin/sh", "-c", "echo x > /dev/null && echo ok"), mutate=mut)
    theirs, ours = _both(env, b)
    assert ours.rc == 0 and ours.stdout == "ok\n", ours
    assert "level=warning" in ours.stderr and "/linux/resources/devices/1/access" in ours.stderr, ours


def test_io_priority_without_priority(env):
    def mut(s):
        s["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE"}
    b = env.bundle(args=("/bin/sh", "-c", "cat /proc/self/io 2>/dev/null; echo ok"), mutate=mut)
    r = _run_ours(env, b)
    assert r.rc == 0 and r.stdout.endswith("ok\n"), r
    assert "level=warning" in r.stderr and "/process/ioPriority/priority" in r.stderr, r


# -- 25. the spec template --------------------------------------------------------------------

def test_spec_is_runc_14s_template(tmp_path):
    from _util import RUNTIME
    subprocess.run([RUNTIME, "spec", "--bundle", str(tmp_path)], check=True)
    with open(tmp_path / "config.json") as f:
        spec = json.load(f)
    caps = spec["process"]["capabilities"]
    assert sorted(caps) == ["bounding", "effective", "permitted"], caps  # no ambient (nor inheritable)
    ns = [n["type"] for n in spec["linux"]["namespaces"]]
    unified = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    assert ns == ["pid", "network", "ipc", "uts", "mount"] + (["cgroup"] if unified else []), ns


def test_one_default_spec():
    from ociruntime.misc import default_spec
    from ociruntime.testing import default_config
    ours, harness = default_spec(cgroupns=False), default_config()
    for k in ("process", "root", "mounts"):
        assert harness[k] == ours[k], k
    assert harness["linux"]["namespaces"] == ours["linux"]["namespaces"]


# -- 26. --debug and --version ----------------------------------------------------------------

def test_debug_logs_the_steps(env):
    b = env.bundle(args=("true",))
    cid = env.new_id()
    r = env.rt("--debug", "run", "--bundle", b.path, cid)
    assert r.rc == 0, r
    debug = [line for line in r.stderr.splitlines() if "level=debug" in line]
    text = "\n".join(debug)
    # the same steps as --trace (issue 14): the runtime's and the init's
    for step in ("runtime step: load", "runtime step: cgroups: create", "runtime step: spawn init",
                 "init step: pivot_root", "init step: masked path", "runtime step: wait for execve"):
        assert step in text, (step, r.stderr)


def test_version_has_a_commit_line():
    from _util import RUNTIME
    out = subprocess.run([RUNTIME, "--version"], capture_output=True, text=True, check=True).stdout
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    head = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.fail("the suite runs from a git checkout; --version's commit comes from it")
    commit = [line for line in out.splitlines() if line.startswith("commit: ")]
    assert commit, out
    # `git describe --always --long --dirty` of the checkout at `make build` time: a commit of this repo
    sha = commit[0].split()[1].removesuffix("-dirty").rpartition("-g")[2]
    r = subprocess.run(["git", "-C", src, "cat-file", "-e", sha + "^{commit}"], capture_output=True)
    assert r.returncode == 0, (out, r.stderr)


# -- 27. runc's wording -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["createRuntime", "createContainer", "startContainer"])
def test_hook_error_wording(env, kind):
    def mut(s):
        s["hooks"] = {kind: [{"path": "/bin/true"}, {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}
    b = env.bundle(args=("true",), mutate=mut)
    theirs, ours = _both(env, b)
    assert ours.rc != 0 and f"error running {kind} hook #1: exit status 3" in ours.stderr, ours
    assert f"hook #1" in theirs.stderr or "error running hook #1" in theirs.stderr, theirs


@pytest.mark.parametrize("which", ["proc", "sys"])
def test_proc_on_a_file_wording(env, which):
    b = env.bundle(args=("true",))
    os.rmdir(os.path.join(b.rootfs, which))
    open(os.path.join(b.rootfs, which), "w").close()
    theirs, ours = _both(env, b)
    fs = {"proc": "proc", "sys": "sysfs"}[which]
    assert ours.rc != 0 and f'filesystem "{fs}" must be mounted on ordinary directory' in ours.stderr.replace('\\"', '"'), ours
    assert theirs.rc != 0


def test_cgroup_not_empty_wording(env):
    b = env.bundle()
    cid = env.running(b)
    with open(f"/proc/{env.rt.init_pid(cid)}/cgroup") as f:
        rel = [line.strip().split(":", 2)[2] for line in f if line.startswith("0::")]
    if not rel:
        pytest.fail("no unified hierarchy line in /proc/self/cgroup")
    b2 = env.bundle()
    b2.spec["linux"]["cgroupsPath"] = rel[0]
    b2.write()
    cid2, r = env.create(b2)
    assert r.rc != 0 and "container's cgroup is not empty: 1 process(es) found" in r.stderr, r


# -- 13. a tmpfs takes the mode of the directory it covers ------------------------------------

def test_tmpfs_without_mode_takes_the_covered_dirs_mode(env):
    def mut(s):
        s["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]})
        s["mounts"].append({"destination": "/given", "type": "tmpfs", "source": "tmpfs",
                            "options": ["mode=700"]})
    b = env.bundle(args=("/bin/stat", "-c", "%a", "/data", "/given", "/fresh"), mutate=mut)
    for d, mode in (("data", 0o750), ("given", 0o755)):
        os.mkdir(os.path.join(b.rootfs, d))
        os.chmod(os.path.join(b.rootfs, d), mode)
    b.spec["mounts"].append({"destination": "/fresh", "type": "tmpfs", "source": "tmpfs"})
    b.write()
    ours = _run_ours(env, b)
    # an explicit mode= wins (runc >= 1.2 puts the covered dir's mode first); a directory made for the
    # mount has nothing to cover: tmpfs's own 1777
    assert ours.rc == 0 and ours.stdout.split() == ["750", "700", "1777"], ours
    theirs = _run_runc(env, b)  # 1.1.5 chmods back to the covered mode, mode= or not (and to mkdir's 0755)
    assert theirs.stdout.split() == ["750", "755", "755"], theirs


# -- 14. a read-only tmpfs with mounts below it -----------------------------------------------

def test_readonly_tmpfs_with_mounts_below(env):
    def mut(s):
        s["mounts"].append({"destination": "/ro", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid"]})
        s["mounts"].append({"destination": "/ro/sub", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]})
    b = env.bundle(args=("/bin/sh", "-c", "touch /ro/sub/x && echo sub-rw; touch /ro/y 2>/dev/null || echo top-ro"),
                   mutate=mut)
    theirs, ours = _both(env, b)
    assert ours.rc == 0 and ours.stdout.split() == ["sub-rw", "top-ro"], ours
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs


def test_readonly_dev_tmpfs(env):
    def mut(s):
        dev = next(m for m in s["mounts"] if m["destination"] == "/dev")
        dev["options"].append("ro")
    b = env.bundle(args=("/bin/sh", "-c", "ls /dev/pts/ptmx /dev/null >/dev/null && echo ok; "
                                          "touch /dev/x 2>/dev/null || echo ro"), mutate=mut)
    theirs, ours = _both(env, b)
    assert ours.rc == 0 and ours.stdout.split() == ["ok", "ro"], ours
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs


# -- 16. maskedPaths: one shared tmpfs, duplicates once ---------------------------------------

def test_masked_directories_share_one_tmpfs_and_duplicates_are_masked_once(env):
    def mut(s):
        s["linux"]["maskedPaths"] = ["/m1", "/m2", "/m1/", "//m2", "/f"]
    b = env.bundle(args=("/bin/cat", "/proc/self/mountinfo"), mutate=mut)
    for d in ("m1", "m2"):
        os.mkdir(os.path.join(b.rootfs, d))
    open(os.path.join(b.rootfs, "f"), "w").close()
    ours = _run_ours(env, b)
    assert ours.rc == 0, ours
    lines = {}
    for line in ours.stdout.splitlines():
        f = line.split()
        lines.setdefault(f[4], []).append(f)
    assert len(lines["/m1"]) == 1 and len(lines["/m2"]) == 1 and len(lines["/f"]) == 1, ours.stdout
    assert lines["/m1"][0][2] == lines["/m2"][0][2], "the masked directories are one tmpfs"
    assert lines["/m1"][0][5].startswith("ro"), lines["/m1"]


# -- 20. cgroup v1 cpuset of an existing parent ------------------------------------------------

def test_existing_cpuset_parent_with_empty_cpus(env):
    base = "/sys/fs/cgroup/cpuset"
    if not os.path.exists(os.path.join(base, "cpuset.cpus")):
        pytest.skip("no cgroup v1 cpuset hierarchy on this host (cgroup v2 has no such problem)")
    with open(os.path.join(base, "cgroup.clone_children")) as f:
        if f.read().strip() != "0":
            pytest.skip("cpuset clone_children is on: new cgroups are never empty here")
    parent_name = env.new_id("p")
    parent = os.path.join(base, parent_name)
    os.mkdir(parent)
    env.cleanup_cgroups.add(parent)
    with open(os.path.join(parent, "cpuset.cpus")) as f:
        assert f.read().strip() == "", "a new v1 cpuset cgroup starts empty"
    cid = env.new_id()
    env.cleanup_cgroups.update(os.path.join("/sys/fs/cgroup", h, parent_name) for h in os.listdir("/sys/fs/cgroup"))

    def mut(s):
        s["linux"]["cgroupsPath"] = f"/{parent_name}/{cid}"
    b = env.bundle(args=("/bin/cat", "/sys/fs/cgroup/cpuset/cpuset.cpus"), mutate=mut)
    r = env.rt("run", "--bundle", b.path, cid)
    assert r.rc == 0 and r.stdout.strip(), r
    with open(os.path.join(base, "cpuset.cpus")) as f, open(os.path.join(parent, "cpuset.cpus")) as g:
        assert g.read() == f.read()


# -- 12. a destination through a dangling symlink ----------------------------------------------

def test_destination_through_a_dangling_symlink(env):
    src = os.path.join(env.tmp, "hosts-src")
    with open(src, "w") as f:
        f.write("10.0.0.1 x\n")

    def mut(s):
        s["root"]["readonly"] = False
        s["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": src, "options": ["rbind", "ro"]})
        s["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs"})
    b = env.bundle(args=("/bin/sh", "-c", "cat /etc/hosts; ls -d /srv/data /tmp/hosts"), mutate=mut)
    os.symlink("/tmp/hosts", os.path.join(b.rootfs, "etc", "hosts"))
    os.symlink("srv/data", os.path.join(b.rootfs, "data"))
    os.mkdir(os.path.join(b.rootfs, "srv"))
    ours = _run_ours(env, b)
    assert ours.rc == 0 and ours.stdout.split() == ["10.0.0.1", "x", "/srv/data", "/tmp/hosts"], ours
    # created inside the root, never on the host
    assert os.path.exists(os.path.join(b.rootfs, "tmp", "hosts")) and not os.path.exists("/srv/data")
    b2 = env.bundle(args=("/bin/sh", "-c", "cat /etc/hosts; ls -d /srv/data /tmp/hosts"), mutate=mut)
    os.symlink("/tmp/hosts", os.path.join(b2.rootfs, "etc", "hosts"))
    os.symlink("srv/data", os.path.join(b2.rootfs, "data"))
    os.mkdir(os.path.join(b2.rootfs, "srv"))
    theirs = _run_runc(env, b2)
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs


# -- 18. timeOffsets with a new user namespace --------------------------------------------------

def _userns(s, host=200000):
    s["linux"]["namespaces"].append({"type": "user"})
    s["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]
    s["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]


def test_time_offsets_with_a_user_namespace(env):
    def mut(s):
        _userns(s)
        s["linux"]["namespaces"].append({"type": "time"})
        s["linux"]["timeOffsets"] = {"boottime": {"secs": 10_000_000}, "monotonic": {"secs": 5_000_000}}
    b = env.bundle(args=("/bin/cat", "/proc/uptime"), mutate=mut)
    subprocess.run(["chown", "-R", "200000:200000", b.rootfs], check=True)
    r = _run_ours(env, b)
    if not os.path.exists("/proc/self/ns/time"):  # host fact: no CONFIG_TIME_NS
        at = [n["type"] for n in b.spec["linux"]["namespaces"]].index("time")
        assert r.rc != 0 and f"/linux/namespaces/{at}: this kernel has no time namespace" in r.stderr, r
        return
    assert r.rc == 0, r
    assert float(r.stdout.split()[0]) > 10_000_000, r


# -- 19. joining a namespace the container's user namespace does not own -----------------------

def _holder(env, argv):
    p = subprocess.Popen(["unshare", *argv, "--", "/bin/sleep", "60"], stdin=subprocess.DEVNULL)
    env.helper_pids.append(p.pid)
    wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").endswith("sleep"), timeout=5)
    return p.pid


def test_join_a_host_owned_netns_with_a_joined_userns(env):
    userns_pid = _holder(env, ["--user"])
    for f in ("uid_map", "gid_map"):  # written by us (host root): setgroups stays allowed
        with open(f"/proc/{userns_pid}/{f}", "w") as fh:
            fh.write("0 0 65536\n")
    netns_pid = _holder(env, ["--net"])

    def mut(s):
        ns = [n for n in s["linux"]["namespaces"] if n["type"] in ("pid", "ipc", "uts", "mount")]
        s["linux"]["namespaces"] = ns + [{"type": "user", "path": f"/proc/{userns_pid}/ns/user"},
                                         {"type": "network", "path": f"/proc/{netns_pid}/ns/net"}]
        s["linux"].pop("resources", None)
        s["mounts"] = [m for m in s["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    b = env.bundle(args=("/bin/sh", "-c", "readlink /proc/self/ns/net"), mutate=mut)
    r = _run_ours(env, b)
    assert r.rc == 0, r
    assert r.stdout.strip() == os.readlink(f"/proc/{netns_pid}/ns/net"), r


# -- 10. bind-mount flags exactly as runc >= 1.2 ------------------------------------------------

def _nosuid_nodev_source(env):
    return env.mkdir("bind-src")


def _run_with_nosuid_source(env, b, src):
    """`run` in a private mount namespace of the test's where src is a nosuid,nodev tmpfs (this host
    may have no such filesystem); the container's copy of that mount carries the flags (locked in a
    user namespace)."""
    cid = env.new_id()
    script = 'mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs "$1" && shift && exec "$@"'
    argv = ["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", src,
            *env.rt.argv("run", "--bundle", b.path, cid)]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    from _util import Result
    return Result(argv, p.returncode, p.stdout, p.stderr)


def _mount_opts(mountinfo, mp):
    for line in mountinfo.splitlines():
        f = line.split()
        if f[4] == mp:
            return set(f[5].split(","))
    raise AssertionError(f"{mp} not mounted:\n{mountinfo}")


def test_bind_with_only_clearing_flags_gets_exactly_them(env):
    """["rbind", "rw"] on a nosuid,nodev source: remounted with exactly rw (runc >= 1.2), where
    runc 1.1.5 kept the source's nosuid,nodev (it remounted only for a setting flag)."""
    src = _nosuid_nodev_source(env)

    def mut(s):
        s["mounts"].append({"destination": "/b", "type": "bind", "source": src, "options": ["rbind", "rw"]})
        s["mounts"].append({"destination": "/c", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid"]})
    b = env.bundle(args=("/bin/cat", "/proc/self/mountinfo"), mutate=mut)
    r = _run_with_nosuid_source(env, b, src)
    assert r.rc == 0, r
    assert not {"nosuid", "nodev"} & _mount_opts(r.stdout, "/b"), r.stdout
    assert {"ro", "nosuid"} <= _mount_opts(r.stdout, "/c") and "nodev" not in _mount_opts(r.stdout, "/c")


def test_bind_in_a_userns_keeps_locked_flags_and_refuses_to_clear_them(env):
    src = _nosuid_nodev_source(env)

    def mut(s):
        _userns(s)
        s["mounts"].append({"destination": "/b", "type": "bind", "source": src, "options": ["rbind", "ro"]})
    b = env.bundle(args=("/bin/cat", "/proc/self/mountinfo"), mutate=mut)
    subprocess.run(["chown", "-R", "200000:200000", b.rootfs], check=True)
    r = _run_with_nosuid_source(env, b, src)
    assert r.rc == 0, r
    assert {"ro", "nosuid", "nodev"} <= _mount_opts(r.stdout, "/b"), r.stdout  # locked, not mentioned: kept

    def mut2(s):
        _userns(s)
        s["mounts"].append({"destination": "/b", "type": "bind", "source": src, "options": ["rbind", "suid"]})
    b2 = env.bundle(args=("true",), mutate=mut2)
    subprocess.run(["chown", "-R", "200000:200000", b2.rootfs], check=True)
    r = _run_with_nosuid_source(env, b2, src)
    assert r.rc != 0 and "cannot clear locked flags" in r.stderr, r


# -- 17. --no-pivot: the host's /proc and /sys are not left behind -----------------------------

# A process of the container (uid 1000: mapping itself to root needs no capability) makes a user,
# mount, pid and network namespace of its own and tries a fresh procfs and sysfs there. The kernel
# allows that only where a mount of the same filesystem is fully visible in the mount namespace
# (mount_too_revealing): one without locked mounts over anything but empty directories.
_NESTED = ("unshare -r -U -m -p -n -f sh -c '"
           "mount -t tmpfs t /tmp/p && echo tmpfs-ok && umount /tmp/p; "
           "mount -t proc proc /tmp/p 2>/dev/null && test -e /tmp/p/sys/kernel/hostname && echo proc-mounted "
           "&& umount /tmp/p || echo proc-refused; "
           "mount -t sysfs -o ro sysfs /tmp/p 2>/dev/null && echo sysfs-mounted || echo sysfs-refused'")


def _nested_bundle(env, masks=True):
    def mut(s):
        s["root"]["readonly"] = False
        s["process"]["user"] = {"uid": 1000, "gid": 1000}
        if not masks:
            s["linux"]["maskedPaths"] = []
            s["linux"]["readonlyPaths"] = []
    b = env.bundle(args=("/bin/sh", "-c", _NESTED), mutate=mut)
    os.makedirs(os.path.join(b.rootfs, "tmp", "p"), exist_ok=True)
    return b


def test_no_pivot_leaves_no_fully_visible_host_procfs(env):
    """With --no-pivot the host's /proc and /sys (out of reach of the moved root, but still in the
    container's mount namespace, with nothing mounted over them) would be fully visible: a nested user
    namespace could mount a fresh procfs (unmasked /proc/sys, sysrq-trigger, ...) and sysfs. runc's
    msMoveRoot detaches (or covers) them before moving the root, so do we. The control run shows that
    this kernel does let a nested user namespace mount them where one is fully visible (the container's
    own /proc and /sys without masked and read-only paths); verified: with the detaching disabled the
    --no-pivot run prints proc-mounted and sysfs-mounted."""
    control = _run_ours(env, _nested_bundle(env, masks=False))
    if "tmpfs-ok" not in control.stdout:
        pytest.skip(f"this host does not let an unprivileged process make a user namespace: {control.stderr.strip()}")
    assert control.stdout.split() == ["tmpfs-ok", "proc-mounted", "sysfs-mounted"], control

    b = _nested_bundle(env)
    want = ["tmpfs-ok", "proc-refused", "sysfs-refused"]
    ours = env.rt("run", "--no-pivot", "--bundle", b.path, env.new_id())
    assert ours.rc == 0 and ours.stdout.split() == want, ours
    assert _run_ours(env, b).stdout.split() == want  # with pivot_root nothing of the host's is left
    rt = _runc(env)
    rid = env.new_id("r")
    try:
        theirs = rt("run", "--no-pivot", "--bundle", b.path, rid)
    finally:
        rt("delete", "--force", rid)
    assert theirs.stdout == ours.stdout, theirs  # runc 1.1.5 hides them too


# -- 11. sources and destinations that name the container's own tree ---------------------------

def test_bind_source_inside_the_root_made_by_an_earlier_mount(env):
    """A bind source under root.path that exists only once an earlier mount is made: opened at mount
    time in the container's mount namespace (runc); a destination written with root.path in front
    is the path inside the root."""
    outer = env.mkdir("outer")
    os.mkdir(os.path.join(outer, "inner"))
    with open(os.path.join(outer, "inner", "f"), "w") as f:
        f.write("inner file\n")
    outs = []
    for tag in ("runc", "ours"):
        b = env.bundle(args=("/bin/sh", "-c", "cat /b/f; cat /c/f; ls -d /a/inner"))
        rootfs = os.path.realpath(b.rootfs)
        os.mkdir(os.path.join(rootfs, "c"))  # runc 1.1.5 strips the prefix too, but creates nothing there
        b.spec["mounts"] += [
            {"destination": "/a", "type": "bind", "source": outer, "options": ["rbind"]},
            {"destination": "/b", "type": "bind", "source": rootfs + "/a/inner", "options": ["rbind"]},
            {"destination": rootfs + "/c", "type": "bind", "source": outer + "/inner", "options": ["rbind"]},
        ]
        b.write()
        r = _run_runc(env, b) if tag == "runc" else _run_ours(env, b)
        outs.append(r)
        assert not os.path.exists(os.path.join(rootfs, rootfs.lstrip("/"))), "destination nested under the root path"
    theirs, ours = outs
    assert ours.rc == 0 and ours.stdout == "inner file\ninner file\n/a/inner\n", ours
    assert theirs.rc == 0 and theirs.stdout == ours.stdout, theirs



_IDMAP = {"uidMappings": [{"containerID": 1000, "hostID": 3000, "size": 1}],
          "gidMappings": [{"containerID": 2000, "hostID": 4000, "size": 1}]}


def _run_over_tmpfs(env, b, outer):
    """`run` in a private mount namespace of the test's where outer is a fresh tmpfs holding inner/f
    (1000:2000): a filesystem of known kind wherever the checkout lives (tmpfs has idmapped mounts since
    Linux 6.3; the probe below finds out)."""
    cid = env.new_id()
    script = ('mount -t tmpfs -o mode=755 tmpfs "$1" && mkdir "$1/inner" && echo inner file > "$1/inner/f" && '
              'chown -R 1000:2000 "$1/inner" && shift && exec "$@"')
    argv = ["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", outer,
            *env.rt.argv("run", "--bundle", b.path, cid)]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    from _util import Result
    return Result(argv, p.returncode, p.stdout, p.stderr)


def _tmpfs_idmap_supported(env, outer):
    """Does this kernel idmap a tmpfs? Asked of the runtime with a source outside the root (that path
    is stage-1's, tested in test_idmap.py): True, or False when it gives its clear error."""
    b = env.bundle(args=("/bin/stat", "-c", "%u:%g", "/p/inner/f"), mutate=lambda s: s["mounts"].append(
        {"destination": "/p", "type": "bind", "source": outer, "options": ["rbind"], **_IDMAP}))
    r = _run_over_tmpfs(env, b, outer)
    if r.rc == 0:
        assert r.stdout.strip() == "3000:4000", r  # on disk 1000:2000
        return True
    assert "does not support idmapped mounts" in r.stderr, r
    return False


@pytest.mark.parametrize("userns,opts", [(False, ["bind"]), (False, ["rbind", "ridmap"]), (True, ["bind", "idmap"])],
                         ids=["no-userns", "ridmap", "userns"])
def test_idmapped_source_inside_the_root_made_by_an_earlier_mount(env, userns, opts):
    """Item 11's last part: an idmapped bind whose source is under root.path and exists only once an
    earlier mount is made. runc (>= 1.2) opens such a source in the container's mount namespace when
    the mount's turn comes; its parent sets the mapping. Without a user namespace the mount's own
    uidMappings apply (1000 -> 3000; with rbind + ridmap on every mount of the cloned tree); with one,
    `idmap` alone takes the container's mapping, so the file shows its on-disk ids where a plain bind
    of the same directory shows the overflow ids."""
    outer = env.mkdir("idmap-outer")
    supported = _tmpfs_idmap_supported(env, outer)

    b = env.bundle(args=("/bin/sh", "-c", "stat -c '%u:%g' /b/f /a/inner/f; cat /b/f"))
    rootfs = os.path.realpath(b.rootfs)
    b.spec["mounts"].append({"destination": "/a", "type": "bind", "source": outer, "options": ["rbind"]})
    if userns:
        _userns(b.spec)
        b.spec["mounts"].append({"destination": "/b", "type": "bind", "source": rootfs + "/a/inner",
                                 "options": opts})
    else:
        b.spec["mounts"].append({"destination": "/b", "type": "bind", "source": rootfs + "/a/inner",
                                 "options": opts, **_IDMAP})
    b.write()
    if userns:
        subprocess.run(["chown", "-R", "200000:200000", b.rootfs], check=True)
    assert not os.path.exists(os.path.join(b.rootfs, "a", "inner")), "the source must not exist before /a"
    r = _run_over_tmpfs(env, b, outer)
    n = len(b.spec["mounts"]) - 1
    if not supported:
        assert r.rc != 0 and f"/mounts/{n}: cannot idmap the mount of" in r.stderr, r
        assert "does not support idmapped mounts" in r.stderr, r
        return
    assert r.rc == 0, r
    want = ["1000:2000", "65534:65534"] if userns else ["3000:4000", "1000:2000"]
    assert r.stdout.splitlines() == want + ["inner file"], r



def test_idmapped_source_inside_the_root_on_a_filesystem_without_idmap(env):
    """The mapping set by the runtime on a tree the init cloned: sysfs has no idmapped mounts, so the
    kernel's EINVAL becomes the same one-line error naming the mount as for any idmapped source, and
    nothing is left behind."""
    b = env.bundle(args=("true",))
    rootfs = os.path.realpath(b.rootfs)
    b.spec["mounts"] += [{"destination": "/a", "type": "bind", "source": "/sys/kernel", "options": ["rbind"]},
                         {"destination": "/b", "type": "bind", "source": rootfs + "/a/mm", "options": ["bind"],
                          **_IDMAP}]
    b.write()
    assert not os.path.exists(os.path.join(rootfs, "a", "mm"))
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = env.rt("create", "--bundle", b.path, cid)
    assert r.rc != 0
    msg = r.error_msg()
    n = len(b.spec["mounts"]) - 1
    assert f"/mounts/{n}: cannot idmap the mount of {rootfs}/a/mm on /b" in msg, msg
    assert "does not support idmapped mounts" in msg and "\n" not in msg.strip(), msg
    snap.assert_clean()


# -- 15. bind sources the container's root cannot reach (user namespace) -----------------------

def test_userns_bind_source_only_the_runtime_can_reach(env):
    private = env.mkdir("private", 0o700)  # root's, 0700: the container's root (host uid 200000) may not search it
    inner = os.path.join(private, "data")
    os.mkdir(inner)
    with open(os.path.join(inner, "f"), "w") as f:
        f.write("reached\n")
    os.chmod(os.path.join(inner, "f"), 0o644)

    def mut(s):
        _userns(s)
        s["mounts"].append({"destination": "/data", "type": "bind", "source": inner, "options": ["rbind", "ro"]})
    b = env.bundle(args=("/bin/sh", "-c", "cat /data/f; touch /data/g 2>/dev/null || echo ro"), mutate=mut)
    subprocess.run(["chown", "-R", "200000:200000", b.rootfs], check=True)
    r = _run_ours(env, b)
    assert r.rc == 0 and r.stdout.split() == ["reached", "ro"], r
