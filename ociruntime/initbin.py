"""The C init binary (csrc/init, built into ociruntime/libexec): where it is, and the sealed copy every
container process is started from. A leaf: lifecycle modules and helpers (netdev) both use it."""
import fcntl
import os

LIBEXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libexec", "ociruntime-init")


def sealed_init():
    """A sealed memfd copy of the init binary: /proc/<pid>/exe of every container process we start
    is this memfd, never a host file the container could write through."""
    src = os.open(LIBEXEC, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(src).st_size
        fd = os.memfd_create("ociruntime-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        off = 0
        while off < size:
            n = os.sendfile(fd, src, off, size - off)
            if n <= 0:
                raise OSError("short copy of ociruntime-init")
            off += n
    finally:
        os.close(src)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd
