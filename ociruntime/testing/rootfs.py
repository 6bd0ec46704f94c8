"""A minimal busybox root filesystem for bundle-level tests.

``busybox_rootfs(dest)`` builds one from Debian's ``busybox-static`` (``/bin/busybox``);
``RootfsTemplate`` builds it once (per test session) and gives every bundle a cheap copy
(the 2 MB busybox binary is hard-linked when possible, the rest is a few hundred symlinks
and small files).
"""

import os
import shutil
import subprocess
import tempfile

BUSYBOX = "/bin/busybox"

#: directories every rootfs gets (mode 0755 unless listed in _DIR_MODES)
ROOTFS_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc",
               "root", "run", "var", "var/tmp", "home", "home/test")
_DIR_MODES = {"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700}
_DIR_OWNERS = {"home/test": (1000, 1000)}

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "test:x:1000:1000:test user:/home/test:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = (
    "root:x:0:\n"
    "wheel:x:10:root\n"
    "tty:x:5:\n"
    "users:x:100:test\n"
    "test:x:1000:\n"
    "nogroup:x:65534:\n"
)


class RootfsError(RuntimeError):
    pass


def busybox_applets(busybox=BUSYBOX):
    """Return the applet paths relative to / (e.g. ``bin/sh``, ``usr/bin/env``).

    Uses ``busybox --list-full`` (install locations) and falls back to ``--list``
    (everything in ``bin/``)."""
    for flag, prefix in (("--list-full", ""), ("--list", "bin/")):
        try:
            out = subprocess.run([busybox, flag], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        names = [prefix + line.strip().lstrip("/") for line in out.splitlines() if line.strip()]
        if names:
            return names
    raise RootfsError(f"cannot list the applets of {busybox} (is busybox-static installed?)")


def busybox_rootfs(dest, busybox=BUSYBOX, hostname="busybox"):
    """Build a minimal busybox rootfs in ``dest`` (created if missing) and return its path.

    Layout: ``/bin/busybox`` plus one symlink per applet (``/bin/sh`` -> ``/bin/busybox`` …),
    the directories in ``ROOTFS_DIRS``, ``/etc/passwd`` and ``/etc/group`` with root (0),
    a test user (1000) and nobody (65534), ``/etc/hostname``."""
    if not os.path.exists(busybox):
        raise RootfsError(f"{busybox} not found: install busybox-static")
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, 0o755)
    for d in ROOTFS_DIRS:
        p = os.path.join(dest, d)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, _DIR_MODES.get(d, 0o755))
        if d in _DIR_OWNERS and os.geteuid() == 0:
            os.chown(p, *_DIR_OWNERS[d])
    bb = os.path.join(dest, "bin", "busybox")
    shutil.copyfile(busybox, bb)
    os.chmod(bb, 0o755)
    for rel in busybox_applets(busybox):
        if rel in ("bin/busybox",) or ".." in rel.split("/"):
            continue
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            continue
        os.symlink("/bin/busybox", path)
    files = {
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
        "etc/hostname": hostname + "\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n",
        "etc/resolv.conf": "",
        "etc/shadow": "root:*:0:0:99999:7:::\n",
    }
    for rel, text in files.items():
        with open(os.path.join(dest, rel), "w") as f:
            f.write(text)
        os.chmod(os.path.join(dest, rel), 0o600 if rel == "etc/shadow" else 0o644)
    return dest


def copy_rootfs(template, dest, hardlink_busybox=True):
    """Copy a rootfs template to ``dest`` (which must not exist).

    Everything is copied except ``bin/busybox``, which is hard-linked when ``hardlink_busybox``
    is true and both are on the same filesystem (a container that writes to its own
    ``/bin/busybox`` would then modify the template: use ``hardlink_busybox=False`` for such
    tests)."""
    template = os.path.abspath(template)
    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise RootfsError(f"{dest} already exists")
    bb_rel = os.path.join("bin", "busybox")

    def _ignore(d, names):
        if os.path.abspath(d) == os.path.join(template, "bin") and "busybox" in names:
            return ["busybox"]
        return []

    shutil.copytree(template, dest, symlinks=True, ignore=_ignore, copy_function=shutil.copy2)
    src_bb = os.path.join(template, bb_rel)
    dst_bb = os.path.join(dest, bb_rel)
    if hardlink_busybox:
        try:
            os.link(src_bb, dst_bb)
            return dest
        except OSError:
            pass
    shutil.copy2(src_bb, dst_bb)
    return dest


class RootfsTemplate:
    """A busybox rootfs built once (under ``base`` or a fresh temp dir) and copied per bundle."""

    def __init__(self, base=None, busybox=BUSYBOX):
        self._own_base = base is None
        self.base = base or tempfile.mkdtemp(prefix="oci-rootfs-tmpl-")
        os.chmod(self.base, 0o755)
        self.path = busybox_rootfs(os.path.join(self.base, "rootfs"), busybox=busybox)

    def copy_to(self, dest, hardlink_busybox=True):
        return copy_rootfs(self.path, dest, hardlink_busybox=hardlink_busybox)

    def remove(self):
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def __repr__(self):
        return f"RootfsTemplate({self.path!r})"
