"""runc create.bats "detect fd leak as comprehensively as possible", for ociruntime.

After `create`, the waiting init may hold only fds 0, 1, 2, the exec fifo (<root>/<id>/exec.fifo) and
the fds the caller asked to keep with --preserve-fds N (3 .. 3+N-1). After `start`, the process the
user asked for sees only 0, 1, 2 and the preserved fds (CVE-2024-21626). The caller's other fds, even
inheritable ones, never reach the container, and the runtime's own (sync socket, plan memfd, state
dir, cgroup dirs, logging, netlink) never either.
"""

import os
import socket

import pytest

from _util import own_fd_of_ls, parse_ls_fds, place_fds, proc_fds, wait_for
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(30)]


class CallerFds:
    """Real fds of several kinds, placed at 3..3+n-1 in the runtime process (and, with `leak`, more
    inheritable ones at higher numbers that the runtime is not asked to keep)."""

    def __init__(self, env, n, leak=()):
        self.env = env
        self.paths = []
        self.src = []
        self.kinds = []
        self.leak = list(leak)
        self._keep = []
        for i in range(n + len(self.leak)):
            kind = ("file", "pipe", "socket", "dir")[i % 4]
            if kind == "file":
                p = os.path.join(env.tmp, f"preserved-{i}")
                fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
                self.paths.append(p)
            elif kind == "pipe":
                r, w = os.pipe()
                self._keep.append(r)
                fd = w
                self.paths.append(None)
            elif kind == "socket":
                a, b = socket.socketpair()
                self._keep += [a, b]
                fd = a.fileno()
                self.paths.append(None)
            else:
                p = env.outside_dir("leakdir-")
                fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
                self.paths.append(p)
            self.src.append(fd)
            self.kinds.append(kind)
        self.n = n
        # targets: the kept ones at 3.., the leaked ones at the requested numbers
        self.targets = [3 + i for i in range(n)] + self.leak

    @property
    def preexec(self):
        return place_fds(dict(zip(self.targets, self.src)))

    def close(self):
        for fd in self.src:
            try:
                os.close(fd)
            except OSError:
                pass
        for k in self._keep:
            try:
                k.close() if hasattr(k, "close") else os.close(k)
            except OSError:
                pass


def _allowed_init_fds(cid, fds, n):
    bad = {}
    fifo = [k for k, v in fds.items() if v.endswith(f"/{cid}/exec.fifo")]
    assert len(fifo) == 1, f"the init must hold the exec fifo exactly once: {fds}"
    for k, v in fds.items():
        if k in (0, 1, 2) or 3 <= k < 3 + n or k == fifo[0]:
            continue
        bad[k] = v
    return bad


@pytest.mark.parametrize("n", [0, 1, 3, 6])
def test_create_init_holds_only_allowed_fds(env, n):
    caller = CallerFds(env, n)
    b = env.bundle()
    cid = env.new_id()
    try:
        env.rt("create", "--bundle", b.path, "--preserve-fds", n, cid, close_fds=False,
               preexec_fn=caller.preexec).check()
    finally:
        caller.close()
    init = env.rt.init_pid(cid)
    fds = proc_fds(init)
    assert not _allowed_init_fds(cid, fds, n), f"fd leak into the waiting init: {fds}"
    for i in range(n):
        if caller.paths[i]:
            assert fds[3 + i] == caller.paths[i], fds
        else:
            assert fds[3 + i].startswith(("pipe:", "socket:")), fds
    # the fifo is not writable through the init's fd (it only waits for `start`)
    fifo_fd = [k for k, v in fds.items() if v.endswith("exec.fifo")][0]
    with open(f"/proc/{init}/fdinfo/{fifo_fd}") as f:
        flags = int(dict(line.split(":\t") for line in f.read().splitlines() if ":\t" in line)["flags"], 8)
    assert flags & os.O_ACCMODE != os.O_WRONLY and flags & os.O_ACCMODE != os.O_RDWR


@pytest.mark.parametrize("n", [0, 2, 5])
def test_started_process_sees_only_stdio_and_preserved(env, n):
    caller = CallerFds(env, n)
    script = "ls -l /proc/self/fd/"
    if n:
        script = "echo from-container >&3; " + script
    b = env.bundle(args=("sh", "-c", f"{script}"))
    out = os.path.join(env.tmp, "out")
    cid = env.new_id()
    try:
        with open(out, "wb") as f:
            env.rt("create", "--bundle", b.path, "--preserve-fds", n, cid, stdout=f, close_fds=False,
                   preexec_fn=caller.preexec).check()
    finally:
        caller.close()
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    text = open(out).read()
    fds = parse_ls_fds(text)
    own = own_fd_of_ls(fds)
    # sh itself may keep nothing open; ls's own directory fd is the one extra
    extra = set(fds) - {0, 1, 2} - set(range(3, 3 + n)) - set(own)
    assert not extra, f"fd leak into the container process: {fds}\n{text}"
    assert len(own) <= 1, text
    assert set(range(3, 3 + n)) <= set(fds), f"preserved fds missing: {fds}"
    if n:
        assert open(caller.paths[0]).read() == "from-container\n"


def test_exec_process_without_shell(env):
    """The exec'd binary itself (no shell in between): ls is pid 1 of the container."""
    b = env.bundle(args=("ls", "-l", "/proc/self/fd/"))
    caller = CallerFds(env, 0, leak=[3, 4, 7, 10, 64, 255])
    out = os.path.join(env.tmp, "out")
    cid = env.new_id()
    try:
        with open(out, "wb") as f:
            env.rt("create", "--bundle", b.path, cid, stdout=f, close_fds=False,
                   preexec_fn=caller.preexec).check()
    finally:
        caller.close()
    init = env.rt.init_pid(cid)
    assert not _allowed_init_fds(cid, proc_fds(init), 0)
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    text = open(out).read()
    fds = parse_ls_fds(text)
    assert set(fds) - {0, 1, 2} == set(own_fd_of_ls(fds)) and len(own_fd_of_ls(fds)) == 1, text
    for p in caller.paths:
        if p:
            assert p not in text, text


def test_caller_leaks_many_inheritable_fds(env):
    """The caller leaks inheritable fds of every kind at many numbers; none reaches the init."""
    caller = CallerFds(env, 2, leak=[5, 6, 8, 9, 11, 20, 33, 100, 200, 511])
    b = env.bundle()
    cid = env.new_id()
    try:
        env.rt("create", "--bundle", b.path, "--preserve-fds", 2, cid, close_fds=False,
               preexec_fn=caller.preexec).check()
    finally:
        caller.close()
    fds = proc_fds(env.rt.init_pid(cid))
    assert not _allowed_init_fds(cid, fds, 2), f"fd leak into the waiting init: {fds}"
    leaked_paths = [p for p in caller.paths[2:] if p]
    assert not set(leaked_paths) & set(fds.values()), fds


def test_create_with_log_file_does_not_leak_it(env):
    """--log opens a file in the runtime: it must not reach the init."""
    log = os.path.join(env.tmp, "log.json")
    b = env.bundle()
    cid = env.new_id()
    env.rt("--log", log, "--log-format", "json", "create", "--bundle", b.path, cid).check()
    fds = proc_fds(env.rt.init_pid(cid))
    assert log not in fds.values(), fds
    assert not _allowed_init_fds(cid, fds, 0), fds


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer", "poststart"])
def test_runtime_hooks_see_only_stdio(env, request, kind):
    """Hooks get the state on stdin and nothing else of the runtime's (nor the container's preserved fds)."""
    outdir = env.mkdir("hookout")
    listing = os.path.join(outdir, f"{kind}.txt")
    b = env.bundle(args=("true",))
    b.spec["hooks"] = {kind: [{"path": "/bin/sh", "args": ["sh", "-c", f"ls -l /proc/self/fd/ > {listing}"]}]}
    b.write()
    caller = CallerFds(env, 2, leak=[9, 40])
    cid = env.new_id()
    try:
        env.rt("create", "--bundle", b.path, "--preserve-fds", 2, cid, close_fds=False,
               preexec_fn=caller.preexec).check()
    finally:
        caller.close()
    if kind == "poststart":
        env.rt("start", cid).check()
    assert wait_for(lambda: os.path.exists(listing))
    fds = parse_ls_fds(open(listing).read())
    extra = set(fds) - {0, 1, 2} - set(own_fd_of_ls(fds))
    assert not extra, f"fds leaked into the {kind} hook: {fds}"


def test_start_container_hook_sees_only_stdio(env):
    outdir = env.mkdir("hookout", 0o777)
    b = env.bundle(args=("true",))
    b.spec["mounts"].append({"destination": "/out", "type": "bind", "source": outdir, "options": ["rbind", "rw"]})
    b.spec["hooks"] = {"startContainer": [{"path": "/bin/sh",
                                           "args": ["sh", "-c", "ls -l /proc/self/fd/ > /out/sc.txt"]}]}
    b.write()
    cid = env.created(b)
    env.rt("start", cid).check()
    listing = os.path.join(outdir, "sc.txt")
    assert env.wait_stopped(cid) and os.path.exists(listing)
    fds = parse_ls_fds(open(listing).read())
    extra = set(fds) - {0, 1, 2} - set(own_fd_of_ls(fds))
    assert not extra, f"fds leaked into the startContainer hook: {fds}"
