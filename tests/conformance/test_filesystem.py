"""Root filesystem, mounts, masked and readonly paths, devices (config.md "Root", "Mounts",
config-linux.md "Masked Paths", "Readonly Paths", "Devices")."""

import os

import pytest

pytestmark = pytest.mark.oci_root

MASKABLE_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                  "/proc/latency_stats"]
MASKABLE_DIRS = ["/proc/acpi", "/sys/firmware", "/proc/scsi", "/proc/driver"]


def first_existing(paths):
    for p in paths:
        if os.path.exists(p):
            return p
    pytest.skip(f"none of {paths} exists on this host")


def run_ok(rt, bundle, script):
    r = rt.run_shell(bundle, script)
    assert r.rc == 0, r.describe()
    return r.stdout


def mountinfo_entry(mountinfo, mountpoint):
    """The last mountinfo line for ``mountpoint`` as (options, fstype, source, superopts)."""
    found = None
    for line in mountinfo.splitlines():
        p = line.split()
        if len(p) > 6 and p[4] == mountpoint:
            sep = p.index("-", 6)
            found = (p[5].split(","), p[sep + 1], p[sep + 2], p[sep + 3].split(","))
    assert found, f"{mountpoint} not mounted:\n{mountinfo}"
    return found


def test_readonly_root(oci_runtime, bundle):
    bundle.set_readonly_root(True)
    out = run_ok(oci_runtime, bundle,
                 "touch /probe 2>&1 && echo WROTE; echo ---; cat /proc/self/mountinfo")
    msg, mountinfo = out.split("---\n")
    assert "WROTE" not in msg
    assert "Read-only file system" in msg
    assert "ro" in mountinfo_entry(mountinfo, "/")[0]
    assert not os.path.exists(bundle.rootfs_path("/probe"))


def test_writable_root(oci_runtime, bundle):
    bundle.set_readonly_root(False)
    run_ok(oci_runtime, bundle, "echo hello > /probe")
    with open(bundle.rootfs_path("/probe")) as f:
        assert f.read() == "hello\n"


def test_masked_file_reads_empty_and_is_dev_null(oci_runtime, bundle):
    path = first_existing(MASKABLE_FILES)
    bundle.set_masked_paths([path])
    out = run_ok(oci_runtime, bundle, f"wc -c < {path}; stat -c '%F %t:%T' {path}")
    size, kind = out.splitlines()
    assert size.strip() == "0"
    assert kind == "character special file 1:3"


def test_masked_dir_is_empty(oci_runtime, bundle):
    path = first_existing(MASKABLE_DIRS)
    bundle.set_masked_paths([path])
    out = run_ok(oci_runtime, bundle,
                 f"ls -A {path} | wc -l; touch {path}/x 2>/dev/null && echo WROTE; true")
    assert out.split() == ["0"]


def test_default_masked_paths(oci_runtime, bundle):
    files = [p for p in MASKABLE_FILES if os.path.isfile(p)
             and p in bundle.linux["maskedPaths"]]
    if not files:
        pytest.skip("no default masked file exists on this host")
    out = run_ok(oci_runtime, bundle, "; ".join(f"wc -c < {p}" for p in files))
    assert [x.strip() for x in out.splitlines()] == ["0"] * len(files)


def test_nonexistent_masked_and_readonly_paths_are_ignored(oci_runtime, bundle):
    bundle.set_masked_paths(["/proc/no-such-file", "/no/such/dir"])
    bundle.set_readonly_paths(["/proc/no-such-dir", "/nope"])
    assert run_ok(oci_runtime, bundle, "echo ok") == "ok\n"


def test_proc_sys_is_readonly(oci_runtime, bundle):
    # a write to kernel/hostname could only ever reach the container's new UTS namespace
    assert bundle.has_namespace("uts")
    bundle.set_hostname("ro-test")
    out = run_ok(oci_runtime, bundle,
                 "echo changed > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE; "
                 "hostname; cat /proc/self/mountinfo")
    lines = out.splitlines()
    assert "WROTE" not in lines
    assert "ro-test" in lines
    assert "ro" in mountinfo_entry(out, "/proc/sys")[0]


def test_custom_readonly_path(oci_runtime, bundle):
    bundle.set_readonly_root(False)
    bundle.set_readonly_paths(["/var"])
    out = run_ok(oci_runtime, bundle,
                 "touch /var/x 2>/dev/null && echo VAR-WROTE; touch /tmp/x && echo TMP-WROTE")
    assert out.split() == ["TMP-WROTE"]


def test_tmpfs_mount(oci_runtime, bundle):
    bundle.add_mount("/scratch", type="tmpfs", source="tmpfs",
                     options=["nosuid", "nodev", "size=2m", "mode=1770"])
    out = run_ok(oci_runtime, bundle,
                 "stat -c '%a' /scratch; echo x > /scratch/f && echo WROTE; "
                 "cat /proc/self/mountinfo")
    lines = out.splitlines()
    assert lines[0] == "1770"
    assert lines[1] == "WROTE"
    opts, fstype, source, superopts = mountinfo_entry(out, "/scratch")
    assert fstype == "tmpfs" and source == "tmpfs"
    assert "nosuid" in opts and "nodev" in opts
    assert "size=2048k" in superopts


def test_bind_mount_readonly(oci_runtime, bundle, oci_tmp):
    src = os.path.join(oci_tmp, "data")
    os.makedirs(src)
    with open(os.path.join(src, "file"), "w") as f:
        f.write("from-host\n")
    bundle.add_bind_mount(src, "/data", readonly=True)
    out = run_ok(oci_runtime, bundle,
                 "cat /data/file; touch /data/new 2>/dev/null && echo WROTE; true")
    assert out == "from-host\n"
    assert not os.path.exists(os.path.join(src, "new"))


def test_bind_mount_writable(oci_runtime, bundle, oci_tmp):
    src = os.path.join(oci_tmp, "data")
    os.makedirs(src)
    bundle.add_bind_mount(src, "/data")
    run_ok(oci_runtime, bundle, "echo from-container > /data/new")
    with open(os.path.join(src, "new")) as f:
        assert f.read() == "from-container\n"


def test_bind_mount_file(oci_runtime, bundle, oci_tmp):
    src = os.path.join(oci_tmp, "single")
    with open(src, "w") as f:
        f.write("one file\n")
    bundle.add_bind_mount(src, "/etc/single", options=["bind"], readonly=True)
    assert run_ok(oci_runtime, bundle, "cat /etc/single") == "one file\n"


def test_default_devices(oci_runtime, bundle):
    out = run_ok(oci_runtime, bundle,
                 "for d in null zero full random urandom tty; do "
                 "stat -c '%n %F %t:%T %a' /dev/$d; done; readlink /dev/ptmx; readlink /dev/fd")
    lines = out.splitlines()
    assert lines[:6] == [
        "/dev/null character special file 1:3 666",
        "/dev/zero character special file 1:5 666",
        "/dev/full character special file 1:7 666",
        "/dev/random character special file 1:8 666",
        "/dev/urandom character special file 1:9 666",
        "/dev/tty character special file 5:0 666",
    ]
    assert lines[6:] == ["pts/ptmx", "/proc/self/fd"]


def test_linux_devices(oci_runtime, bundle):
    bundle.add_device("/dev/fuse", "c", 10, 229, file_mode=0o640, uid=0, gid=5)
    bundle.add_device("/dev/made/up", "c", 1, 3, file_mode=0o606, uid=1000, gid=1000)
    out = run_ok(oci_runtime, bundle,
                 "stat -c '%n %F %t:%T %a %u:%g' /dev/fuse /dev/made/up; "
                 "echo hi > /dev/made/up && echo WROTE")
    assert out.splitlines() == [
        "/dev/fuse character special file a:e5 640 0:5",
        "/dev/made/up character special file 1:3 606 1000:1000",
        "WROTE",
    ]


# A character major no driver uses: opening it fails with ENXIO when the device cgroup lets it
# through and with EPERM when the cgroup denies it (nothing can ever be reached through it).
NO_DRIVER_MAJOR = 4000


@pytest.mark.parametrize("allow,expected", [(False, "Operation not permitted"),
                                            (True, "No such device")])
def test_device_cgroup(oci_runtime, bundle, allow, expected):
    bundle.add_device("/dev/nodriver", "c", NO_DRIVER_MAJOR, 0, allow=allow)
    out = run_ok(oci_runtime, bundle, "cat /dev/nodriver 2>&1; true")
    assert expected in out
