"""The runc command-line contract (/work/shared/docs/cli-contract.md) against real containers.

Needs root. Every test gets a private --root and unique container ids; a finalizer force-deletes
every container the test created (and SIGKILLs, through a pidfd, an init that survived), even when
the test fails. Bundles: a busybox rootfs (ociruntime.demo.busybox_rootfs, built once per module)
and ociruntime.misc.default_spec() with terminal false.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest

from ociruntime.demo import busybox_rootfs
from ociruntime.misc import default_spec

CLI = os.environ.get("OCI_RUNTIME") or os.path.join(os.path.dirname(sys.executable), "ociruntime")
STATE_KEYS = ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "annotations", "owner"]
CREATED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
TEXT_ERR_RE = re.compile(r'^time="[^"]+" level=error msg="(.*)"$')

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="/bin/busybox missing"),
    pytest.mark.skipif(not os.access(CLI, os.X_OK), reason=f"{CLI} not installed (make build)"),
]


class Result:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    @property
    def text(self):
        return self.out.decode(errors="replace")

    @property
    def errtext(self):
        return self.err.decode(errors="replace")

    def __repr__(self):
        return f"{' '.join(self.args)} -> {self.rc}\nstdout: {self.out!r}\nstderr: {self.err!r}"


class Runtime:
    """`ociruntime --root <private> …`; stdio go to files, because a created container inherits them."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.root = os.path.join(tmp, "state")
        self.ids = []
        self.n = 0

    def new_id(self, prefix="cc"):
        cid = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args, root=True, glob=(), cwd=None, timeout=60):
        self.n += 1
        argv = [CLI, *(("--root", self.root) if root else ()), *glob, *args]
        o = os.path.join(self.tmp, f"out.{self.n}")
        e = os.path.join(self.tmp, f"err.{self.n}")
        with open(o, "wb") as fo, open(e, "wb") as fe:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=cwd, timeout=timeout)
        with open(o, "rb") as fo, open(e, "rb") as fe:
            return Result(argv, p.returncode, fo.read(), fe.read())

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.rc == 0, r
        return r

    def state(self, cid):
        r = self.ok("state", cid)
        return json.loads(r.out)

    def wait_status(self, cid, want, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == want:
                return st
            assert time.monotonic() < deadline, f"{cid} still {st['status']}, wanted {want}"
            time.sleep(0.02)

    def cleanup(self):
        for cid in self.ids:
            pidfd = None
            r = self("state", cid)
            if r.rc == 0:
                pid = json.loads(r.out).get("pid") or 0
                if pid > 0:
                    try:
                        pidfd = os.pidfd_open(pid)
                    except OSError:
                        pidfd = None
            self("delete", "--force", cid)
            if pidfd is not None:
                try:
                    if not wait_pidfd(pidfd, 5):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except OSError:
                    pass
                os.close(pidfd)


def wait_pidfd(pidfd, timeout):
    """True when the process behind pidfd has exited within timeout seconds."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def process_exits(pid, timeout=10):
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return wait_pidfd(fd, timeout)
    finally:
        os.close(fd)


def logged(err):
    """msg of every text-format log line on stderr."""
    out = []
    for line in err.decode(errors="replace").splitlines():
        m = TEXT_ERR_RE.match(line)
        assert m, f"not a log line: {line!r}"
        out.append(m.group(1).replace('\\"', '"'))
    return out


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-contract-rootfs")
    os.chmod(d, 0o755)
    busybox_rootfs(str(d / "rootfs"))
    return str(d / "rootfs")


@pytest.fixture
def rt(tmp_path, request):
    r = Runtime(str(tmp_path))
    request.addfinalizer(r.cleanup)
    return r


@pytest.fixture
def make_bundle(tmp_path, rootfs):
    n = [0]

    def make(args=("sleep", "600"), edit=None, name=None):
        n[0] += 1
        b = tmp_path / (name or f"bundle{n[0]}")
        b.mkdir()
        s = default_spec()
        s["process"]["terminal"] = False
        s["process"]["args"] = list(args)
        s["root"]["path"] = rootfs
        s["hostname"] = "contract"
        if edit:
            edit(s)
        (b / "config.json").write_text(json.dumps(s, indent="\t"))
        return str(b)
    return make


def create(rt, bundle, cid=None, *extra):
    cid = cid or rt.new_id()
    r = rt("create", "--bundle", bundle, *extra, cid)
    assert r.rc == 0, r
    return cid


def running(rt, make_bundle, args=("sleep", "600")):
    cid = create(rt, make_bundle(args))
    rt.ok("start", cid)
    rt.wait_status(cid, "running")
    return cid


def stopped(rt, make_bundle):
    cid = running(rt, make_bundle)
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    return cid


# === state (§6.4) ================================================================================

def test_state_exact_output(rt, make_bundle, rootfs):
    def edit(s):
        s["annotations"] = {"org.example.b": "2", "io.kubernetes.cri.container-type": "container"}
    bundle = make_bundle(edit=edit)
    cid = rt.new_id()
    pidfile = os.path.join(rt.tmp, "init.pid")
    before = datetime.now(timezone.utc)
    create(rt, bundle, cid, "--pid-file", pidfile)
    r = rt("state", cid)
    assert r.rc == 0, r
    assert r.err == b"", "state must write nothing to stderr (podman closes it, go-runc combines it)"
    assert not r.out.endswith(b"\n"), "no trailing newline"
    pairs = json.loads(r.out, object_pairs_hook=lambda kv: kv)
    assert [k for k, _ in pairs] == STATE_KEYS
    st = json.loads(r.out)
    assert r.out == json.dumps(st, indent=2).encode(), "2-space MarshalIndent layout"
    assert st["ociVersion"] == "1.3.0"
    assert st["id"] == cid
    assert st["status"] == "created"
    assert isinstance(st["pid"], int) and st["pid"] > 0
    with open(pidfile) as f:
        assert int(f.read()) == st["pid"]
    assert st["bundle"] == os.path.realpath(bundle) and os.path.isabs(st["bundle"])
    assert st["rootfs"] == os.path.realpath(rootfs)
    assert st["annotations"] == {"org.example.b": "2", "io.kubernetes.cri.container-type": "container"}
    assert st["owner"] == ""
    created = st["created"]
    assert CREATED_RE.match(created), created
    frac = CREATED_RE.match(created).group(1)
    assert frac and not frac.endswith("0"), f"RFC 3339 with (trimmed) nanoseconds: {created}"
    t = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs((t - before).total_seconds()) < 60
    # stable
    assert rt.ok("state", cid).out == r.out


def test_state_through_the_lifecycle(rt, make_bundle):
    cid = create(rt, make_bundle())
    st0 = rt.state(cid)
    assert st0["status"] == "created"
    assert "annotations" not in st0, "annotations are omitted when empty"
    rt.ok("start", cid)
    st1 = rt.wait_status(cid, "running")
    assert st1["pid"] == st0["pid"] and st1["created"] == st0["created"]
    rt.ok("kill", cid, "KILL")
    st2 = rt.wait_status(cid, "stopped")
    assert st2["pid"] == 0, "pid is 0 when stopped"
    assert st2["created"] == st0["created"] and st2["bundle"] == st0["bundle"]
    r = rt("state", cid)
    pairs = json.loads(r.out, object_pairs_hook=lambda kv: kv)
    assert [k for k, _ in pairs] == [k for k in STATE_KEYS if k != "annotations"]
    assert r.err == b""


def test_state_errors(rt, make_bundle):
    create(rt, make_bundle())        # the root exists
    r = rt("state", "nosuch")
    assert r.rc == 1 and r.out == b""
    assert logged(r.err) == ["container does not exist"]
    r = rt("state", "bad/id")
    assert r.rc == 1 and logged(r.err) == ["invalid container ID format"]
    os.mkdir(os.path.join(rt.root, "halfmade"), 0o711)         # an aborted create: no state.json
    r = rt("state", "halfmade")
    assert r.rc == 1 and logged(r.err) == ["container does not exist"]
    os.rmdir(os.path.join(rt.root, "halfmade"))


def test_state_root_layout(rt, make_bundle):
    old = os.umask(0o022)
    try:
        cid = create(rt, make_bundle())
    finally:
        os.umask(old)
    assert os.stat(rt.root).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(rt.root, cid)).st_mode & 0o777 == 0o711


# === list (§6.5) =================================================================================

def _tabwriter(rows):
    """Go text/tabwriter(minwidth 12, tabwidth 1, padding 3, ' '), last column not padded."""
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths)) + r[-1] + "\n" for r in rows)


def test_list_formats(rt, make_bundle):
    c_created = create(rt, make_bundle())
    c_running = running(rt, make_bundle)
    c_stopped = stopped(rt, make_bundle)
    ids = sorted([c_created, c_running, c_stopped])
    states = {cid: rt.state(cid) for cid in ids}

    r = rt("list", "--format", "json")
    assert r.rc == 0 and r.err == b""
    assert r.out.endswith(b"\n") and r.out.count(b"\n") == 1, "one compact line + newline"
    arr = json.loads(r.out)
    assert r.out == (json.dumps(arr, separators=(",", ":")) + "\n").encode()
    assert [c["id"] for c in arr] == ids
    for c in arr:
        keys = [k for k, _ in json.loads(json.dumps(c), object_pairs_hook=lambda kv: kv)]
        assert keys == [k for k in STATE_KEYS if k != "annotations"]
        assert c["owner"] == "root"
        assert {**c, "owner": ""} == states[c["id"]]
    by_id = {c["id"]: c for c in arr}
    assert by_id[c_created]["status"] == "created"
    assert by_id[c_running]["status"] == "running"
    assert by_id[c_stopped]["status"] == "stopped" and by_id[c_stopped]["pid"] == 0

    assert rt.ok("list", "-f", "json").out == r.out
    assert rt.ok("list", "--format=json").out == r.out

    q = rt.ok("list", "-q")
    assert q.out.decode() == "".join(cid + "\n" for cid in ids) and q.err == b""
    assert rt.ok("list", "--quiet", "--format", "json").out == q.out

    t = rt.ok("list")
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for c in arr:
        rows.append([c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"]])
    assert t.out.decode() == _tabwriter(rows)
    assert t.err == b""
    assert rt.ok("list", "--format", "table").out == t.out


def test_list_empty(rt):
    os.mkdir(rt.root, 0o700)
    r = rt("list", "--format", "json")
    assert (r.rc, r.out, r.err) == (0, b"null\n", b"")
    r = rt("list", "-q")
    assert (r.rc, r.out, r.err) == (0, b"", b"")
    r = rt("list")
    assert r.rc == 0 and r.out.decode() == _tabwriter([["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]])
    r = rt("list", "--format", "xml")
    assert r.rc == 1 and logged(r.err) == ["invalid format option"]


def test_list_skips_a_dir_without_state(rt, make_bundle):
    cid = create(rt, make_bundle())
    os.mkdir(os.path.join(rt.root, "aborted"), 0o711)
    try:
        r = rt("list", "--format", "json")
        assert r.rc == 0
        assert [c["id"] for c in json.loads(r.out)] == [cid]
    finally:
        os.rmdir(os.path.join(rt.root, "aborted"))


# === pid file (§8.2) =============================================================================

def test_pid_file(rt, make_bundle, tmp_path):
    cid = rt.new_id()
    pf = tmp_path / "pids" / "init.pid"
    pf.parent.mkdir()
    create(rt, make_bundle(), cid, "--pid-file", str(pf))
    raw = pf.read_bytes()
    assert re.fullmatch(rb"[1-9][0-9]*", raw), f"digits only, no newline: {raw!r}"
    assert int(raw) == rt.state(cid)["pid"]
    assert sorted(os.listdir(pf.parent)) == ["init.pid"], "no temp file left"


def test_pid_file_relative_to_the_callers_cwd(rt, make_bundle, tmp_path):
    cwd = tmp_path / "caller"
    cwd.mkdir()
    bundle = make_bundle()
    cid = rt.new_id()
    r = rt("create", "--bundle", bundle, "--pid-file", "rel.pid", cid, cwd=str(cwd))
    assert r.rc == 0, r
    assert int((cwd / "rel.pid").read_bytes()) == rt.state(cid)["pid"]
    assert not os.path.exists(os.path.join(bundle, "rel.pid"))


def test_pid_file_run_detach(rt, make_bundle, tmp_path):
    cid = rt.new_id()
    pf = tmp_path / "run.pid"
    r = rt("run", "--detach", "--bundle", make_bundle(), "--pid-file", str(pf), cid)
    assert r.rc == 0, r
    st = rt.state(cid)
    assert st["status"] == "running"
    assert pf.read_bytes() == str(st["pid"]).encode()


# === --log / --log-format (§3) ===================================================================

def test_log_json_one_error_line_per_failure(rt, make_bundle, tmp_path):
    create(rt, make_bundle())
    log = tmp_path / "log.json"
    log.write_bytes(b"")
    r = rt("state", "nosuch", glob=("--log", str(log), "--log-format", "json"))
    assert r.rc == 1 and r.out == b""
    assert r.err == b"container does not exist\n", "the bare message on stderr"
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert list(obj) == ["level", "msg", "time"]
    assert obj["level"] == "error" and obj["msg"] == "container does not exist"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", obj["time"])
    r = rt("kill", "nosuch", "KILL", glob=("--log", str(log), "--log-format=json"))
    assert r.rc == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 2, "appended"
    assert json.loads(lines[1])["msg"] == "container does not exist"


def test_log_json_failed_create_is_a_single_json_object(rt, make_bundle, tmp_path):
    """podman json.Unmarshals the whole oci-log file: exactly one object, with the runc-style text."""
    log = tmp_path / "oci-log"
    cid = rt.new_id()
    r = rt("create", "--bundle", make_bundle(args=("nosuchbinary",)), cid,
           glob=("--log-format=json", "--log", str(log)))
    assert r.rc == 1
    obj = json.loads(log.read_text())          # the whole file is one JSON value
    assert obj["level"] == "error"
    assert "create failed" in obj["msg"]
    assert 'exec: "nosuchbinary": executable file not found in $PATH' in obj["msg"]
    assert r.err.decode().strip() == obj["msg"]
    assert not os.path.exists(os.path.join(rt.root, cid)), "a failed create leaves nothing"


def test_log_file_quiet_on_success(rt, make_bundle, tmp_path):
    log = tmp_path / "log.json"
    glob = ("--log", str(log), "--log-format", "json")
    cid = rt.new_id()
    r = rt("create", "--bundle", make_bundle(), cid, glob=glob)
    assert r.rc == 0 and r.out == b"" and r.err == b"", r
    for args in (("start", cid), ("state", cid), ("kill", cid, "KILL")):
        r = rt(*args, glob=glob)
        assert r.rc == 0 and r.err == b"", r
    rt.wait_status(cid, "stopped")
    r = rt("delete", cid, glob=glob)
    assert r.rc == 0 and r.out == b"" and r.err == b"", r
    levels = [json.loads(x)["level"] for x in log.read_text().splitlines()] if log.exists() else []
    assert "error" not in levels and "warning" not in levels, levels


def test_log_text_format_to_file(rt, tmp_path):
    log = tmp_path / "log.txt"
    r = rt("state", "nosuch", glob=("--log", str(log)))
    assert r.rc == 1 and r.err == b"container does not exist\n"
    (line,) = log.read_text().splitlines()
    assert TEXT_ERR_RE.match(line) and line.endswith('msg="container does not exist"')


# === exit codes (§1.4) ===========================================================================

def test_exit_codes_of_usage_errors(rt):
    assert rt("nosuchcommand").rc == 3
    assert rt("state").rc == 1
    assert rt("--nosuchflag", "list").rc == 1
    assert rt("state", "--nosuchflag", "x").rc == 1
    assert rt("--help", root=False).rc == 0
    assert rt("--version", root=False).rc == 0


@pytest.mark.parametrize("code", [0, 1, 7, 42, 255])
def test_run_passes_the_exit_code_through(rt, make_bundle, code):
    cid = rt.new_id()
    r = rt("run", "--bundle", make_bundle(args=("sh", "-c", f"exit {code}")), cid)
    assert r.rc == code, r
    assert not os.path.exists(os.path.join(rt.root, cid)), "run deletes the container afterwards"


def test_run_output_goes_to_the_callers_stdio(rt, make_bundle):
    cid = rt.new_id()
    r = rt("run", "--bundle", make_bundle(args=("sh", "-c", "echo out; echo err >&2")), cid)
    assert r.rc == 0
    assert r.out == b"out\n" and r.err == b"err\n"


def _run_in_background(rt, bundle, cid):
    o = open(os.path.join(rt.tmp, f"bg-{cid}.out"), "wb")
    p = subprocess.Popen([CLI, "--root", rt.root, "run", "--bundle", bundle, cid],
                         stdin=subprocess.DEVNULL, stdout=o, stderr=subprocess.STDOUT)
    o.close()
    deadline = time.monotonic() + 20
    while True:
        r = rt("state", cid)
        if r.rc == 0 and json.loads(r.out)["status"] == "running":
            return p
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            pytest.fail(f"run did not start the container (exit {p.returncode})")
        time.sleep(0.02)


def test_run_killed_by_a_signal_exits_128_plus_signal(rt, make_bundle):
    cid = rt.new_id()
    p = _run_in_background(rt, make_bundle(), cid)
    try:
        rt.ok("kill", cid, "KILL")
        assert p.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("sig", ["TERM", "sigterm", "15", "SIGTERM"])
def test_kill_signal_names_reach_the_process(rt, make_bundle, sig):
    """The init traps TERM and exits 3: run's exit status proves the signal arrived."""
    cid = rt.new_id()
    script = "trap 'exit 3' TERM; while :; do sleep 0.05; done"
    p = _run_in_background(rt, make_bundle(args=("sh", "-c", script)), cid)
    try:
        r = rt("kill", cid, sig)
        assert r.rc == 0 and r.out == b"" and r.err == b"", r
        assert p.wait(timeout=30) == 3
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_kill_default_signal_is_term(rt, make_bundle):
    cid = rt.new_id()
    p = _run_in_background(rt, make_bundle(args=("sh", "-c", "trap 'exit 4' TERM; while :; do sleep 0.05; done")),
                           cid)
    try:
        rt.ok("kill", cid)
        assert p.wait(timeout=30) == 4
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# === delete (§6.7) ===============================================================================

def test_delete_created_without_force(rt, make_bundle):
    cid = create(rt, make_bundle())
    pid = rt.state(cid)["pid"]
    r = rt("delete", cid)
    assert (r.rc, r.out, r.err) == (0, b"", b""), r
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert process_exits(pid), "the created init was killed"
    r = rt("state", cid)
    assert r.rc == 1 and logged(r.err) == ["container does not exist"]


def test_delete_running_refused_then_forced(rt, make_bundle):
    cid = running(rt, make_bundle)
    before = rt.ok("state", cid).out
    r = rt("delete", cid)
    assert r.rc == 1
    assert logged(r.err) == [f"cannot delete container {cid} that is not stopped: running"]
    assert rt.ok("state", cid).out == before, "no side effect"
    pid = json.loads(before)["pid"]
    r = rt("delete", "--force", cid)
    assert (r.rc, r.out, r.err) == (0, b"", b""), r
    assert process_exits(pid)
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_delete_stopped(rt, make_bundle):
    cid = stopped(rt, make_bundle)
    r = rt("delete", cid)
    assert (r.rc, r.out, r.err) == (0, b"", b""), r
    assert cid not in os.listdir(rt.root)


def test_delete_stopped_with_force(rt, make_bundle):
    cid = stopped(rt, make_bundle)
    r = rt("delete", "-f", cid)
    assert (r.rc, r.out, r.err) == (0, b"", b""), r
    assert cid not in os.listdir(rt.root)


def test_delete_missing(rt, make_bundle):
    create(rt, make_bundle())
    r = rt("delete", "--force", "nosuch")
    assert (r.rc, r.out, r.err) == (0, b"", b""), "exit 0, silently"
    r = rt("delete", "nosuch")
    assert r.rc == 1 and logged(r.err) == ["container does not exist"]


def test_delete_missing_root_force(rt):
    r = rt("delete", "--force", "nosuch")
    assert (r.rc, r.out, r.err) == (0, b"", b"")


def test_delete_dir_without_state(rt, make_bundle):
    create(rt, make_bundle())
    for force in (False, True):
        d = os.path.join(rt.root, f"aborted-{force}")
        os.mkdir(d, 0o711)
        r = rt("delete", *(["--force"] if force else []), os.path.basename(d))
        if force:
            assert (r.rc, r.out, r.err) == (0, b"", b"")
        else:
            assert r.rc == 1 and logged(r.err) == ["container does not exist"]
        assert not os.path.exists(d), "the aborted create's dir is removed"


def test_id_reusable_after_delete(rt, make_bundle):
    cid = create(rt, make_bundle())
    rt.ok("delete", cid)
    create(rt, make_bundle(), cid)
    assert rt.state(cid)["status"] == "created"


# === kill (§6.6) =================================================================================

def test_kill_stopped(rt, make_bundle):
    cid = stopped(rt, make_bundle)
    before = rt.ok("state", cid).out
    r = rt("kill", cid, "KILL")
    assert r.rc == 1 and logged(r.err) == ["container not running"]
    assert rt.ok("state", cid).out == before, "no effect"
    for flag in ("--all", "-a", "--all=true"):
        r = rt("kill", flag, cid, "9")
        assert (r.rc, r.out, r.err) == (0, b"", b""), r
    assert rt.ok("state", cid).out == before


def test_kill_created_container(rt, make_bundle):
    cid = create(rt, make_bundle())
    rt.ok("kill", cid, "KILL")
    st = rt.wait_status(cid, "stopped")
    assert st["pid"] == 0


def test_kill_errors(rt, make_bundle):
    cid = running(rt, make_bundle)
    r = rt("kill", cid, "0")
    assert (r.rc, r.err) == (0, b""), "signal 0 is a liveness probe"
    r = rt("kill", cid, "SIGFOO")
    assert r.rc == 1 and logged(r.err) == ['unknown signal "SIGFOO"']
    r = rt("kill", "nosuch", "KILL")
    assert r.rc == 1 and logged(r.err) == ["container does not exist"]
    assert rt.state(cid)["status"] == "running"


# === start (§6.2) ================================================================================

def test_start_twice(rt, make_bundle):
    cid = create(rt, make_bundle())
    r = rt("start", cid)
    assert (r.rc, r.out, r.err) == (0, b"", b""), r
    st = rt.wait_status(cid, "running")
    r = rt("start", cid)
    assert r.rc == 1
    assert logged(r.err) == ["cannot start an already running container"]
    assert rt.state(cid) == st, "no side effect"


def test_start_stopped(rt, make_bundle):
    cid = stopped(rt, make_bundle)
    before = rt.ok("state", cid).out
    r = rt("start", cid)
    assert r.rc == 1 and logged(r.err) == ["cannot start a container that has stopped"]
    assert rt.ok("state", cid).out == before


def test_start_runs_nothing_before_start(rt, make_bundle, tmp_path):
    marker = tmp_path / "shared"
    marker.mkdir()

    def edit(s):
        s["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(marker), "options": ["rbind"]})
    cid = create(rt, make_bundle(args=("sh", "-c", "touch /mnt/ran; sleep 600"), edit=edit))
    time.sleep(0.3)
    assert not (marker / "ran").exists(), "process.args must not run before start"
    rt.ok("start", cid)
    deadline = time.monotonic() + 10
    while not (marker / "ran").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)


# === flag placement, duplicates, failures =========================================================

def test_flags_after_the_container_id(rt, make_bundle, tmp_path):
    cid = rt.new_id()
    pf = tmp_path / "p.pid"
    r = rt("create", cid, "--bundle", make_bundle(), "--pid-file", str(pf))
    assert r.rc == 0, r
    assert int(pf.read_bytes()) == rt.state(cid)["pid"]
    cid2 = rt.new_id()
    r = rt("create", cid2, f"-bundle={make_bundle()}")
    assert r.rc == 0, r
    r = rt("kill", cid2, "KILL", "--all")
    assert r.rc == 0, r
    rt.wait_status(cid2, "stopped")
    r = rt("delete", cid, "--force")
    assert r.rc == 0, r
    assert cid not in os.listdir(rt.root)


def test_global_flag_after_the_command_fails(rt, make_bundle):
    r = rt("create", "--root", rt.root, "--bundle", make_bundle(), "x", root=False)
    assert r.rc == 1
    assert logged(r.err) == ["flag provided but not defined: -root"]


def test_duplicate_id(rt, make_bundle):
    cid = create(rt, make_bundle())
    before = rt.ok("state", cid).out
    r = rt("create", "--bundle", make_bundle(), cid)
    assert r.rc == 1
    (msg,) = logged(r.err)
    assert msg.endswith("container with given ID already exists"), msg
    assert rt.ok("state", cid).out == before


def _cgroup_dirs_named(name, depth=4):
    found = []
    base = "/sys/fs/cgroup"
    for top in os.listdir(base):
        start = os.path.join(base, top)
        if not os.path.isdir(start) or os.path.islink(start):
            continue
        for dirpath, dirnames, _ in os.walk(start):
            if dirpath.count(os.sep) - start.count(os.sep) >= depth:
                dirnames[:] = []
            if name in dirnames:
                found.append(os.path.join(dirpath, name))
    return found


def test_failed_create_leaves_nothing(rt, make_bundle):
    create(rt, make_bundle())
    cid = rt.new_id()
    r = rt("create", "--bundle", make_bundle(args=("/nonexistent/bin",)), cid)
    assert r.rc == 1
    assert cid not in os.listdir(rt.root)
    assert _cgroup_dirs_named(cid) == []
    create(rt, make_bundle(), cid)          # the id can be reused
    assert rt.state(cid)["status"] == "created"


def test_create_errors(rt, tmp_path):
    empty = tmp_path / "empty-bundle"
    empty.mkdir()
    r = rt("create", "--bundle", str(empty), rt.new_id())
    assert r.rc == 1
    (msg,) = logged(r.err)
    assert msg.endswith("JSON specification file config.json not found"), msg
    r = rt("create", "--bundle", str(empty), "bad/id")
    assert r.rc == 1
    (msg,) = logged(r.err)
    assert "invalid container ID format" in msg


def test_relative_bundle_is_recorded_absolute(rt, make_bundle):
    bundle = make_bundle()
    cid = rt.new_id()
    r = rt("create", "--bundle", os.path.basename(bundle), cid, cwd=os.path.dirname(bundle))
    assert r.rc == 0, r
    assert rt.state(cid)["bundle"] == os.path.realpath(bundle)


def test_default_bundle_is_the_cwd(rt, make_bundle):
    bundle = make_bundle()
    cid = rt.new_id()
    r = rt("create", cid, cwd=bundle)
    assert r.rc == 0, r
    assert rt.state(cid)["bundle"] == os.path.realpath(bundle)


def test_pid_file_write_failure_rolls_back(rt, make_bundle, tmp_path):
    create(rt, make_bundle())
    cid = rt.new_id()
    r = rt("create", "--bundle", make_bundle(), "--pid-file", str(tmp_path / "no" / "such" / "dir" / "p"), cid)
    assert r.rc == 1
    assert cid not in os.listdir(rt.root)
    assert _cgroup_dirs_named(cid) == []


def test_create_does_not_wait_for_its_stdio(rt, make_bundle):
    """Detached pass-through (§8.6): the container keeps create's stdout pipe open; create exits anyway."""
    cid = rt.new_id()
    p = subprocess.Popen([CLI, "--root", rt.root, "create", "--bundle", make_bundle(), cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert p.wait(timeout=30) == 0
        assert rt.state(cid)["status"] == "created"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        rt("delete", "--force", cid)
        p.stdout.read()                 # EOF once the container is gone
        p.stdout.close()


def test_concurrent_creates_of_one_id(rt, make_bundle):
    create(rt, make_bundle())
    cid = rt.new_id()
    bundles = [make_bundle() for _ in range(4)]
    procs = []
    for i, b in enumerate(bundles):
        err = open(os.path.join(rt.tmp, f"cc-err-{i}"), "wb")
        procs.append(subprocess.Popen([CLI, "--root", rt.root, "create", "--bundle", b, cid],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err))
        err.close()
    codes = [p.wait(timeout=60) for p in procs]
    assert sorted(codes) == [0, 1, 1, 1], codes
    for i, c in enumerate(codes):
        if c:
            with open(os.path.join(rt.tmp, f"cc-err-{i}")) as f:
                assert "container with given ID already exists" in f.read()
    assert rt.state(cid)["status"] == "created"


def test_concurrent_starts(rt, make_bundle):
    cid = create(rt, make_bundle())
    procs = []
    for i in range(4):
        err = open(os.path.join(rt.tmp, f"st-err-{i}"), "wb")
        procs.append(subprocess.Popen([CLI, "--root", rt.root, "start", cid], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=err))
        err.close()
    codes = [p.wait(timeout=60) for p in procs]
    assert sorted(codes) == [0, 1, 1, 1], codes
    for i, c in enumerate(codes):
        if c:
            with open(os.path.join(rt.tmp, f"st-err-{i}")) as f:
                assert "cannot start an already running container" in f.read()
    rt.wait_status(cid, "running")


def test_delete_removes_the_cgroups(rt, make_bundle):
    c1 = running(rt, make_bundle)
    c2 = create(rt, make_bundle())
    assert _cgroup_dirs_named(c1), "sanity: the container has cgroup directories"
    rt.ok("delete", "--force", c1)
    rt.ok("delete", c2)
    assert _cgroup_dirs_named(c1) == [] and _cgroup_dirs_named(c2) == []


def test_list_reports_entries_that_fail_to_load(rt, make_bundle):
    cid = create(rt, make_bundle())
    os.mkdir(os.path.join(rt.root, "broken"), 0o711)
    try:
        r = rt("list", "--format", "json")
        assert r.rc == 0
        assert [c["id"] for c in json.loads(r.out)] == [cid]
        assert "load container broken: container does not exist" in r.errtext
    finally:
        os.rmdir(os.path.join(rt.root, "broken"))


def test_list_owner_of_an_unknown_uid(rt, make_bundle):
    cid = create(rt, make_bundle())
    uid = 54321
    try:
        import pwd
        pwd.getpwuid(uid)
        pytest.skip(f"uid {uid} exists on this host")
    except KeyError:
        pass
    os.chown(os.path.join(rt.root, cid), uid, -1)
    (c,) = json.loads(rt.ok("list", "--format", "json").out)
    assert c["owner"] == f"#{uid}"
    assert rt.state(cid)["owner"] == ""


def test_delete_after_the_bundle_is_gone(rt, make_bundle):
    bundle = make_bundle()
    cid = running(rt, make_bundle)
    c2 = create(rt, bundle)
    os.unlink(os.path.join(bundle, "config.json"))
    os.rmdir(bundle)
    assert rt.state(c2)["bundle"] == os.path.realpath(bundle)
    rt.ok("delete", c2)
    rt.ok("kill", cid, "KILL")
    rt.wait_status(cid, "stopped")
    rt.ok("delete", cid)
    assert os.listdir(rt.root) == []


def test_systemd_cgroup_without_systemd_fails_clearly(rt, make_bundle):
    """No systemd here: --systemd-cgroup must fail with a clear error, and leave nothing behind."""
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs on this host")
    cid = rt.new_id("sysd")
    b = make_bundle()
    r = rt("create", "--bundle", str(b), cid, glob=("--systemd-cgroup",))
    assert r.rc != 0 and "systemd is not running" in r.errtext
    assert not os.path.exists(os.path.join(rt.root, cid))
