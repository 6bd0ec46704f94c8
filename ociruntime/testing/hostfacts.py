"""Host facts a test adapts to, found out by asking the kernel (never by assuming one machine's
config). Each ``*_lacks`` function returns None where the host has the feature, else one sentence
naming the fact: a test then asserts the runtime's clear error for it, and a skip quotes it."""
import ctypes
import os
import subprocess
import time

# the new mount API's syscalls have one number on every architecture (asm-generic, Linux >= 5.2)
_SYS_OPEN_TREE = 428
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_AT_RECURSIVE = 0x8000
_AT_EMPTY_PATH = 0x1000
_MOUNT_ATTR_IDMAP = 0x100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _userns_holder():
    """A process in a new user namespace (root mapped to root), for its /proc/<pid>/ns/user."""
    p = subprocess.Popen(["unshare", "--user", "--map-root-user", "sleep", "30"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{p.pid}/exe").endswith("sleep"):
                return p
        except OSError:
            pass
        if p.poll() is not None:
            break
        time.sleep(0.005)
    p.kill()
    p.wait()
    return None


_IDMAP_CACHE = {}


def idmap_lacks(path):
    """Why an idmapped bind mount of ``path`` cannot be made on this host (the kernel has no
    mount_setattr, or the filesystem holding ``path`` has no FS_ALLOW_IDMAP, e.g. tmpfs before
    Linux 6.3, NFS, sysfs), or None where it can. Probed as the runtime does it: a detached clone of
    ``path`` (open_tree OPEN_TREE_CLONE, never attached anywhere) gets MOUNT_ATTR_IDMAP, then is
    closed; the user namespace comes from a process started and ended here."""
    st = os.stat(path)
    if st.st_dev in _IDMAP_CACHE:
        return _IDMAP_CACHE[st.st_dev]
    libc = ctypes.CDLL(None, use_errno=True)
    tree = libc.syscall(_SYS_OPEN_TREE, -100, os.fsencode(path), _OPEN_TREE_CLONE | os.O_CLOEXEC)
    if tree < 0:
        e = ctypes.get_errno()
        return (f"open_tree({path}) fails here: {os.strerror(e)} (the new mount API needs Linux >= 5.2 and "
                "CAP_SYS_ADMIN)")
    holder = None
    try:
        holder = _userns_holder()
        if holder is None:
            return "no user namespace could be made here (unshare --user failed)"
        ns = os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, ns)
            rc = libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH, ctypes.byref(attr),
                              ctypes.sizeof(attr))
            e = ctypes.get_errno()
        finally:
            os.close(ns)
    finally:
        os.close(tree)
        if holder is not None:
            holder.kill()
            holder.wait()
    if rc == 0:
        why = None
    elif e == 38:  # ENOSYS
        why = "this kernel has no mount_setattr (idmapped mounts need Linux >= 5.12)"
    else:
        why = f"the filesystem of {path} does not support idmapped mounts on this kernel (mount_setattr " \
              f"MOUNT_ATTR_IDMAP: {os.strerror(e)})"
    _IDMAP_CACHE[st.st_dev] = why
    return why
