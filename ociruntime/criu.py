"""A client of CRIU's RPC protocol (`criu swrk <fd>`): checkpoint/restore's only way to CRIU.

The messages are protobuf (proto2) `criu_req`/`criu_resp` as CRIU documents them (images/rpc.proto and
https://criu.org/RPC). We build their descriptors here at run time, from the field names and numbers of
that documented protocol, with the `protobuf` package: no generated code, no .proto file shipped. Only
the fields this runtime uses are declared; everything is `optional` on our side (wire-compatible with
CRIU's `required`), enums travel as their varint numbers.

A leaf: imported only by lifecycle/checkpoint.py (protobuf costs tens of ms to import; no other command
pays it, tests/unit/test_import_hygiene.py pins that).
"""
import os
import socket
import subprocess

from ociruntime.errors import OciError

# request types (criu_req_type)
DUMP, RESTORE, CHECK, PRE_DUMP, PAGE_SERVER, NOTIFY, FEATURE_CHECK, VERSION = 1, 2, 3, 4, 5, 6, 9, 10
# criu_cg_mode, by runc's --manage-cgroups-mode names
CG_MODES = {"soft": 3, "full": 4, "strict": 5, "ignore": 0}

# The least CRIU that runs on kernels >= 6.13 (the split [vvar]/[vvar_vclock] vma); before those kernels
# runc's own floor for its RPC use (3.15: status-ready notifications).
MIN_VERSION_NEW_KERNEL = 40100
MIN_VERSION = 31500

_S, _I32, _U32, _B = "string", "int32", "uint32", "bool"
# message: [(name, number, type or message name, repeated)]
_PROTO = {
    "criu_page_server_info": [("address", 1, _S), ("port", 2, _I32), ("pid", 3, _I32), ("fd", 4, _I32)],
    "ext_mount_map": [("key", 1, _S), ("val", 2, _S)],
    "join_namespace": [("ns", 1, _S), ("ns_file", 2, _S), ("extra_opt", 3, _S)],
    "inherit_fd": [("key", 1, _S), ("fd", 2, _I32)],
    "cgroup_root": [("ctrl", 1, _S), ("path", 2, _S)],
    "criu_opts": [
        ("images_dir_fd", 1, _I32), ("pid", 2, _I32), ("leave_running", 3, _B), ("ext_unix_sk", 4, _B),
        ("tcp_established", 5, _B), ("evasive_devices", 6, _B), ("shell_job", 7, _B), ("file_locks", 8, _B),
        ("log_level", 9, _I32), ("log_file", 10, _S), ("ps", 11, "criu_page_server_info"),
        ("notify_scripts", 12, _B), ("root", 13, _S), ("parent_img", 14, _S), ("track_mem", 15, _B),
        ("auto_dedup", 16, _B), ("work_dir_fd", 17, _I32), ("link_remap", 18, _B),
        ("ext_mnt", 23, "ext_mount_map", True), ("manage_cgroups", 24, _B), ("cg_root", 25, "cgroup_root", True),
        ("rst_sibling", 26, _B), ("inherit_fd", 27, "inherit_fd", True), ("skip_mnt", 31, _S, True),
        ("manage_cgroups_mode", 34, _I32), ("external", 37, _S, True), ("empty_ns", 38, _U32),
        ("join_ns", 39, "join_namespace", True), ("freeze_cgroup", 44, _S), ("timeout", 45, _U32),
        ("lazy_pages", 48, _B), ("status_fd", 49, _I32), ("orphan_pts_master", 50, _B),
        ("lsm_profile", 53, _S), ("lsm_mount_context", 63, _S), ("network_lock", 64, _I32),
    ],
    "criu_dump_resp": [("restored", 1, _B)],
    "criu_restore_resp": [("pid", 1, _I32)],
    "criu_notify": [("script", 1, _S), ("pid", 2, _I32)],
    "criu_features": [("mem_track", 1, _B), ("lazy_pages", 2, _B), ("pidfd_store", 3, _B)],
    "criu_req": [("type", 1, _I32), ("opts", 2, "criu_opts"), ("notify_success", 3, _B), ("keep_open", 4, _B),
                 ("features", 5, "criu_features"), ("pid", 6, _U32)],
    "criu_version": [("major_number", 1, _I32), ("minor_number", 2, _I32), ("gitid", 3, _S),
                     ("sublevel", 4, _I32), ("extra", 5, _I32), ("name", 6, _S)],
    "criu_resp": [("type", 1, _I32), ("success", 2, _B), ("dump", 3, "criu_dump_resp"),
                  ("restore", 4, "criu_restore_resp"), ("notify", 5, "criu_notify"),
                  ("ps", 6, "criu_page_server_info"), ("cr_errno", 7, _I32), ("features", 8, "criu_features"),
                  ("cr_errmsg", 9, _S), ("version", 10, "criu_version"), ("status", 11, _I32)],
}
_classes = None


def messages():
    """{name: message class}, built once from _PROTO."""
    global _classes
    if _classes is not None:
        return _classes
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise CriuError("checkpoint/restore talks to CRIU with the Python package protobuf, which is not "
                        "installed (pip install protobuf)")
    F = descriptor_pb2.FieldDescriptorProto
    types = {_S: F.TYPE_STRING, _I32: F.TYPE_INT32, _U32: F.TYPE_UINT32, _B: F.TYPE_BOOL}
    fdp = descriptor_pb2.FileDescriptorProto(name="ociruntime_criu_rpc.proto", package="ociruntime_criu",
                                             syntax="proto2")
    for mname, fields in _PROTO.items():
        m = fdp.message_type.add(name=mname)
        for spec in fields:
            name, number, typ = spec[:3]
            f = m.field.add(name=name, number=number,
                            label=F.LABEL_REPEATED if len(spec) > 3 else F.LABEL_OPTIONAL)
            if typ in types:
                f.type = types[typ]
            else:
                f.type = F.TYPE_MESSAGE
                f.type_name = f".ociruntime_criu.{typ}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = getattr(message_factory, "GetMessageClass", None)
    out = {}
    for mname in _PROTO:
        d = pool.FindMessageTypeByName(f"ociruntime_criu.{mname}")
        out[mname] = get(d) if get else message_factory.MessageFactory(pool).GetPrototype(d)
    _classes = out
    return out


class CriuError(OciError):
    pass


def kernel_needs_41():
    try:
        rel = os.uname().release.split("-")[0].split(".")
        return (int(rel[0]), int(rel[1])) >= (6, 13)
    except (ValueError, IndexError):
        return True


def find(path=""):
    """The criu binary: --criu PATH, else `criu` on $PATH (as runc). A clear error when there is none."""
    if path:
        if "/" not in path:
            import shutil
            found = shutil.which(path)
            if not found:
                raise CriuError(f"criu {path!r} not found in $PATH: checkpoint/restore needs CRIU >= "
                                f"{_fmt(_min_version())} (set --criu PATH)")
            return found
        if not os.access(path, os.X_OK):
            raise CriuError(f"criu {path}: not an executable file: checkpoint/restore needs CRIU >= "
                            f"{_fmt(_min_version())}")
        return path
    import shutil
    found = shutil.which("criu")
    if not found:
        raise CriuError(f"criu not found in $PATH: checkpoint/restore needs CRIU >= {_fmt(_min_version())} "
                        f"(install it or give --criu PATH)")
    return found


def _min_version():
    return MIN_VERSION_NEW_KERNEL if kernel_needs_41() else MIN_VERSION


def _fmt(v):
    return f"{v // 10000}.{v // 100 % 100}" + (f".{v % 100}" if v % 100 else "")


class Swrk:
    """One `criu swrk` service process and its socket. The caller may place the process (cgroups)
    between start() and the first request."""

    def __init__(self, binary, pass_fds=(), quiet=False):
        self.binary = binary
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fds = [theirs.fileno()] + list(pass_fds)
            for fd in fds:
                os.set_inheritable(fd, True)
            try:
                # quiet: CRIU's own stderr (it logs to a file once a request names one) is not ours to
                # print; a restore keeps our stdio, which CRIU hands to the restored process
                self.proc = subprocess.Popen([binary, "swrk", str(theirs.fileno())], pass_fds=fds,
                                             close_fds=True, stdin=subprocess.DEVNULL if quiet else None,
                                             stdout=subprocess.DEVNULL if quiet else None,
                                             stderr=subprocess.DEVNULL if quiet else None)
            except OSError as e:
                raise CriuError(f"start criu {binary}: {e.strerror}")
        finally:
            theirs.close()
        self.pid = self.proc.pid

    def send(self, req):
        self.sock.send(req.SerializeToString())

    def recv(self):
        """(criu_resp or None at EOF, [fds])."""
        data, anc, _f, _a = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(16), socket.MSG_CMSG_CLOEXEC)
        fds = []
        for level, typ, payload in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += [int.from_bytes(payload[i:i + 4], "little") for i in range(0, len(payload) - 3, 4)]
        if not data:
            return None, fds
        return messages()["criu_resp"].FromString(data), fds

    def close(self):
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def request(req_type, opts=None, **extra):
    M = messages()
    req = M["criu_req"](type=req_type, **extra)
    if opts is not None:
        req.opts.CopyFrom(opts)
    return req


def version(binary, swrk=None):
    """CRIU's version as major*10000 + minor*100 + sublevel, over RPC (VERSION request, CRIU >= 3.0).
    With swrk: asked on that service with keep_open, so the same process serves the real request next
    (one CRIU start-up, not two). A CRIU that cannot start on this kernel (Debian 12's 3.17 on >= 6.13)
    or is too old gets a clear error naming the version needed, with what `criu --version` says."""
    need = _min_version()
    s = swrk or Swrk(binary, quiet=True)
    try:
        s.send(request(VERSION, keep_open=swrk is not None))
        resp, _ = s.recv()
    except OSError:
        resp = None
    finally:
        if swrk is None:
            s.close()
    if resp is None or not resp.success or not resp.HasField("version"):
        said = _cli_version(binary)
        raise CriuError(f"criu {binary} ({said or 'unknown version'}) does not work on this kernel "
                        f"({os.uname().release}): checkpoint/restore needs CRIU >= {_fmt(need)}")
    v = resp.version
    n = v.major_number * 10000 + v.minor_number * 100 + (v.sublevel if v.HasField("sublevel") else 0)
    if n < need:
        raise CriuError(f"criu {binary} is version {_fmt(n)}: checkpoint/restore needs CRIU >= {_fmt(need)}"
                        + (f" on kernel {os.uname().release}" if need == MIN_VERSION_NEW_KERNEL else ""))
    return n


def _cli_version(binary):
    try:
        r = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in r.stdout.decode(errors="replace").splitlines():
        if line.startswith("Version:"):
            return "version " + line.split(":", 1)[1].strip()
    return ""


def features(binary, swrk=None, **wanted):
    """FEATURE_CHECK: {name: bool} for the features asked (mem_track, lazy_pages); on swrk with keep_open
    when given."""
    M = messages()
    s = swrk or Swrk(binary, quiet=True)
    try:
        s.send(request(FEATURE_CHECK, features=M["criu_features"](**{k: True for k in wanted}),
                       keep_open=swrk is not None))
        resp, _ = s.recv()
    finally:
        if swrk is None:
            s.close()
    if resp is None:
        return {k: False for k in wanted}
    # CRIU answers with success false when a feature is missing, the features field saying which
    return {k: bool(resp.HasField("features") and getattr(resp.features, k)) for k in wanted}


# CRIU versions known to read SO_PASSSEC on every socket they dump (criu/sockets.c dump_socket_opts)
INET_PASSSEC_NEEDED_UP_TO = 40201


def kernel_refuses_inet_passsec():
    """Kernels >= 6.18 answer getsockopt(SO_PASSSEC) with EOPNOTSUPP on anything but unix/netlink
    sockets; CRIU <= 4.2.1 then cannot dump any TCP/UDP socket ("Can't get 1:34 opt")."""
    SO_PASSSEC = 34
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.getsockopt(socket.SOL_SOCKET, SO_PASSSEC)
        return False
    except OSError as e:
        import errno
        return e.errno == errno.EOPNOTSUPP
    finally:
        s.close()


# CRIU's lazy-pages transfer reads pages through a pipe it enlarges to PIPE_MAX_SIZE pages
# ((1 << PAGE_ALLOC_COSTLY_ORDER) * PAGE_SIZE / sizeof(struct pipe_buffer) = 819 pages, 3.2 MiB):
# past fs.pipe-max-size that needs CAP_SYS_RESOURCE (pipe(7)); the kernel rounds to 1024 pages
LAZY_PIPE_BYTES = 4 << 20
CAP_SYS_RESOURCE = 24


def lazy_pages_blocker():
    """Why CRIU's lazy-pages transfer cannot work for this process, or ''."""
    try:
        with open("/proc/self/status") as f:
            eff = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))
        with open("/proc/sys/fs/pipe-max-size") as f:
            pmax = int(f.read())
    except (OSError, StopIteration, ValueError):
        return ""
    if eff & (1 << CAP_SYS_RESOURCE) or pmax >= LAZY_PIPE_BYTES:
        return ""
    return (f"CRIU's page transfer needs pipes of {LAZY_PIPE_BYTES >> 20} MiB, above fs.pipe-max-size "
            f"({pmax}), and this process lacks CAP_SYS_RESOURCE")


# CRIU's log lines that are noise, not the reason (a CRIU without CAP_SYS_RESOURCE says it every time)
_NOISE = ("rlimit: Can't setup RLIMIT_NOFILE",)


def one_line(text):
    return "; ".join(ln.strip() for ln in text.splitlines() if ln.strip() and not any(n in ln for n in _NOISE))


def log_tail(images_or_work_dir, name, lines=3):
    """The last error lines of CRIU's log (for a one-line message), or ''."""
    try:
        with open(os.path.join(images_or_work_dir, name), "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 65536))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    errs = [ln.strip() for ln in text.splitlines() if "Error" in ln and not any(n in ln for n in _NOISE)]
    return "; ".join(errs[-lines:])
