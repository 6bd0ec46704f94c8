"""ociruntime/netdev.py parts that need no network namespace: the pre-spawn host check, JSON pointers,
which addresses are carried over, and that the plan asks the init for a netlink socket."""
import socket

import pytest

from ociruntime import netdev, plan
from ociruntime.errors import ConfigError
from ociruntime.misc import default_spec


def test_pointer_escapes():
    assert netdev.pointer("eth0") == "/linux/netDevices/eth0"
    assert netdev.pointer("a~b", "name") == "/linux/netDevices/a~0b/name"


def test_check_host_unknown_device(monkeypatch):
    monkeypatch.setattr(netdev.os, "geteuid", lambda: 0)
    present = socket.if_nameindex()[0][1]   # "lo" at least: if_nametoindex finds it
    netdev.check_host({present: {}})
    with pytest.raises(ConfigError) as ei:
        netdev.check_host({present: {}, "nosuchdev0": {}})
    assert ei.value.pointer == "/linux/netDevices/nosuchdev0"
    assert "no network device 'nosuchdev0' in the runtime's network namespace" in str(ei.value)


def test_check_host_rootless(monkeypatch):
    monkeypatch.setattr(netdev.os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError) as ei:
        netdev.check_host({"lo": {}})
    assert ei.value.pointer == "/linux/netDevices" and "rootless" in str(ei.value)


class Msg(dict):
    """Enough of a pyroute2 ifaddrmsg: header fields by key, NLAs through get()."""

    def __init__(self, header, nlas):
        super().__init__(header)
        self.nlas = nlas

    def get(self, key, default=None):
        return self.nlas.get(key, super().get(key, default))


def test_addr_spec_permanent_global_kept_flags():
    a = Msg({"family": socket.AF_INET6, "prefixlen": 64, "flags": 0x80 | 0x02, "scope": 0},
            {"IFA_ADDRESS": "fd00::1", "IFA_FLAGS": 0x80 | 0x02 | 0x40})   # permanent, nodad, tentative
    s = netdev._addr_spec(a)
    assert s["permanent"] and s["scope"] == 0
    assert s["spec"] == {"family": socket.AF_INET6, "prefixlen": 64, "scope": 0, "address": "fd00::1",
                         "flags": 0x02}


def test_addr_spec_dynamic_and_ptp():
    a = Msg({"family": socket.AF_INET, "prefixlen": 32, "flags": 0, "scope": 0},
            {"IFA_ADDRESS": "10.0.0.2", "IFA_LOCAL": "10.0.0.1", "IFA_BROADCAST": None})
    s = netdev._addr_spec(a)
    assert not s["permanent"]
    assert s["spec"] == {"family": socket.AF_INET, "prefixlen": 32, "scope": 0, "address": "10.0.0.2",
                         "local": "10.0.0.1"}


def test_plan_asks_for_a_netlink_socket(tmp_path):
    (tmp_path / "rootfs").mkdir()
    s = default_spec()
    s["linux"]["netDevices"] = {"eth0": {"name": "c%d"}, "eth1": {"name": ""}}
    p = plan.build(s, str(tmp_path), {"sync": 3, "close_from": 3}, {}, {})
    assert p.net_devices == {"eth0": "c%d", "eth1": "eth1"}
    assert plan.struct.pack("=III", plan.OP_NETDEV, 4, 2) in p.data
