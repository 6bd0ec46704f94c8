"""Reading and writing cgroup control files, with runc's error texts.

runc (opencontainers/cgroups file.go) reports an open failure as ``openat2 <path>: <errno text>``
and a write failure as ``failed to write "<data>": write <path>: <errno text>``; Go's errno texts
are the C ones with a lower-case first letter. Tests can point ``ROOT_PREFIX``-free fake trees at
these helpers: nothing here knows where cgroupfs is mounted.
"""
import errno
import os

from ociruntime.errors import OciError


class CgroupError(OciError):
    """A cgroup operation failed; ``errno`` is set when a syscall failed."""

    def __init__(self, msg, err=None):
        super().__init__(msg)
        self.errno = err


class NoPath(CgroupError):
    """The controller needed for a setting is not available (runc's path == "" case)."""


class HostLacks(CgroupError):
    """A setting this host's kernel has no control file for (e.g. blkio weights without BFQ). ``field``
    is its path inside linux.resources (("blockIO", "weight")): the caller names it as a JSON pointer
    of the document it came from (config.json, or update's request)."""

    def __init__(self, field, reason):
        super().__init__(reason, errno.ENOENT)
        self.field = tuple(field)
        self.reason = reason

    def pointer(self, base=""):
        return base + "".join("/" + str(p) for p in self.field)


def strerror(e):
    s = os.strerror(e)
    return s[:1].lower() + s[1:]


def read(d, name):
    path = os.path.join(d, name)
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise CgroupError(f"openat2 {path}: {strerror(e.errno)}", e.errno)


def read_opt(d, name, default=None):
    """Contents or ``default`` when the file does not exist (or the cgroup is gone)."""
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV, errno.ENOTDIR):
            return default
        raise CgroupError(f"openat2 {os.path.join(d, name)}: {strerror(e.errno)}", e.errno)


def write(d, name, data):
    """One write(2) of ``data`` (the kernel parses each write as one command)."""
    if not d:
        raise NoPath(f"no directory specified for {name}")
    path = os.path.join(d, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"openat2 {path}: {strerror(e.errno)}", e.errno)
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise CgroupError(f'failed to write "{data}": write {path}: {strerror(e.errno)}', e.errno)
    finally:
        os.close(fd)


def write_lines(d, name, data):
    """runc WriteFileByLine: a value holding several lines is written one line per write(2)."""
    if "\n" not in data:
        return write(d, name, data)
    path = os.path.join(d, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"openat2 {path}: {strerror(e.errno)}", e.errno)
    try:
        for line in data.splitlines(keepends=True):
            try:
                os.write(fd, line.encode())
            except OSError as e:
                raise CgroupError(f'failed to write "{line}": write {path}: {strerror(e.errno)}', e.errno)
    finally:
        os.close(fd)


def parse_uint(s):
    """fscommon.ParseUint: negative values read as 0, "max" as 2**64-1."""
    s = s.strip()
    if s == "max":
        return (1 << 64) - 1
    try:
        v = int(s, 10)
    except ValueError:
        raise CgroupError(f"unable to parse {s!r} as a uint")
    if v < 0:
        return 0
    return min(v, (1 << 64) - 1)


def read_uint(d, name):
    return parse_uint(read(d, name))


def read_uint_opt(d, name, default=None):
    s = read_opt(d, name)
    return default if s is None else parse_uint(s)


def read_keyed(d, name):
    """A flat keyed file ("key value" per line) as {key: int}; {} when absent."""
    s = read_opt(d, name)
    out = {}
    if s is None:
        return out
    for line in s.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = parse_uint(parts[1])
            except CgroupError:
                pass
    return out
