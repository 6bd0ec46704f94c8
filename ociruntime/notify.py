"""NOTIFY_SOCKET passthrough (sd_notify), as runc: `create` bind-mounts <root>/<id>/notify read-only at
/run/notify and points the container's NOTIFY_SOCKET at /run/notify/notify.sock; `start` binds that
datagram socket, releases the container, waits for its READY=… and forwards READY and MAINPID to the
NOTIFY_SOCKET it was given (podman --sdnotify=container, systemd units running containers)."""
import os
import select

IN_CONTAINER = "/run/notify/notify.sock"


def prepare(config, cdir_path):
    """create: the directory, the mount and the env entry."""
    d = os.path.join(cdir_path, "notify")
    os.mkdir(d, 0o755)
    config.setdefault("mounts", []).append({"destination": "/run/notify", "type": "bind", "source": d,
                                            "options": ["bind", "nosuid", "noexec", "nodev", "ro"]})
    proc = config.setdefault("process", {})
    proc["env"] = [e for e in proc.get("env") or [] if not e.startswith("NOTIFY_SOCKET=")] + \
        [f"NOTIFY_SOCKET={IN_CONTAINER}"]


def bind(cdir_path):
    from ociruntime.lean import socket as _socket
    path = os.path.join(cdir_path, "notify", "notify.sock")
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s.bind(path)
    os.chmod(path, 0o777)
    return s


def forward_ready(sock, pid, host_path):
    """Wait for READY=… from the container (or its exit) and pass READY and MAINPID on."""
    from ociruntime.lean import socket as _socket
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        while True:
            r, _, _ = select.select([sock, pidfd], [], [])
            if pidfd in r and sock not in r:
                return  # the container exited without READY
            data = sock.recv(4096).decode(errors="replace")
            ready = [line for line in data.split("\n") if line.startswith("READY=")]
            if ready:
                break
        out = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            addr = "\0" + host_path[1:] if host_path.startswith("@") else host_path
            out.sendto(f"{ready[0]}\nMAINPID={pid}\n".encode(), addr)
        finally:
            out.close()
    finally:
        os.close(pidfd)
        sock.close()
