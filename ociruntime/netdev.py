"""linux.netDevices (config-linux.md "Network Devices"): move host network devices into the container.

No Python ever enters the container's network namespace. Stage-1 of the init, once it has created or
joined that namespace, opens a NETLINK_ROUTE socket there and hands it over (SYNC_NETDEV_FD); a
netlink socket stays bound to the namespace it was made in. With it:

* SIOCGSKNS on that socket gives an fd of the namespace itself (so no /proc/<pid> lookup, no pid race);
* from the runtime's own namespace, one RTM_NEWLINK per device with IFLA_NET_NS_FD and IFLA_IFNAME
  moves and renames it in one step (a "%d" template lets the kernel pick a free name);
* through the container-side socket: the device's permanent global addresses (IFA_F_PERMANENT,
  RT_SCOPE_UNIVERSE), which the move drops, are added back and the link is set up.

Like runc, the link is set down before it leaves, nothing is done on delete (the spec: the runtime
MUST NOT move devices out; when the namespace goes away the kernel returns physical devices to the
initial namespace and destroys virtual ones). Unlike runc, a create that fails after devices were
moved puts them back (name, permanent addresses, up state): runtime.md asks for an error to leave
things "as if the operation were never attempted".

pyroute2 (about 0.2 s to import) is imported here only, and this module only for a config that has
netDevices.
"""
import errno as _errno
import os

from ociruntime.errors import ConfigError, OciError

SIOCGSKNS = 0x894C          # linux/sockios.h: fd of the socket's network namespace
IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
# address flags worth carrying over; the rest (tentative, dadfailed, deprecated, ...) are state
IFA_KEEP_FLAGS = 0x02 | 0x10 | 0x100 | 0x200 | 0x400  # NODAD HOMEADDRESS MANAGETEMPADDR NOPREFIXROUTE MCAUTOJOIN


def pointer(host_name, *rest):
    return "/linux/netDevices/" + "/".join(str(p).replace("~", "~0").replace("/", "~1")
                                           for p in (host_name,) + rest)


def check_host(devices):
    """Before anything is spawned: every device exists in the runtime's network namespace.
    if_nametoindex is an ioctl in the caller's namespace (sysfs may show another one)."""
    from ociruntime.lean import socket as _socket
    if os.geteuid() != 0:
        raise ConfigError("/linux/netDevices", "network devices are not supported for rootless containers")
    for name in devices:
        try:
            _socket.if_nametoindex(name)
        except OSError:
            raise ConfigError(pointer(name), f"no network device {name!r} in the runtime's network namespace")


def _err(e):
    code = getattr(e, "code", None) or getattr(e, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    return str(e)


class Mover:
    """One create's devices. move() on SYNC_NETDEV_FD; rollback() if the create fails afterwards;
    close() in any case (the container keeps its namespace alive through its own processes)."""

    def __init__(self, devices):
        self.devices = dict(devices)   # host name -> name in the container (may be a template)
        self.host = self.ctr = self.ctr_priv = None
        self.ns_fd = -1
        self.moved = []                # dicts: host, index (host), cindex, addrs, was_up, moved
        self.closed = False

    def move(self, nl_fd):
        from pyroute2.iproute.linux import IPRoute
        try:
            os.set_inheritable(nl_fd, False)
            self.ns_fd = _ioctl_fd(nl_fd, SIOCGSKNS)
            self.ctr = IPRoute(fileno=nl_fd, groups=0)   # owns nl_fd from here on
        except Exception as e:
            if self.ctr is None:
                os.close(nl_fd)
            raise OciError(f"network devices: use the container's network namespace: {_err(e)}")
        try:
            self.host = IPRoute(groups=0)
        except Exception as e:
            raise OciError(f"network devices: netlink socket in the runtime's network namespace: {_err(e)}")
        ctr_links = self._ctr_links()
        taken = set()
        for link in ctr_links.values():
            taken.add(link.get("IFLA_IFNAME"))
            taken.update(_altnames(link))
        # every check first: an error here leaves every device where it was
        plan = []
        for host_name, target in self.devices.items():
            idx = self.host.link_lookup(ifname=host_name)
            if not idx:
                raise ConfigError(pointer(host_name), f"no network device {host_name!r} in the runtime's "
                                  "network namespace")
            if "%" not in target and target in taken:
                raise ConfigError(pointer(host_name, "name") if target != host_name else pointer(host_name),
                                  f"a network device named {target!r} already exists in the container's "
                                  "network namespace")
            plan.append((host_name, target, idx[0]))
        for host_name, target, idx in plan:
            self._move_one(host_name, target, idx, ctr_links)

    def _ctr_links(self):
        return {link["index"]: link for link in self.ctr.get_links()}

    def _move_one(self, host_name, target, idx, ctr_links):
        link = self.host.get_links(idx)[0]
        rec = {"host": host_name, "index": idx, "cindex": None, "was_up": bool(link["flags"] & IFF_UP),
               "moved": False, "mac": link.get("IFLA_ADDRESS"),
               "addrs": [_addr_spec(a) for a in self.host.get_addr(index=idx)]}
        self.moved.append(rec)
        what = f"move network device {host_name!r} into the container"
        try:
            if rec["was_up"]:
                self.host.link("set", index=idx, state="down")
            self.host.link("set", index=idx, net_ns_fd=self.ns_fd, ifname=target)
        except Exception as e:
            # the kernel moves first and renames after: a failed rename leaves it there, under its old name
            if not self.host.link_lookup(ifname=host_name):
                rec["moved"] = True
                rec["cindex"] = next((i for i, lk in self._ctr_links().items()
                                      if lk.get("IFLA_IFNAME") == host_name), None)
            raise OciError(f"{what}: {_err(e)}")
        rec["moved"] = True
        # find it on the other side: by name, or (a template) the new link with its MAC address
        now = self._ctr_links()
        if "%" not in target:
            found = [i for i, lk in now.items() if lk.get("IFLA_IFNAME") == target]
        else:
            new = [i for i in now if i not in ctr_links]
            found = [i for i in new if now[i].get("IFLA_ADDRESS") == rec["mac"]] or new
        if not found:
            raise OciError(f"{what}: it is not in the container's network namespace after the move")
        cidx = rec["cindex"] = found[0]
        ctr_links.clear()
        ctr_links.update(now)
        try:
            for a in rec["addrs"]:
                if a["permanent"] and a["scope"] == RT_SCOPE_UNIVERSE:
                    self.ctr.addr("add", index=cidx, **a["spec"])
            self.ctr.link("set", index=cidx, state="up")
        except Exception as e:
            raise OciError(f"configure network device {target!r} in the container: {_err(e)}")

    def rollback(self):
        """Best effort, newest first: back into our namespace under the host name, with its permanent
        addresses and its up state. Moving a device into our namespace takes rights over it on the
        sending socket's opener: stage-1's socket has them unless the container has its own user
        namespace; then a socket made in the container's namespace with our credentials (a short
        `ociruntime-init --netns-socket` helper, C) does it."""
        if self.host is None:
            return
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            for rec in reversed(self.moved):
                try:
                    if rec["moved"]:
                        if rec["cindex"] is None or not self._move_back(rec, own):
                            continue
                        idx = self.host.link_lookup(ifname=rec["host"])
                        if not idx:
                            continue
                        for a in rec["addrs"]:
                            if a["permanent"]:
                                try:
                                    self.host.addr("add", index=idx[0], **a["spec"])
                                except Exception:
                                    pass
                    else:
                        idx = [rec["index"]]
                    if rec["was_up"]:
                        self.host.link("set", index=idx[0], state="up")
                except Exception:
                    continue
            self.moved = []
        finally:
            os.close(own)

    def _move_back(self, rec, own):
        for attempt in (0, 1):
            ipr = self.ctr if attempt == 0 else self._privileged_ctr()
            if ipr is None:
                return False
            try:
                ipr.link("set", index=rec["cindex"], state="down")
                ipr.link("set", index=rec["cindex"], net_ns_fd=own, ifname=rec["host"])
                return True
            except Exception as e:
                if getattr(e, "code", None) != _errno.EPERM:
                    return False
        return False

    def _privileged_ctr(self):
        if self.ctr_priv is None and self.ns_fd >= 0:
            fd = _netns_socket(self.ns_fd)
            if fd >= 0:
                from pyroute2.iproute.linux import IPRoute
                self.ctr_priv = IPRoute(fileno=fd, groups=0)
        return self.ctr_priv

    def close(self):
        if self.closed:
            return
        self.closed = True
        for ipr in (self.ctr, self.ctr_priv, self.host):
            if ipr is not None:
                try:
                    ipr.close()
                except Exception:
                    pass
        if self.ns_fd >= 0:
            os.close(self.ns_fd)
            self.ns_fd = -1


def _netns_socket(ns_fd):
    """A NETLINK_ROUTE socket in the namespace ns_fd with our credentials, from the sealed init run as
    `ociruntime-init --netns-socket 3 4` (setns + socket in C: no Python enters the namespace); -1 if
    that fails."""
    from ociruntime.lean import socket as _socket
    from ociruntime.initbin import sealed_init
    from ociruntime._shim import ffi, lib
    mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    fd = -1
    try:
        init_fd = sealed_init()
        try:
            keep = [ffi.new("char[]", a) for a in (b"ociruntime-init", b"--netns-socket", b"3", b"4")]
            argv = ffi.new("char *[]", keep + [ffi.NULL])
            pidfd = ffi.new("int *", -1)
            pid = lib.oci_spawn(init_fd, argv, ffi.new("int[]", [ns_fd, theirs.fileno()]), 2, 3, -1, pidfd)
        finally:
            os.close(init_fd)
        theirs.close()
        if pid < 0:
            return -1
        if pidfd[0] >= 0:
            os.close(pidfd[0])
        try:
            _msg, anc, _f, _a = mine.recvmsg(16, _socket.CMSG_SPACE(4), _socket.MSG_CMSG_CLOEXEC)
            for level, typ, data in anc:
                if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS and len(data) >= 4:
                    fd = int.from_bytes(data[:4], "little")
        finally:
            os.waitpid(pid, 0)
    except OSError:
        return -1
    finally:
        mine.close()
        if theirs.fileno() >= 0:
            theirs.close()
    return fd


def _ioctl_fd(fd, req):
    import fcntl
    r = fcntl.ioctl(fd, req)
    if not isinstance(r, int) or r < 0:
        raise OSError(_errno.EINVAL, "ioctl")
    os.set_inheritable(r, False)
    return r


def _altnames(link):
    props = link.get("IFLA_PROP_LIST")
    if not props:
        return []
    try:
        return [v for v in props.get_attrs("IFLA_ALT_IFNAME")]
    except Exception:
        return []


def _addr_spec(a):
    flags = a.get("IFA_FLAGS")
    if flags is None:
        flags = a["flags"]
    spec = {"family": a["family"], "prefixlen": a["prefixlen"], "scope": a["scope"]}
    for nla, key in (("IFA_ADDRESS", "address"), ("IFA_LOCAL", "local"), ("IFA_BROADCAST", "broadcast")):
        v = a.get(nla)
        if v is not None:
            spec[key] = v
    if flags & IFA_KEEP_FLAGS:
        spec["flags"] = flags & IFA_KEEP_FLAGS
    return {"spec": spec, "permanent": bool(flags & IFA_F_PERMANENT), "scope": a["scope"]}
