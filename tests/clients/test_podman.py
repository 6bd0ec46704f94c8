"""podman 4.3 (+ conmon 2.1) driving ociruntime, rootful, cgroupfs, in a private mount namespace.

The runtime is configured as ``[engine.runtimes] ociruntime`` (a logging wrapper named
``ociruntime``, listed in ``runtime_supports_json`` so conmon passes ``--log-format=json --log``).
Every container gets ``--cgroup-parent /ocirt-test-<tag>`` so that its cgroup
(``/<parent>/libpod-<ID>``) can be checked on the host and is known to be gone afterwards.
"""

import difflib
import os
import re
import time
import uuid

import pytest

from clients_env import (IMAGE, TRAP_LOOP, VIEW_SCRIPT, normalize_view, read_file, runtime_commands,
                         v1_cgroup_file, wait_for)
from ociruntime.testing.plugin import default_runtime_path

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

CMDS = runtime_commands(default_runtime_path() or "ociruntime")


def needs(cmd):
    return pytest.mark.xfail(cmd not in CMDS, strict=True, reason=f"needs {cmd}")


def name(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def start_detached(podman, *extra, cmd=TRAP_LOOP):
    """``podman run -d`` of a container whose PID 1 traps TERM/USR1 and loops; waits for its
    'ready' line in the logs. Returns the container name."""
    n = name()
    r = podman.podman_run("-d", "--name", n, *extra, IMAGE, "sh", "-c", cmd)
    assert r.ok, f"{r}\n--- runtime calls:\n{podman.calls_tail()}"
    podman.podman_wait_log(n, "ready")
    return n


def status(podman, n):
    return podman.podman_ok("inspect", "--format", "{{.State.Status}}", n).out.strip()


def runtime_calls(podman, mark, sub):
    """argv strings of the runtime calls since ``mark`` whose subcommand is ``sub``."""
    return [a for a in podman.calls_argv(mark) if f" {sub} " in f" {a} "]


# ------------------------------------------------------------------------------------ run

def test_run_rm_output_and_exit_code(podman):
    mark = podman.calls_mark()
    r = podman.podman_run("--rm", IMAGE, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
    assert r.rc == 3, r
    assert r.out == "to-stdout\n", r
    assert "to-stderr" in r.err, r
    calls = podman.calls_argv(mark)
    create = [a for a in calls if " create " in f" {a} "]
    assert create and create[0].startswith("--log-format=json --log "), calls
    assert runtime_calls(podman, mark, "start"), calls
    assert podman.podman_ok("ps", "-aq").out.strip() == ""


def test_run_interactive_stdin(podman):
    r = podman.podman_run("--rm", "-i", IMAGE, "sh", "-c", "read first; echo got:$first; wc -l",
                          input=b"hello\nl2\nl3\n")
    assert r.rc == 0, r
    assert r.out.split() == ["got:hello", "2"], r


def test_create_start(podman):
    n = name()
    mark = podman.calls_mark()
    r = podman.podman_create("--name", n, IMAGE, "sh", "-c", "echo started-$((40+2)); exit 7")
    assert r.ok, r
    assert status(podman, n) == "created"
    # podman create does not call the runtime yet; start does create+start
    r = podman.podman("start", "--attach", n)
    assert r.rc == 7, r
    assert "started-42" in r.out, r
    assert podman.podman_ok("wait", n).out.strip() == "7"
    assert "started-42" in podman.podman_ok("logs", n).out
    assert runtime_calls(podman, mark, "create") and runtime_calls(podman, mark, "start")
    podman.podman_ok("rm", n)


def test_missing_executable_is_reported(podman):
    """The create error travels through --log (JSON) to podman, which maps it to exit 127."""
    r = podman.podman_run("--rm", IMAGE, "/no/such/binary")
    assert r.rc in (126, 127), r
    assert "/no/such/binary" in r.err, r


# ------------------------------------------------------------------------------------ exec

def test_exec_output_exit_code_user_cwd_env(podman):
    n = start_detached(podman, "--env", "CTR_VAR=from-run")
    mark = podman.calls_mark()
    r = podman.podman("exec", n, "sh", "-c", "echo out-$CTR_VAR; echo err >&2; exit 5")
    assert r.rc == 5, r
    assert r.out == "out-from-run\n", r
    assert "err" in r.err, r
    execs = runtime_calls(podman, mark, "exec")
    assert execs and "--detach" in execs[0] and "--process" in execs[0], execs

    r = podman.podman("exec", "--user", "1000:1000", n, "id")
    assert r.ok and r.out.startswith("uid=1000(test) gid=1000(test)"), r
    r = podman.podman("exec", "--user", "test", n, "sh", "-c", "id -u; echo $HOME")
    assert r.ok and r.out.split() == ["1000", "/home/test"], r
    r = podman.podman("exec", "--workdir", "/tmp", n, "pwd")
    assert r.ok and r.out == "/tmp\n", r
    r = podman.podman("exec", "--env", "FOO=bar baz", n, "sh", "-c", 'echo "$FOO|$CTR_VAR"')
    assert r.ok and r.out == "bar baz|from-run\n", r
    r = podman.podman("exec", "-i", n, "sh", "-c", "read x; echo got:$x", input=b"via-stdin\n")
    assert r.ok and r.out == "got:via-stdin\n", r
    # the exec'd process is in the container's pid namespace and cgroup
    r = podman.podman("exec", n, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.ok and "trap" in r.out, r
    r = podman.podman("exec", n, "sh", "-c", "exit 0")
    assert r.ok, r


def test_exec_tty(podman):
    n = start_detached(podman)
    mark = podman.calls_mark()
    # the exec's terminal gets podman's size by way of conmon; under two busy loops `stty size` once ran
    # before it was set (0 0: "stty: standard input: No child processes"), so the shell asks until it is
    rc, out = podman.pty_run(["podman", "exec", "-t", n, "sh", "-c",
                              "tty; i=0; while [ $i -lt 100 ]; do s=$(stty size 2>/dev/null); "
                              "[ -n \"$s\" ] && [ \"$s\" != '0 0' ] && break; i=$((i+1)); sleep 0.1; done; "
                              "echo \"size $s\"; [ -t 0 ] && [ -t 1 ] && echo both-tty; exit 4"])
    text = out.decode(errors="replace")
    assert rc == 4, text
    assert "/dev/pts/" in text and "both-tty" in text, text
    assert "size 24 80" in text, text
    execs = runtime_calls(podman, mark, "exec")
    assert execs and "--console-socket" in execs[0] and "--tty" in execs[0], execs


def test_exec_into_stopped_container_fails(podman):
    n = name()
    podman.podman_run("--name", n, IMAGE, "true")
    r = podman.podman("exec", n, "true")
    assert r.rc != 0, r


# ------------------------------------------------------------------------------------ monitoring

def test_top(podman):
    n = start_detached(podman)
    r = podman.podman("top", n, "pid", "user", "args")
    assert r.ok, r
    lines = r.out.splitlines()
    assert lines[0].split()[:2] == ["PID", "USER"], r
    assert any(line.split()[0] == "1" and "trap" in line for line in lines[1:]), r


def test_logs(podman):
    n = start_detached(podman, cmd="echo line-one; echo line-two >&2; " + TRAP_LOOP)
    r = podman.podman_ok("logs", n)
    assert "line-one" in r.out and "line-two" in r.err + r.out, r


# ------------------------------------------------------------------------------------ signals

def test_kill_with_signal(podman):
    n = start_detached(podman)
    ctr_id = podman.podman_id(n)
    mark = podman.calls_mark()
    podman.podman_ok("kill", "--signal", "USR1", n)
    podman.podman_wait_log(n, "got-usr1")
    assert f"kill {ctr_id} 10" in runtime_calls(podman, mark, "kill"), podman.calls_since(mark)
    assert status(podman, n) == "running"
    podman.podman_ok("kill", n)  # SIGKILL
    wait_for(lambda: status(podman, n) == "exited", what="exited after podman kill")
    assert podman.podman_ok("inspect", "--format", "{{.State.ExitCode}}", n).out.strip() == "137"


def test_stop(podman):
    n = start_detached(podman)
    mark = podman.calls_mark()
    t0 = time.monotonic()
    r = podman.podman("stop", "-t", "20", n)
    took = time.monotonic() - t0
    assert r.ok, r
    assert took < 10, f"stop took {took:.1f}s: SIGTERM did not reach the trap"
    assert status(podman, n) == "exited"
    assert podman.podman_ok("inspect", "--format", "{{.State.ExitCode}}", n).out.strip() == "143"
    kills = runtime_calls(podman, mark, "kill")
    assert kills and kills[0].endswith(" 15"), kills
    podman.podman_wait_log(n, "got-term")


def test_restart(podman):
    n = start_detached(podman)
    pid1 = podman.podman_inspect(n)["State"]["Pid"]
    r = podman.podman("restart", "-t", "10", n)
    assert r.ok, r
    wait_for(lambda: podman.podman("logs", n).out.count("ready") == 2, what="second 'ready'")
    st = podman.podman_inspect(n)["State"]
    assert st["Status"] == "running" and st["Pid"] not in (0, pid1), st
    r = podman.podman("exec", n, "echo", "alive")
    assert r.ok and r.out == "alive\n", r


def test_rm(podman):
    n = start_detached(podman)
    ctr_id = podman.podman_id(n)
    cg = podman.podman_cgroup(n)
    assert os.path.isdir(v1_cgroup_file("memory", cg, "")), cg
    mark = podman.calls_mark()
    r = podman.podman("rm", "-f", "-t", "0", n)
    assert r.ok, r
    assert podman.podman("inspect", n).rc != 0
    deletes = runtime_calls(podman, mark, "delete")
    assert any(a.startswith("delete --force") and a.endswith(ctr_id) for a in deletes), deletes
    assert not os.path.exists(podman.p("run", "ociruntime", ctr_id))
    assert not os.path.isdir(v1_cgroup_file("memory", cg, "")), cg


def test_stop_pid_host_uses_kill_all(podman):
    """Without its own PID namespace podman stops a container with ``kill --all ID 15``."""
    n = start_detached(podman, "--pid", "host")
    ctr_id = podman.podman_id(n)
    mark = podman.calls_mark()
    t0 = time.monotonic()
    r = podman.podman("stop", "-t", "20", n)
    assert r.ok, r
    assert time.monotonic() - t0 < 10
    kills = runtime_calls(podman, mark, "kill")
    assert f"kill --all {ctr_id} 15" in kills, podman.calls_since(mark)
    assert status(podman, n) == "exited"


def test_join_namespaces_of_another_container(podman):
    """``--pid/--ipc/--uts/--network container:A``: the runtime joins A's namespaces by
    /proc/<pid>/ns paths (what CRI does for every pod container)."""
    a = start_detached(podman)
    pid = podman.podman_inspect(a)["State"]["Pid"]
    want = [os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("pid", "ipc", "uts", "net")]
    r = podman.podman_run("--rm", "--pid", f"container:{a}", "--ipc", f"container:{a}",
                          "--uts", f"container:{a}", "--network", f"container:{a}", IMAGE, "sh", "-c",
                          "for n in pid ipc uts net; do readlink /proc/self/ns/$n; done; "
                          "tr '\\0' ' ' < /proc/1/cmdline")
    assert r.ok, r
    lines = r.out.splitlines()
    assert lines[:4] == want, (lines, want)
    assert "trap" in lines[4], r


def test_pod(podman):
    """A pod: the infra (catatonit pause) container is created first, the app container joins
    its ipc/net/uts namespaces, and the pod cgroup holds both."""
    pod = name("pod")
    r = podman.podman("pod", "create", "--name", pod, "--cgroup-parent", "/" + podman.cg_parent)
    assert r.ok, r
    try:
        podman.podman_ok("pod", "start", pod)
        infra = podman.podman_ok("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").out.strip()
        ipid = podman.podman_inspect(infra)["State"]["Pid"]
        want = [os.readlink(f"/proc/{ipid}/ns/{ns}") for ns in ("ipc", "uts", "net")]
        r = podman.podman("run", "--rm", "--pod", pod, IMAGE, "sh", "-c",
                          "for n in ipc uts net; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup")
        assert r.ok, r
        lines = r.out.splitlines()
        assert lines[:3] == want, (lines, want)
        pod_cg = podman.podman_ok("pod", "inspect", pod, "--format", "{{.CgroupPath}}").out.strip()
        assert any(line.split(":", 2)[2].startswith(pod_cg + "/") for line in lines[3:]), (pod_cg, r.out)
    finally:
        r = podman.podman("pod", "rm", "-f", "-t", "0", pod)
    assert r.ok, r


def test_preserve_fds(podman):
    """``podman run --preserve-fds 1``: conmon passes ``--preserve-fds 1`` to create and fd 3
    reaches the container process."""
    f = podman.p("shared", name("fd3"))
    with open(f, "w") as fh:
        fh.write("through-fd-3\n")
    mark = podman.calls_mark()
    r = podman.run(["sh", "-c", f"exec 3<{f}; exec podman run --rm --cgroup-parent /{podman.cg_parent} "
                                f"--preserve-fds 1 {IMAGE} sh -c 'cat <&3'"])
    assert r.ok, r
    assert r.out == "through-fd-3\n", r
    creates = runtime_calls(podman, mark, "create")
    assert creates and "--preserve-fds 1" in creates[0], creates


def test_exec_error_texts_match_runc(podman):
    """podman shows the runtime's --log error for a failing exec; the text should be runc's."""
    texts = {}
    for rt in (RUNC, podman.wrapper):
        n = start_detached_with(podman, rt)
        try:
            got = []
            for args in (["-w", "/nonexist", n, "pwd"], [n, "/etc/passwd"], [n, "/no/such"]):
                r = podman.podman("exec", *args)
                got.append((r.rc, r.err.replace(rt, "<RUNTIME>")))
            texts["runc" if rt == RUNC else "ociruntime"] = got
        finally:
            podman.podman("rm", "-f", "-t", "0", n)
    assert texts["ociruntime"] == texts["runc"]


def start_detached_with(podman, runtime):
    n = name()
    podman.podman_ok("--runtime", runtime, "run", "-d", "--name", n, "--cgroup-parent", "/" + podman.cg_parent,
                     IMAGE, "sh", "-c", TRAP_LOOP)
    podman.podman_wait_log(n, "ready")
    return n


# ------------------------------------------------------------------------------------ cgroups

@needs("pause")
def test_pause_unpause(podman):
    n = start_detached(podman)
    cg = podman.podman_cgroup(n)
    freezer = v1_cgroup_file("freezer", cg, "freezer.state")
    r = podman.podman("pause", n)
    assert r.ok, f"{r}\n{podman.calls_tail(2000)}"
    assert status(podman, n) == "paused"
    assert read_file(freezer, "").strip() == "FROZEN"
    r = podman.podman("unpause", n)
    assert r.ok, r
    assert status(podman, n) == "running"
    assert read_file(freezer, "").strip() == "THAWED"
    r = podman.podman("exec", n, "echo", "thawed")
    assert r.ok and r.out == "thawed\n", r


@needs("update")
def test_update_memory(podman):
    n = start_detached(podman, "--memory", "96m")
    cg = podman.podman_cgroup(n)
    limit = v1_cgroup_file("memory", cg, "memory.limit_in_bytes")
    assert read_file(limit, "").strip() == str(96 << 20)
    mark = podman.calls_mark()
    r = podman.podman("update", "--memory", "64m", n)
    assert r.ok, f"{r}\n{podman.calls_since(mark)}"
    assert read_file(limit, "").strip() == str(64 << 20)
    assert any(a.startswith("update --resources=") for a in runtime_calls(podman, mark, "update"))
    r = podman.podman("exec", n, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if r.ok:  # the container sees its own memory cgroup (cgroupns or a bind of its subtree)
        assert r.out.strip() == str(64 << 20), r


@needs("update")
def test_memory_and_pids_limit_in_cgroup(podman):
    n = start_detached(podman, "--memory", "48m", "--pids-limit", "77")
    cg = podman.podman_cgroup(n)
    pid = podman.podman_inspect(n)["State"]["Pid"]
    assert read_file(v1_cgroup_file("memory", cg, "memory.limit_in_bytes"), "").strip() == str(48 << 20)
    assert read_file(v1_cgroup_file("pids", cg, "pids.max"), "").strip() == "77"
    for ctrl in ("memory", "pids", "freezer", "cpu"):
        procs = read_file(v1_cgroup_file(ctrl, cg, "cgroup.procs"), "").split()
        assert str(pid) in procs, (ctrl, procs)
    assert podman.podman_inspect(n)["HostConfig"]["PidsLimit"] == 77


# ------------------------------------------------------------------------------------ config

def test_read_only(podman):
    """--read-only without podman's extra tmpfs mounts (see test_read_only_default_tmpfs)."""
    r = podman.podman_run("--rm", "--read-only", "--read-only-tmpfs=false", IMAGE, "sh", "-c",
                          "touch /rootfile 2>&1; echo rc=$?; touch /dev/shm/x && echo shm-ok; "
                          "awk '$2 == \"/\" {print $4}' /proc/mounts")
    assert r.ok, r
    assert "Read-only file system" in r.out and "rc=1" in r.out, r
    assert "shm-ok" in r.out, r
    assert r.out.strip().splitlines()[-1].split(",")[0] == "ro", r


def test_read_only_default_tmpfs(podman):
    """--read-only as podman does it by default: tmpfs on /tmp, /var/tmp and /run (tmpcopyup)."""
    r = podman.podman_run("--rm", "--read-only", IMAGE, "sh", "-c",
                          "touch /rootfile 2>&1; echo rc=$?; touch /tmp/x && echo tmp-ok; "
                          "awk '$2 == \"/\" {print $4}' /proc/mounts")
    assert r.ok, r
    assert "Read-only file system" in r.out and "rc=1" in r.out, r
    assert "tmp-ok" in r.out, r
    assert r.out.strip().splitlines()[-1].split(",")[0] == "ro", r


def test_tmpfs_copyup(podman):
    """``--tmpfs /etc``: a tmpfs that starts with the image's /etc content (tmpcopyup)."""
    r = podman.podman_run("--rm", "--tmpfs", "/etc:size=1m", IMAGE, "sh", "-c",
                          "grep ^test: /etc/passwd; awk '$2 == \"/etc\" {print $3}' /proc/mounts")
    assert r.ok, r
    assert r.out.splitlines() == ["test:x:1000:1000:test user:/home/test:/bin/sh", "tmpfs"], r


def test_user(podman):
    r = podman.podman_run("--rm", "--user", "1000:1000", IMAGE, "sh", "-c",
                          "id; touch /home/test/f && echo home-ok; touch /root/f 2>/dev/null || echo root-denied")
    assert r.ok, r
    lines = r.out.splitlines()
    assert lines[0].startswith("uid=1000(test) gid=1000(test)"), r
    assert lines[1:] == ["home-ok", "root-denied"], r
    r = podman.podman_run("--rm", "--user", "test", IMAGE, "sh", "-c", "id -u; id -g; echo $HOME")
    assert r.ok and r.out.split() == ["1000", "1000", "/home/test"], r


def test_run_tty(podman):
    mark = podman.calls_mark()
    rc, out = podman.pty_run(["podman", "run", "--rm", "-t", "--cgroup-parent", "/" + podman.cg_parent,
                              IMAGE, "sh", "-c",
                              "tty; stty size; [ -t 0 ] && echo stdin-tty; ls -l /dev/console; exit 6"])
    text = out.decode(errors="replace")
    assert rc == 6, text
    assert "/dev/pts/0" in text and "stdin-tty" in text, text
    assert "24 80" in text, text
    creates = runtime_calls(podman, mark, "create")
    assert creates and "--console-socket" in creates[0], creates


def test_run_interactive_tty(podman):
    rc, out = podman.pty_run(
        ["podman", "run", "--rm", "-it", "--cgroup-parent", "/" + podman.cg_parent, IMAGE, "sh"],
        script=[("#", b"echo answer-$((6*7))\r"), ("answer-42", b"exit 5\r")])
    text = out.decode(errors="replace")
    assert rc == 5, text
    assert "answer-42" in text, text


def test_bind_mount_volume(podman):
    vol = podman.p("shared", name("vol"))
    os.makedirs(vol)
    with open(os.path.join(vol, "in"), "w") as f:
        f.write("from-host\n")
    ro = podman.p("shared", name("ro"))
    os.makedirs(ro)
    r = podman.podman_run("--rm", "-v", f"{vol}:/data", "-v", f"{ro}:/ro:ro", IMAGE, "sh", "-c",
                          "cat /data/in; echo from-container > /data/out; "
                          "touch /ro/x 2>&1 || echo ro-denied")
    assert r.ok, r
    assert "from-host" in r.out and "ro-denied" in r.out, r
    assert read_file(os.path.join(vol, "out")) == "from-container\n"
    assert not os.path.exists(os.path.join(ro, "x"))


# ------------------------------------------------------------------------------------ runc diff

RUNC = "/usr/sbin/runc"

VIEW_VARIANTS = {
    "default": [],
    "hardened": ["--user", "1000:1000", "--read-only", "--read-only-tmpfs=false",
                 "--cap-drop", "all", "--cap-add", "NET_BIND_SERVICE",
                 "--security-opt", "no-new-privileges", "--memory", "64m", "--pids-limit", "99",
                 "--ulimit", "nofile=512:512", "--ulimit", "nproc=2048:2048", "--workdir", "/tmp", "--env", "X=1", "--hostname", "hh",
                 "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
                 "--oom-score-adj", "100", "--group-add", "100"],
    "host-namespaces": ["--pid", "host", "--ipc", "host", "--uts", "host", "--network", "host"],
    "privileged": ["--privileged"],
    "userns": ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"],
    "cgroupns-private": ["--cgroupns", "private"],
    "devices": ["--device", "/dev/zero:/dev/xzero:r", "--device", "/dev/null:/dev/xnull:rw"],
    "init": ["--init"],
    "ipc-shareable": ["--ipc", "shareable", "--shm-size", "2m"],
    "read-only-tmpfs": ["--read-only", "--tmpfs", "/scratch:size=1m"],
}
VIEW_MARKS = {}

# Known, accepted differences (documented, not bugs for any client):
# * userns: runc mounts /dev/mqueue while its fsgid is still unmapped, so the mqueue root shows
#   gid 65534 (overflow gid); ociruntime mounts it as the container's root (gid 0). Mode 1777 either way.
# * read-only-tmpfs: podman's /run tmpfs (no mode= of its own) takes the mode of the directory it
#   covers as a mode= option, as runc >= 1.2 does; runc 1.1.5 chmods it afterwards (same mode, no option).
KNOWN_DIFFS = {
    "userns": [(r"(?m)^drwxrwxrwt +2 0 +(0|65534) +40 <DATE> mqueue\n", "")],
    "read-only-tmpfs": [(r"(?m)^(\s*/ /run \S+ - tmpfs tmpfs rw)(,mode=755)?$", r"\1")],
}


def _same_device_flags(view):
    """Deliberate difference (README "Security notes"): in a user namespace ociruntime binds the host's
    device nodes nosuid,noexec (as crun; runc 1.1.5 does not; masked files are clones of that /dev/null).
    Those two options are dropped from the devtmpfs mount lines of both views."""
    def fix(m):
        opts = ",".join(o for o in m.group(2).split(",") if o not in ("nosuid", "noexec"))
        return m.group(1) + opts + m.group(3)
    return re.sub(r"(?m)^(\s*\S+ \S+ )(\S+)( - devtmpfs )", fix, view)


def assert_same_view(views):
    (ra, a), (rb, b) = views.items()
    if a != b:
        diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), ra, rb, lineterm="", n=1))
        raise AssertionError(f"the container sees something else under {rb} than under {ra}:\n{diff}")
    assert "== end" in a, a


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc (the reference) is not installed")
@pytest.mark.parametrize("variant", [pytest.param(v, marks=VIEW_MARKS.get(v, ())) for v in VIEW_VARIANTS])
def test_run_view_matches_runc(podman, variant):
    """The same ``podman run`` under runc and under ociruntime: identical view from inside
    (ids, caps, seccomp, rlimits, cgroups, mounts, /dev, env, namespaces, fds, masks)."""
    views = {}
    for rt in (RUNC, podman.wrapper):
        n = name()
        r = podman.podman("--runtime", rt, "run", "--name", n, "--cgroup-parent", "/" + podman.cg_parent,
                          *VIEW_VARIANTS[variant], IMAGE, "sh", "-c", VIEW_SCRIPT)
        cid = podman.podman_id(n)
        podman.podman_rm(n)
        assert r.ok, r
        view = normalize_view(r.out + r.err, [cid])
        for pattern, repl in KNOWN_DIFFS.get(variant, ()):
            view, n = re.subn(pattern, repl, view)
            assert n == 1, f"known difference {pattern!r} not found in:\n{view}"
        if variant == "userns":
            view = _same_device_flags(view)
        views["runc" if rt == RUNC else "ociruntime"] = view
    assert_same_view(views)


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc (the reference) is not installed")
@pytest.mark.parametrize("variant", ["default", "user-cwd-env"])
def test_exec_view_matches_runc(podman, variant):
    extra = [] if variant == "default" else ["--user", "1000:100", "--workdir", "/home/test", "--env", "E=1"]
    views = {}
    for rt in (RUNC, podman.wrapper):
        n = name()
        r = podman.podman("--runtime", rt, "run", "-d", "--name", n, "--cgroup-parent", "/" + podman.cg_parent,
                          "--memory", "80m", IMAGE, "sh", "-c", TRAP_LOOP)
        assert r.ok, r
        cid = podman.podman_id(n)
        try:
            podman.podman_wait_log(n, "ready")
            r = podman.podman("exec", *extra, n, "sh", "-c", VIEW_SCRIPT)
            assert r.ok, r
        finally:
            podman.podman("rm", "-f", "-t", "0", n)
        views["runc" if rt == RUNC else "ociruntime"] = normalize_view(r.out + r.err, [cid])
    assert_same_view(views)


CGROUP_FILES = [
    ("cpu", "cpu.shares"), ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
    ("cpuset", "cpuset.cpus"), ("cpuset", "cpuset.mems"),
    ("memory", "memory.limit_in_bytes"), ("memory", "memory.memsw.limit_in_bytes"),
    ("memory", "memory.soft_limit_in_bytes"), ("memory", "memory.swappiness"),
    ("memory", "memory.oom_control"), ("pids", "pids.max"),
    ("blkio", "blkio.throttle.read_bps_device"), ("blkio", "blkio.throttle.write_iops_device"),
    ("devices", "devices.list"),
]


def cgroup_values(rel):
    out = {}
    for ctrl, f in CGROUP_FILES:
        txt = read_file(v1_cgroup_file(ctrl, rel, f))
        if txt is not None:
            # oom_control's under_oom/oom_kill counters are not configuration
            if f == "memory.oom_control":
                txt = "\n".join(line for line in txt.splitlines() if line.startswith("oom_kill_disable"))
            out[f"{ctrl}/{f}"] = txt.strip()
    return out


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc (the reference) is not installed")
@needs("update")
def test_resources_and_update_match_runc(podman):
    """Resource flags at run and at ``podman update``: the container's cgroup files are the same
    under runc and ociruntime (cgroupfs, v1 controllers)."""
    run_flags = ["--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--memory", "64m",
                 "--memory-swap", "128m", "--memory-reservation", "32m", "--memory-swappiness", "10",
                 "--oom-kill-disable", "--pids-limit", "55"]
    if os.path.exists("/dev/vda"):
        run_flags += ["--device-read-bps", "/dev/vda:1mb", "--device-write-iops", "/dev/vda:100"]
    upd_flags = ["--cpus", "1", "--cpu-shares", "256", "--memory", "96m", "--memory-swap", "192m",
                 "--memory-reservation", "48m"]
    seen = {}
    for rt in (RUNC, podman.wrapper):
        n = name()
        r = podman.podman("--runtime", rt, "run", "-d", "--name", n, "--cgroup-parent", "/" + podman.cg_parent,
                          *run_flags, IMAGE, "sh", "-c", TRAP_LOOP)
        assert r.ok, r
        try:
            cg = podman.podman_cgroup(n)
            at_run = cgroup_values(cg)
            r = podman.podman("update", *upd_flags, n)
            assert r.ok, f"{r}\n{podman.calls_tail(3000)}"
            after = cgroup_values(cg)
        finally:
            podman.podman("rm", "-f", "-t", "0", n)
        seen["runc" if rt == RUNC else "ociruntime"] = (at_run, after)
    for i, when in enumerate(("after run", "after update")):
        a, b = seen["runc"][i], seen["ociruntime"][i]
        diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        assert not diff, f"cgroup files differ {when} (runc, ociruntime): {diff}"
    assert seen["ociruntime"][1]["memory/memory.limit_in_bytes"] == str(96 << 20)
