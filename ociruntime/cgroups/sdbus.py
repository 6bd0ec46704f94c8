"""A minimal systemd D-Bus client (jeepney, blocking I/O): only what the systemd cgroup driver needs.

It talks to systemd's private socket (``/run/systemd/private`` for the system instance,
``$XDG_RUNTIME_DIR/systemd/private`` for the user's own instance when rootless): a direct
peer-to-peer connection, no bus daemon needed, as runc does for root. systemd sends its signals
(``JobRemoved``) to every direct connection unconditionally, so there is no ``Subscribe`` (as runc:
a subscribed private connection was seen left unanswered for minutes by a loaded systemd). Imported only on the
``--systemd-cgroup`` path (jeepney is not loaded by any other command).
"""
import os
import time

from jeepney import DBusAddress, MatchRule, MessageType, Properties, new_method_call
from jeepney.io.blocking import DBusConnection, DBusConnectionBase, prep_socket
from jeepney.io.common import MessageFilters
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from ociruntime.errors import OciError

_MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                       interface="org.freedesktop.systemd1.Manager")
# runc waits 30 s for a job; a loaded (or emulated) machine with a systemd busy reloading needs more
JOB_TIMEOUT = 90.0


class _Direct(DBusConnection):
    """A peer-to-peer connection to systemd: no Hello (there is no bus daemon to greet)."""

    def __init__(self, sock):
        DBusConnectionBase.__init__(self, sock)
        self._filters = MessageFilters()


def private_socket(rootless):
    if not rootless:
        return "/run/systemd/private"
    xdg = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return os.path.join(xdg, "systemd", "private")


class DBusError(OciError):
    def __init__(self, msg, name=None):
        super().__init__(msg)
        self.name = name


class Systemd:
    """One connection to a systemd instance (system, or the user's when ``rootless``)."""

    def __init__(self, rootless=False, timeout=JOB_TIMEOUT):
        self.rootless = rootless
        self.timeout = timeout
        self._connect()

    def _connect(self):
        path = private_socket(self.rootless)
        try:
            sock = prep_socket(path)
        except (OSError, TimeoutError) as e:
            who = "the user's systemd instance" if self.rootless else "systemd"
            raise OciError(f"--systemd-cgroup: cannot connect to {who} at {path}: "
                           f"{getattr(e, 'strerror', None) or e}")
        sock.settimeout(None)  # prep_socket leaves its auth deadline on the socket; the selector times us
        self.conn = _Direct(sock)
        self.jobs = self.conn.filter(MatchRule(type="signal", interface="org.freedesktop.systemd1.Manager",
                                               member="JobRemoved"), bufsize=1 << 16)

    def close(self):
        try:
            self.jobs.close()
            self.conn.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method, signature=None, body=(), addr=_MANAGER):
        msg = new_method_call(addr, method, signature, body)
        try:
            reply = self.conn.send_and_get_reply(msg, timeout=self.timeout)
        except TimeoutError:
            raise DBusError(f"systemd: {method}: no reply in {self.timeout:.0f}s")
        except OSError as e:
            raise DBusError(f"systemd: {method}: {e}")
        if reply.header.message_type is MessageType.error:
            err = DBusErrorResponse(reply)
            text = err.data[0] if err.data and isinstance(err.data[0], str) else str(err.data)
            raise DBusError(f"{text} ({err.name})" if text else str(err.name), err.name)
        return unwrap_msg(reply)

    def _wait_job(self, job, what):
        """Waits for JobRemoved(id, job, unit, result) of ``job``; returns its result ("done", …)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for msg in list(self.jobs.queue):
                if msg.body[1] == job:
                    self.jobs.queue.remove(msg)
                    return msg.body[3]
            left = deadline - time.monotonic()
            if left <= 0:
                raise DBusError(f"Timeout waiting for systemd to {what}")
            try:
                self.conn.recv_messages(timeout=left)
            except TimeoutError:
                pass
            except OSError as e:
                raise DBusError(f"systemd: {what}: {e}")

    # --- the manager's methods ---------------------------------------------------------------

    def start_transient_unit(self, name, props):
        """StartTransientUnit(name, "replace", props, []) and wait for its job (runc startUnit).
        A leftover unit of the same name (failed, say) is reset once and the start retried."""
        try:
            (job,) = self.call("StartTransientUnit", "ssa(sv)a(sa(sv))", (name, "replace", props, []))
        except DBusError as e:
            if e.name != "org.freedesktop.systemd1.UnitExists":
                raise DBusError(f"unable to start unit {name!r}: {e}", e.name)
            self.reset_failed_unit(name)
            try:
                (job,) = self.call("StartTransientUnit", "ssa(sv)a(sa(sv))", (name, "replace", props, []))
            except DBusError as e2:
                raise DBusError(f"unable to start unit {name!r}: {e2}", e2.name)
        result = self._wait_job(job, f"create {name}")
        if result != "done":
            raise DBusError(f"error creating systemd unit `{name}`: got `{result}`")

    def stop_unit(self, name):
        """StopUnit(name, "replace") and wait; a unit systemd no longer knows counts as stopped."""
        try:
            (job,) = self.call("StopUnit", "ss", (name, "replace"))
        except DBusError as e:
            if e.name == "org.freedesktop.systemd1.NoSuchUnit":
                return
            raise
        result = self._wait_job(job, f"stop {name}")
        if result != "done":
            raise DBusError(f"error removing systemd unit `{name}`: got `{result}`")

    def reset_failed_unit(self, name):
        try:
            self.call("ResetFailedUnit", "s", (name,))
        except DBusError:
            pass  # not failed, or not loaded: nothing to reset

    def set_unit_properties(self, name, props):
        if props:
            self.call("SetUnitProperties", "sba(sv)", (name, True, props))

    def unit_property(self, name, iface, prop):
        (path,) = self.call("GetUnit", "s", (name,))
        addr = DBusAddress(path, bus_name="org.freedesktop.systemd1", interface=iface)
        (val,) = self.call_msg(Properties(addr).get(prop))
        return val[1]

    def manager_property(self, prop):
        (val,) = self.call_msg(Properties(_MANAGER).get(prop))
        return val[1]

    def call_msg(self, msg):
        reply = self.conn.send_and_get_reply(msg, timeout=self.timeout)
        return unwrap_msg(reply)

    def version(self):
        """systemd's version number (252 from "252.38-1~deb12u1")."""
        v = str(self.manager_property("Version")).lstrip("v")
        digits = ""
        for ch in v:
            if not ch.isdigit():
                break
            digits += ch
        return int(digits or 0)
