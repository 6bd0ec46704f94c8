"""linux.netDevices (config-linux.md "Network Devices").

The host network is never touched: every test makes its own network namespace (a `unshare --net
sleep` holder process) with veth pairs in it, and runs the runtime there (`nsenter --net=...`), so
the "host" devices the runtime moves are the test's. The device is observed from inside the
container (busybox `ip`, /sys/class/net), in the runtime's namespace during the container's life
and after it, and after every refused or failed create (nothing left behind, the device untouched).

runc 1.1.5 has no netDevices (`runc features`), so there is no differential test.
"""
import json
import os
import re
import subprocess

import pytest

from _util import RUNTIME, Runtime, wait_for
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"), pytest.mark.timeout(60)]

MAC = "02:00:00:00:99:01"
GLOBAL4, GLOBAL6 = "10.99.0.1/24", "fd00:99::1/64"
HOST_SCOPE4 = "127.0.0.33/8"       # permanent, but scope host: not carried over (spec: global scope only)
DYNAMIC4 = "10.98.0.1/24"          # global, but with a lifetime: not IFA_F_PERMANENT, not carried over


class NetNs:
    """A network namespace held by a `sleep` the test started (killed by pid at teardown)."""

    def __init__(self, env):
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "600"], stdin=subprocess.DEVNULL)
        env.helper_pids.append(self.proc.pid)
        self.path = f"/proc/{self.proc.pid}/ns/net"
        assert wait_for(lambda: os.readlink(self.path) != os.readlink("/proc/self/ns/net"), timeout=5)

    def run(self, *argv, check=True):
        r = subprocess.run(["nsenter", f"--net={self.path}", "--", *argv], capture_output=True, text=True,
                           timeout=20)
        if check:
            assert r.returncode == 0, (argv, r.stdout, r.stderr)
        return r

    def sh(self, script):
        return self.run("sh", "-ec", script).stdout

    def links(self):
        out = self.run("ip", "-o", "link", "show").stdout
        return {m.group(1).split("@")[0]: m.group(2) for m in re.finditer(r"^\d+: ([^:]+): <([^>]*)>", out, re.M)}

    def addrs(self, dev):
        out = self.run("ip", "-o", "addr", "show", "dev", dev).stdout
        return {m.group(1) for m in re.finditer(r"inet6? (\S+)", out)}

    def veth(self, name, peer, with_addrs=True):
        self.sh(f"ip link add {name} type veth peer name {peer}")
        if with_addrs:
            self.sh(f"""
                ip link set {name} mtu 1400 address {MAC} up
                ip addr add {GLOBAL4} dev {name}
                ip addr add {HOST_SCOPE4} dev {name}
                ip addr add {GLOBAL6} dev {name} nodad
                ip addr add {DYNAMIC4} dev {name} valid_lft 300 preferred_lft 300
            """)


class NsRuntime(Runtime):
    """The real CLI, run inside the test's network namespace (its "host" namespace)."""

    def __init__(self, root, ns):
        super().__init__(root)
        self.ns = ns

    def argv(self, *args, root=None):
        return ["nsenter", f"--net={self.ns.path}", "--", RUNTIME, "--root", root or self.root, *map(str, args)]


@pytest.fixture
def hostns(env):
    ns = NetNs(env)
    ns.rt = NsRuntime(env.root, ns)
    return ns


def netdev_bundle(env, devices, args=("true",), mutate=None):
    def m(spec):
        spec["linux"]["netDevices"] = devices
        if mutate:
            mutate(spec)
    return env.bundle(args=args, mutate=m)


def assert_untouched(ns, name="nd0", peer="np0"):
    """The device is back (or still) in the runtime's namespace as it was: name, state, MTU, MAC and
    every address, the non-global and dynamic ones included."""
    links = ns.links()
    assert name in links and peer in links, links
    assert "UP" in links[name].split(","), links[name]
    detail = ns.run("ip", "link", "show", name).stdout
    assert "mtu 1400" in detail and MAC in detail, detail
    assert ns.addrs(name) >= {GLOBAL4, HOST_SCOPE4, GLOBAL6}, ns.addrs(name)


# ------------------------------------------------------------------------------------ moving

def test_moved_renamed_with_permanent_global_addresses(env, hostns):
    hostns.veth("nd0", "np0")
    script = ("ls /sys/class/net; echo ==; ip -o addr show; echo ==; ip -o link show ctr0; echo ==; "
              "cat /sys/class/net/ctr0/mtu /sys/class/net/ctr0/address")
    b = netdev_bundle(env, {"nd0": {"name": "ctr0"}}, args=("sh", "-c", script))
    r = hostns.rt("run", "--bundle", b.path, env.new_id()).check()
    names, addrs, link, attrs = r.stdout.split("==\n")
    assert set(names.split()) == {"lo", "ctr0"}, r.stdout
    ctr_addrs = {m.group(1) for m in re.finditer(r"ctr0\s+inet6? (\S+)", addrs)}
    # config-linux.md: the permanent addresses of global scope move with the device, nothing else
    assert ctr_addrs == {GLOBAL4, GLOBAL6}, addrs
    assert "UP" in re.search(r"<([^>]*)>", link).group(1).split(","), link   # MUST set it up
    assert attrs.split() == ["1400", MAC], attrs                              # attributes preserved
    # the spec: the runtime does not move it back; the namespace went away with the container, and
    # a virtual device goes with it (its veth peer in the runtime's namespace too)
    assert wait_for(lambda: not ({"nd0", "np0", "ctr0"} & set(hostns.links())), timeout=10), hostns.links()


def test_name_templates_and_kept_names(env, hostns):
    for i in range(2):
        hostns.veth(f"nd{i}", f"np{i}", with_addrs=False)
    hostns.veth("keep0", "kp0", with_addrs=False)
    b = netdev_bundle(env, {"nd0": {"name": "eth%d"}, "nd1": {"name": "eth%d"}, "keep0": {}},
                      args=("sh", "-c", "ls /sys/class/net; echo ==; ip -o link show"))
    r = hostns.rt("run", "--bundle", b.path, env.new_id()).check()
    names, links = r.stdout.split("==\n")
    assert set(names.split()) == {"lo", "eth0", "eth1", "keep0"}, r.stdout
    # they were down in the runtime's namespace: the runtime MUST set them up
    flags = {m.group(1).split("@")[0]: m.group(2).split(",")
             for m in re.finditer(r"^\d+: ([^:]+): <([^>]*)>", links, re.M)}
    assert all("UP" in flags[n] for n in ("eth0", "eth1", "keep0")), links


def test_moved_before_create_runtime_hooks_and_gone_while_created(env, hostns):
    hostns.veth("nd0", "np0")
    seen = os.path.join(env.tmp, "hook-links")

    def hooks(spec):
        # createRuntime hooks run in the runtime's namespace: the device has left it already (runc's order)
        spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"ip -o link show > {seen}"]}]}
    b = netdev_bundle(env, {"nd0": {"name": "ctr0"}}, args=("sleep", "30"), mutate=hooks)
    cid = env.new_id()
    hostns.rt("create", "--bundle", b.path, cid).check()
    hook_links = open(seen).read()
    assert "np0" in hook_links and "nd0" not in hook_links, hook_links
    assert "nd0" not in hostns.links() and "ctr0" not in hostns.links()
    pid = hostns.rt.init_pid(cid)
    inside = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", "ip", "-o", "addr", "show", "ctr0"],
                            capture_output=True, text=True, timeout=20)
    assert GLOBAL4 in inside.stdout and GLOBAL6 in inside.stdout, inside
    hostns.rt("delete", "--force", cid).check()
    assert wait_for(lambda: "np0" not in hostns.links(), timeout=10), hostns.links()


def test_joined_namespace_keeps_the_device_after_delete(env, hostns):
    """A network namespace the container joins outlives it: the device stays there (the spec: the
    runtime MUST NOT move it out before deletion)."""
    hostns.veth("nd0", "np0")
    target = NetNs(env)

    def join(spec):
        spec["linux"]["namespaces"] = [n if n["type"] != "network" else {"type": "network", "path": target.path}
                                       for n in spec["linux"]["namespaces"]]
    b = netdev_bundle(env, {"nd0": {"name": "ctr0"}}, args=("ip", "-o", "addr", "show", "ctr0"), mutate=join)
    r = hostns.rt("run", "--bundle", b.path, env.new_id()).check()
    assert GLOBAL4 in r.stdout and GLOBAL6 in r.stdout, r.stdout
    assert "ctr0" in target.links() and "UP" in target.links()["ctr0"].split(",")
    kept = target.addrs("ctr0")
    assert {GLOBAL4, GLOBAL6} <= kept and not {HOST_SCOPE4, DYNAMIC4} & kept, kept
    assert "nd0" not in hostns.links() and "np0" in hostns.links()


def test_container_with_its_own_user_namespace(env, hostns):
    hostns.veth("nd0", "np0")
    b = netdev_bundle(env, {"nd0": {"name": "ctr0"}}, args=("ip", "-o", "addr", "show", "ctr0"), mutate=_userns)
    r = hostns.rt("run", "--bundle", b.path, env.new_id()).check()
    assert GLOBAL4 in r.stdout and GLOBAL6 in r.stdout, r.stdout


# ------------------------------------------------------------------------------------ bad input

def create_fails(env, ns, b, pointer, reason):
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = ns.rt("create", "--bundle", b.path, cid)
    assert r.rc != 0, r
    assert "Traceback" not in r.stderr, r
    msg = r.error_msg()
    assert (pointer is None or f": {pointer}: " in msg) and reason in msg, msg
    snap.assert_clean()
    return msg


def test_unknown_device(env, hostns):
    hostns.veth("nd0", "np0")
    b = netdev_bundle(env, {"nd0": {}, "nope0": {}})
    create_fails(env, hostns, b, "/linux/netDevices/nope0", "no network device 'nope0' in the runtime's")
    assert_untouched(hostns)


def test_name_taken_in_new_namespace(env, hostns):
    hostns.veth("nd0", "np0")
    b = netdev_bundle(env, {"nd0": {"name": "lo"}})
    create_fails(env, hostns, b, "/linux/netDevices/nd0/name", "a network device named 'lo' already exists")
    assert_untouched(hostns)


def test_name_taken_in_joined_namespace(env, hostns):
    hostns.veth("nd0", "np0")
    target = NetNs(env)
    target.veth("busy0", "busy1", with_addrs=False)

    def join(spec):
        spec["linux"]["namespaces"] = [n if n["type"] != "network" else {"type": "network", "path": target.path}
                                       for n in spec["linux"]["namespaces"]]
    b = netdev_bundle(env, {"nd0": {}, "busy0": {}}, mutate=join)
    hostns.veth("busy0", "busy9", with_addrs=False)
    create_fails(env, hostns, b, "/linux/netDevices/busy0", "a network device named 'busy0' already exists")
    assert_untouched(hostns)
    assert "nd0" not in target.links()


def test_without_network_namespace(env, hostns):
    hostns.veth("nd0", "np0")

    def no_netns(spec):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    b = netdev_bundle(env, {"nd0": {}}, mutate=no_netns)
    create_fails(env, hostns, b, "/linux/netDevices", "needs a network namespace")
    assert_untouched(hostns)


@pytest.mark.parametrize("devices, pointer, reason", [
    ({"nd0": {"name": "c0"}, "np0": {"name": "c0"}}, "/linux/netDevices/np0/name", "would both be named 'c0'"),
    ({"nd0": {"name": "a%s"}}, "/linux/netDevices/nd0/name", "invalid network device name 'a%s'"),
    ({"nd0": {"name": "x" * 16}}, "/linux/netDevices/nd0/name", "invalid network device name"),
    ({"nd0:1": {}}, "/linux/netDevices/nd0:1", "invalid network device name"),
], ids=["same-name", "bad-template", "too-long", "colon"])
def test_invalid_names(env, hostns, devices, pointer, reason):
    hostns.veth("nd0", "np0")
    create_fails(env, hostns, netdev_bundle(env, devices), pointer, reason)
    assert_untouched(hostns)


# ------------------------------------------------------------------------------------ failures after the move

def _userns(spec):
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]


@pytest.mark.parametrize("case", ["hook", "hook-userns", "second-device"])
def test_failure_after_the_move_puts_devices_back(env, hostns, case):
    """runtime.md: a failed create leaves things as if it was never attempted. The device was in the
    container's namespace already: it comes back with its name, addresses, MTU, MAC and up state (with
    a user namespace too, where the socket stage-1 made has no rights over the runtime's namespace)."""
    hostns.veth("nd0", "np0")
    if case.startswith("hook"):
        def failing_hook(spec):
            spec["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
            if case == "hook-userns":
                _userns(spec)
        b = netdev_bundle(env, {"nd0": {"name": "ctr0"}}, mutate=failing_hook)
        reason = "createRuntime hook"
    else:
        b = netdev_bundle(env, {"nd0": {"name": "ctr0"}, "lo": {"name": "lo2"}})   # lo cannot move
        reason = "move network device 'lo' into the container"
    create_fails(env, hostns, b, None, reason)
    assert_untouched(hostns)
    assert "ctr0" not in hostns.links()


def test_features_reports_net_devices():
    out = subprocess.run([RUNTIME, "features"], capture_output=True, text=True, timeout=20, check=True).stdout
    assert json.loads(out)["linux"]["netDevices"] == {"enabled": True}
