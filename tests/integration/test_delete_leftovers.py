"""delete after a restore was killed while CRIU ran: its rbind of the rootfs (the state dir's criu-root)
is detached, never walked — removing the state dir through it would delete the container's rootfs."""
import os
import subprocess

from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)


def _files(top):
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)


def test_delete_detaches_a_left_criu_root_and_keeps_the_rootfs(env):
    b = env.bundle()
    cid = env.running(b)
    before = _files(b.rootfs)
    assert before
    mnt = os.path.join(env.root, cid, "criu-root")
    os.mkdir(mnt, 0o755)
    # as a restore killed while CRIU ran leaves it (twice: a stacked bind is detached too)
    subprocess.run(["mount", "--rbind", b.rootfs, mnt], check=True)
    subprocess.run(["mount", "--rbind", b.rootfs, mnt], check=True)
    try:
        env.rt("delete", "--force", cid).check()
    finally:
        if os.path.isdir(mnt) and os.path.ismount(mnt):
            subprocess.run(["umount", "-R", "-l", mnt], check=False)
    assert _files(b.rootfs) == before, "delete walked into the bind of the rootfs"
    assert not os.path.exists(os.path.join(env.root, cid))
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if f" {mnt} " in line or f"{mnt}/" in line.split()[4]]
