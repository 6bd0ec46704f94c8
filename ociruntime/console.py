"""Foreground terminals (`run -t`, `exec -t` without --console-socket): receive the pty master the init
sends over an internal socketpair, put our terminal in raw mode, relay I/O and window size (runc tty.go)."""
import array
import os
import select
import signal


def socketpair():
    from ociruntime.lean import socket as _socket
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return a, b


def recv_master(sock):
    from ociruntime.lean import socket as _socket
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(fds.itemsize))
    for level, typ, data in anc:
        if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    if len(fds) != 1:
        raise OSError("console socket: expected exactly one fd")
    return fds[0]


def _copy_winsize(src, dst):
    import fcntl
    import termios
    try:
        ws = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, ws)
    except OSError:
        pass


def relay(master, pid):
    """Relay stdin -> master and master -> stdout until the process exits; returns its exit code."""
    import termios
    import tty
    old = None
    if os.isatty(0):
        old = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_winsize(0, master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(0, master))
    code = None
    try:
        fds = [master, 0]
        while True:
            try:
                r, _, _ = select.select(fds, [], [], 0.1)
            except InterruptedError:
                continue
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if data:
                    os.write(1, data)
                elif code is not None:
                    break
            if 0 in r:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
            if code is None:
                wpid, status = os.waitpid(pid, os.WNOHANG)
                if wpid == pid:
                    code = os.waitstatus_to_exitcode(status)
                    fds = [master]
            elif not r:
                break
    finally:
        if old is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, old)
    return 128 - code if code < 0 else code
