"""state.py: container ids, the <root>/<id>/ store, state.json, liveness (cli-contract §4, §5)."""

import errno
import fcntl
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ociruntime import state
from ociruntime.errors import AlreadyExists, InvalidID, NotFound, OciError
from ociruntime.state import Store, init_alive, proc_start_time, status_of, validate_id


# --- ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", [
    "a", "abc", "my-container", "c1", "A_B+c-1.2", "x" * 200, "...", ".a", "a.", "a..b", "-", "+", "_",
    "0", "a-b_c+d.e", "sha256.0123456789abcdef",
])
def test_valid_ids(cid):
    assert validate_id(cid) == cid


@pytest.mark.parametrize("cid", [
    ".", "..", "a/b", "/a", "a/", "foo bar", " a", "a ", "a\0b", "\0", "a:b", "a@b", "a*", "ä", "a\tb",
    "a\\b", "$x", "a;b", "a\nb", "\n",
])
def test_invalid_ids(cid):
    with pytest.raises(InvalidID) as ei:
        validate_id(cid)
    assert str(ei.value) == "invalid container ID format"


def test_empty_id():
    with pytest.raises(InvalidID) as ei:
        validate_id("")
    assert str(ei.value) == "container id cannot be empty"


@pytest.mark.parametrize("cid", ["abc\n", "a.b\n"])
def test_trailing_newline_is_invalid(cid):
    with pytest.raises(InvalidID):
        validate_id(cid)


def test_default_root_for_real_root_ignores_xdg(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setattr(state.posix, "geteuid", lambda: 0)
    assert state.default_root() == "/run/ociruntime"


def test_default_root_rootless_uses_xdg(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setattr(state.posix, "geteuid", lambda: 1000)
    assert state.default_root() == "/run/user/1000/ociruntime"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert state.default_root() == "/run/ociruntime"


# --- the store -------------------------------------------------------------------------------

@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    return str(r)


@pytest.fixture
def store(root):
    return Store(root)


def test_claim_creates_root_0700_and_dir_0711(store, root):
    old = os.umask(0o022)
    try:
        c = store.claim("c1")
    finally:
        os.umask(old)
    try:
        assert os.stat(root).st_mode & 0o777 == 0o700
        assert os.stat(os.path.join(root, "c1")).st_mode & 0o777 == 0o711
        assert os.listdir(os.path.join(root, "c1")) == []   # no state.json yet: "does not exist"
        assert c.read_state() is None
    finally:
        c.close()


def test_claim_twice_is_already_exists(store):
    c = store.claim("c1")
    try:
        with pytest.raises(AlreadyExists) as ei:
            Store(store.root).claim("c1")
        assert str(ei.value) == "container with given ID already exists"
    finally:
        c.close()


def test_claim_validates_the_id(store, root):
    with pytest.raises(InvalidID):
        store.claim("a/b")
    with pytest.raises(InvalidID):
        store.claim("..")
    assert not os.path.exists(root) or os.listdir(root) == []


def test_concurrent_claims_exactly_one_wins(root):
    n = 16
    barrier = threading.Barrier(n)
    results = []

    def worker():
        s = Store(root)
        barrier.wait()
        try:
            c = s.claim("race")
            results.append("won")
            c.close()
        except AlreadyExists:
            results.append("lost")

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * (n - 1) + ["won"]


def test_claim_holds_an_exclusive_lock(store, root):
    c = store.claim("c1")
    fd = os.open(os.path.join(root, "c1"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        c.close()
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # released with the fd
    finally:
        os.close(fd)


def test_open_missing(store, root):
    with pytest.raises(NotFound) as ei:
        store.open("nosuch")             # the root does not even exist
    assert str(ei.value) == "container does not exist"
    os.makedirs(root, 0o700)
    with pytest.raises(NotFound):
        Store(root).open("nosuch")


def test_open_validates_the_id(root):
    os.makedirs(root, 0o700)
    for bad in ("..", "a/b", "x y"):
        with pytest.raises(InvalidID):
            Store(root).open(bad)


def test_open_non_directory_or_symlink_is_not_found(root, tmp_path):
    os.makedirs(root, 0o700)
    with open(os.path.join(root, "afile"), "w"):
        pass
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "state.json").write_text('{"pid": 1}')
    os.symlink(str(target), os.path.join(root, "alink"))
    for cid in ("afile", "alink"):
        with pytest.raises(NotFound):
            Store(root).open(cid)


def test_open_after_concurrent_remove_is_not_found(store):
    c = store.claim("c1")
    c.write_state({"pid": 0, "id": "c1"})
    other = Store(store.root).open("c1", lock=False)
    c.remove()
    with pytest.raises(NotFound):
        other.lock()      # the directory it holds was deleted meanwhile
    other.close()


# --- state.json ------------------------------------------------------------------------------

def _dir_entries(c):
    return sorted(os.listdir(c.path))


def test_write_and_read_state(store):
    c = store.claim("c1")
    try:
        st = {"id": "c1", "pid": 123, "bundle": "/b", "annotations": {"a": "ü"}}
        c.write_state(st)
        assert c.read_state() == st
        assert _dir_entries(c) == ["state.json"]
        st2 = dict(st, pid=456)
        c.write_state(st2)
        assert c.read_state() == st2
        assert _dir_entries(c) == ["state.json"]
        assert os.stat(os.path.join(c.path, "state.json")).st_mode & 0o777 == 0o600
    finally:
        c.close()


def test_write_state_replaces_by_rename(store):
    """A reader that opened the old file keeps reading the complete old content (never a torn file)."""
    c = store.claim("c1")
    try:
        c.write_state({"pid": 1, "v": "old" * 1000})
        path = os.path.join(c.path, "state.json")
        ino = os.stat(path).st_ino
        with open(path, "rb") as old:
            c.write_state({"pid": 2, "v": "new"})
            assert json.loads(old.read()) == {"pid": 1, "v": "old" * 1000}
        assert os.stat(path).st_ino != ino
    finally:
        c.close()


@pytest.mark.parametrize("fail_at", ["write", "close", "rename"])
def test_write_state_failure_leaves_no_temp_and_keeps_old(store, monkeypatch, fail_at):
    c = store.claim("c1")
    try:
        c.write_state({"pid": 1})

        def boom(*a, **kw):
            raise OSError(errno.ENOSPC, "No space left on device")

        real_write = os.write
        if fail_at == "write":  # the state store uses `posix` (not `os`, for start-up time)
            monkeypatch.setattr(state.posix, "write", lambda fd, data: boom() if data.startswith(b"{") else
                                real_write(fd, data))
        else:
            monkeypatch.setattr(state.posix, fail_at, boom)
        with pytest.raises(OSError):
            c.write_state({"pid": 2})
        monkeypatch.undo()
        assert _dir_entries(c) == ["state.json"]
        assert c.read_state() == {"pid": 1}
    finally:
        c.close()


def test_write_state_survives_a_stale_temp_file(store):
    """A temp file left by a crashed process (same pid after reboot or in another pid namespace)
    must not make every later write_state fail."""
    c = store.claim("c1")
    try:
        stale = os.path.join(c.path, f".state.{os.getpid()}.tmp")
        with open(stale, "w") as f:
            f.write("garbage")
        c.write_state({"pid": 3})
        assert c.read_state() == {"pid": 3}
    finally:
        c.close()


@pytest.mark.parametrize("content", [b"", b"{", b"not json", b"[]", b"null", b"42", b'"str"',
                                     b'{"id": "c1"}', b"\xff\xfe", b'{"pid": 1', b"\0\0\0"])
def test_corrupt_state_is_none(store, content):
    c = store.claim("c1")
    try:
        with open(os.path.join(c.path, "state.json"), "wb") as f:
            f.write(content)
        assert c.read_state() is None
    finally:
        c.close()


def test_missing_state_is_none(store):
    c = store.claim("c1")
    try:
        assert c.read_state() is None
    finally:
        c.close()


def test_symlinked_state_json_is_not_followed(store, tmp_path):
    target = tmp_path / "evil.json"
    target.write_text('{"pid": 1, "id": "evil"}')
    c = store.claim("c1")
    try:
        os.symlink(str(target), os.path.join(c.path, "state.json"))
        assert c.read_state() is None
    finally:
        c.close()


# --- removal ---------------------------------------------------------------------------------

def test_remove_renames_to_a_tombstone_first(store, monkeypatch):
    c = store.claim("c1")
    c.write_state({"pid": 0})
    os.mkdir(os.path.join(c.path, "sub"))
    with open(os.path.join(c.path, "sub", "f"), "w"):
        pass
    seen = {}
    real = state._rmtree_fd

    def spy(dfd):
        if "names" not in seen:
            seen["names"] = sorted(os.listdir(store.root))
        return real(dfd)

    monkeypatch.setattr(state, "_rmtree_fd", spy)
    c.remove()
    # while the contents were being removed, the id was already gone
    assert "c1" not in seen["names"]
    assert len(seen["names"]) == 1 and seen["names"][0].startswith("~deleting~c1~")
    assert os.listdir(store.root) == []
    assert store.ids() == []


def test_remove_does_not_follow_symlinks(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    c = store.claim("c1")
    os.symlink(str(outside), os.path.join(c.path, "link"))
    os.symlink(str(outside / "precious"), os.path.join(c.path, "flink"))
    os.mkfifo(os.path.join(c.path, "exec.fifo"))
    c.remove()
    assert (outside / "precious").read_text() == "keep me"
    assert os.listdir(store.root) == []


def test_remove_twice_is_harmless(store):
    c = store.claim("c1")
    c2 = Store(store.root).open("c1", lock=False)
    c.remove()
    c2.remove()        # already renamed away: a no-op
    c2.close()
    assert os.listdir(store.root) == []


def test_ids_lists_directories_only_sorted(store, root):
    for cid in ("b", "a", "c"):
        store.claim(cid).close()
    with open(os.path.join(root, "file"), "w"):
        pass
    os.symlink(os.path.join(root, "a"), os.path.join(root, "alink"))
    os.mkdir(os.path.join(root, "~deleting~a~123"))    # a tombstone of a delete in progress
    assert Store(root).ids() == ["a", "b", "c"]


def test_ids_of_missing_root_is_empty(root):
    assert Store(root).ids() == []


def test_ids_lists_valid_ids_starting_with_a_dot(store):
    store.claim(".hidden").close()
    store.claim("shown").close()
    assert store.ids() == [".hidden", "shown"]


# --- root checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("r", ["/", "///", "/tmp/..", "/./", "/tmp/../.."])
def test_root_slash_refused(r):
    with pytest.raises(OciError) as ei:
        Store(r)
    assert str(ei.value) == "Option --root argument should not be set to /"


@pytest.mark.parametrize("r", ["//", "//tmp/..", "//."])
def test_root_double_slash_refused(r):
    with pytest.raises(OciError) as ei:
        Store(r)
    assert str(ei.value) == "Option --root argument should not be set to /"


def test_relative_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Store("rel")
    assert s.root == str(tmp_path / "rel")


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o702])
def test_group_or_world_writable_root_refused(root, mode):
    os.makedirs(root)
    os.chmod(root, mode)
    for op in (lambda s: s.open("c1"), lambda s: s.claim("c1"), lambda s: s.ids()):
        with pytest.raises(OciError) as ei:
            op(Store(root))
        assert "must be owned by uid" in str(ei.value)
    assert os.listdir(root) == []


def test_symlinked_root_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    os.symlink(str(real), str(link))
    for op in (lambda s: s.open("c1"), lambda s: s.claim("c1")):
        with pytest.raises(OciError) as ei:
            op(Store(str(link)))
        assert not isinstance(ei.value, NotFound)
        assert "state root" in str(ei.value)
    assert os.listdir(real) == []


def test_root_owned_by_someone_else_refused(root):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.makedirs(root, 0o700)
    os.chown(root, 65534, 65534)
    with pytest.raises(OciError):
        Store(root).claim("c1")


# --- liveness and status ---------------------------------------------------------------------

def test_proc_start_time_of_self():
    start, st = proc_start_time(os.getpid())
    assert st == "R"
    assert start > 0


def test_proc_start_time_of_missing_pid():
    # a pid beyond pid_max never exists
    assert proc_start_time(1 << 23) is None


def test_proc_start_time_with_hostile_comm(tmp_path):
    """comm may contain spaces and ')': the fields are parsed after the last ')'."""
    link = tmp_path / "a) Z 1 2 3"
    os.symlink("/bin/sleep", str(link))
    p = subprocess.Popen([str(link), "30"])
    try:
        deadline = time.monotonic() + 5
        while True:
            with open(f"/proc/{p.pid}/comm") as f:
                if f.read().startswith("a) Z"):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.005)
        start, st = proc_start_time(p.pid)
        assert st in ("S", "R", "D")   # a live state (the "Z" in comm is not it); D while exec pages in
        assert start >= proc_start_time(os.getpid())[0]
    finally:
        p.kill()
        p.wait()


def _st_for(pid):
    return {"id": "c", "pid": pid, "init_start": proc_start_time(pid)[0]}


def test_init_alive():
    assert init_alive(_st_for(os.getpid()))
    assert not init_alive({"pid": 0})
    assert not init_alive({"pid": -1})
    assert not init_alive({})
    st = _st_for(os.getpid())
    st["init_start"] += 1                      # pid reused by another process
    assert not init_alive(st)


def test_zombie_is_not_alive():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    st = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = proc_start_time(p.pid)
        if info and info[1] == "Z":
            st = {"pid": p.pid, "init_start": info[0]}
            break
        time.sleep(0.005)
    try:
        assert st is not None, "child did not become a zombie"
        assert not init_alive(st)
    finally:
        p.wait()


def test_status_of(store):
    c = store.claim("c1")
    try:
        assert status_of(c, None) == "stopped"
        st = _st_for(os.getpid())
        assert status_of(c, st) == "running"
        os.mkfifo(os.path.join(c.path, "exec.fifo"))
        assert status_of(c, st) == "created"
        st_dead = dict(st, init_start=st["init_start"] + 1)
        assert status_of(c, st_dead) == "stopped"        # a stale fifo does not make it "created"
        os.unlink(os.path.join(c.path, "exec.fifo"))
        with open(os.path.join(c.path, "exec.fifo"), "w"):
            pass                                         # a regular file is not the fifo
        assert status_of(c, st) == "running"
    finally:
        c.close()


def test_status_paused_from_freezer(store, tmp_path):
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "freezer.state").write_text("FROZEN\n")
    c = store.claim("c1")
    try:
        st = dict(_st_for(os.getpid()), cgroup_paths={"freezer": str(cg)})
        assert status_of(c, st) == "paused"
        (cg / "freezer.state").write_text("THAWED\n")
        assert status_of(c, st) == "running"
    finally:
        c.close()
