"""OOM notifiers for `events` (the managers' oom_notifier): v1 through memory.oom_control and an
eventfd, v2 by polling memory.events and cgroup.events."""
import os


class OOMv1:
    """memory.oom_control notifications through cgroup.event_control and an eventfd."""

    def __init__(self, path):
        self.path = path
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.ofd = os.open(os.path.join(path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        with open(os.path.join(path, "cgroup.event_control"), "w") as f:
            f.write(f"{self.efd} {self.ofd}")

    def fileno(self):
        return self.efd

    def poll(self):
        """(oom events seen, cgroup gone)."""
        n = 0
        try:
            n = os.eventfd_read(self.efd)
        except BlockingIOError:
            pass
        gone = not os.path.exists(os.path.join(self.path, "cgroup.event_control"))
        return (0 if gone else n), gone

    def close(self):
        for fd in (self.efd, self.ofd):
            try:
                os.close(fd)
            except OSError:
                pass


class OOMv2:
    """memory.events oom_kill counter and cgroup.events populated, polled."""

    def __init__(self, path):
        from ociruntime.cgroups import files
        self.files = files
        self.path = path
        self.last = files.read_keyed(path, "memory.events").get("oom_kill", 0)

    def fileno(self):
        return None

    def poll(self):
        # the counter first: an OOM kill of the init empties the cgroup at the same moment
        cur = self.files.read_keyed(self.path, "memory.events").get("oom_kill", self.last)
        n, self.last = max(0, cur - self.last), cur
        ev = self.files.read_keyed(self.path, "cgroup.events")
        return n, (not ev or ev.get("populated", 1) == 0)

    def close(self):
        pass
