"""The qemu harness itself (tests/vm/qemu.py), on the host, without a full boot: the kit's initramfs is
reproducible and loads its modules in dependency order, the local-tree cpio keeps what Python needs,
and a guest that fails to boot, or whose owner dies, leaves nothing behind (process group, control dir)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qemu  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("OCI_SKIP_VM") is not None, reason="OCI_SKIP_VM is set")


@pytest.fixture(scope="module")
def kit():
    if os.geteuid() != 0:
        pytest.fail("the qemu harness tests need root (apt, 9p share of /)")
    try:
        return qemu.build_kit()
    except qemu.KitError as e:
        pytest.fail(f"cannot build the guest kit: {e}", pytrace=False)


def cpio_list(path_or_bytes, verbose=False):
    data = path_or_bytes
    if isinstance(data, str):
        with open(data, "rb") as f:
            data = f.read()
    r = subprocess.run([qemu.BUSYBOX, "cpio", "-t" + ("v" if verbose else "")], input=data,
                       capture_output=True, check=True)
    return r.stdout.decode().splitlines()


def test_initramfs_reproducible_and_modules_in_dependency_order(kit, tmp_path):
    deps = qemu._module_deps(kit.modules)
    order = qemu._load_order(qemu.BOOT_MODULES, deps)
    for n in order:  # every dependency comes before its user
        for d in deps[n][1]:
            if d in deps:
                assert order.index(d) < order.index(n), (d, n, order)
    assert order == kit.info["boot_modules"]
    out, again = tmp_path / "i.cpio.gz", tmp_path / "again.cpio.gz"
    qemu._write_initramfs(str(out), kit.modules, deps, order)
    time.sleep(1.1)
    qemu._write_initramfs(str(again), kit.modules, deps, order)
    assert out.read_bytes() == again.read_bytes(), "the initramfs is not reproducible"
    import gzip
    names = cpio_list(gzip.decompress(out.read_bytes()))
    assert {"init", "bin/busybox", "dev/console", "modules.order"} <= set(names)
    assert {f"lib/modules/{n}.ko" for n in qemu.BOOT_MODULES} <= set(names)


def test_kit_lets_the_guest_load_modules_by_alias(kit):
    """modules.dep and modules.alias for busybox modprobe (the guest's kernel.modprobe): what the kernel
    asks for by alias resolves, e.g. the sock_diag handlers CRIU needs to dump sockets."""
    with open(os.path.join(kit.modules, "modules.alias")) as f:
        aliases = {tuple(ln.split()[1:3]) for ln in f if ln.startswith("alias ")}
    for alias, mod in (("net-pf-16-proto-4-type-1", "unix_diag"), ("net-pf-16-proto-4-type-2", "inet_diag"),
                       ("net-pf-16-proto-4-type-2-6", "tcp_diag"), ("net-pf-16-proto-4-type-16", "netlink_diag")):
        assert (alias, mod) in aliases, (alias, mod)
    with open(os.path.join(kit.modules, "modules.dep")) as f:
        dep = {ln.split(":")[0].rsplit("/", 1)[-1] for ln in f}
    assert {"unix_diag.ko", "inet_diag.ko", "tcp_diag.ko"} <= dep


def test_local_cpio_keeps_mtimes_symlinks_and_excludes(tmp_path):
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "skipme").mkdir()
    (src / "pkg" / "m.py").write_text("x = 1\n")
    (src / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"pyc")
    (src / "skipme" / "big").write_bytes(b"0" * 100)
    os.symlink("pkg", src / "link")
    os.utime(src / "pkg" / "m.py", (1_600_000_000, 1_600_000_000))
    out = tmp_path / "l.cpio"
    with open(out, "wb") as f:
        qemu._local_cpio(f, [str(src)], ["skipme"])
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run([qemu.BUSYBOX, "cpio", "-i", "-d", "-m"], stdin=open(out, "rb"), cwd=dest, check=True,
                   capture_output=True)
    root = dest / "local" / str(src).lstrip("/")
    assert (root / "pkg" / "m.py").read_text() == "x = 1\n"
    assert int(os.stat(root / "pkg" / "m.py").st_mtime) == 1_600_000_000  # a .pyc checks its source's mtime
    assert (root / "pkg" / "__pycache__" / "m.cpython-311.pyc").read_bytes() == b"pyc"
    assert os.readlink(root / "link") == "pkg"
    assert not (root / "skipme").exists()


def _qemu_children(ppid, under=None):
    """qemu processes whose parent is ``ppid``; with ``under``, only those whose command line names a
    path below it (the guest stages of the same session run their own qemu beside these tests)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if int(fields[1]) == ppid and cmd and cmd[0].endswith(qemu.QEMU.encode()):
                if under is None or any(under.encode() in a for a in cmd):
                    out.append(int(d))
    return out


def _gone(pgid, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_boot_failure_reports_the_console_and_leaves_nothing(kit, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(qemu.GuestTimeout) as ei:
        qemu.Guest.start(kit, boot_timeout=0.5, workdir=str(work))
    assert "waiting for the guest to boot" in str(ei.value) and "guest console" in str(ei.value)
    assert os.listdir(work) == [], "the control directory was left behind"
    assert not _qemu_children(os.getpid(), under=str(work)), "qemu was left running"


def test_qemu_dies_with_its_owner(kit, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {HERE!r})
        import qemu
        qemu.Guest.start(boot_timeout=600, workdir={str(work)!r})
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        kids = []
        while not kids:
            assert owner.poll() is None, "the owner exited early"
            assert time.monotonic() < deadline, "qemu did not start"
            kids = _qemu_children(owner.pid)
            time.sleep(0.1)
        pgid = os.getpgid(kids[0])
        assert pgid == kids[0], "qemu is not the leader of its own process group"
        os.kill(owner.pid, signal.SIGKILL)  # no finalizer, no atexit: only PR_SET_PDEATHSIG is left
        owner.wait()
        assert _gone(pgid), f"qemu ({kids[0]}) outlived the process that started it"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for d in os.listdir(work):  # the SIGKILLed owner could not remove its control dir
            qemu.shutil.rmtree(os.path.join(work, d), ignore_errors=True)
