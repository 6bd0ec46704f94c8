"""A qemu (TCG, software emulation) guest for the test suite: a real kernel of our choosing, booted
once per test session, running many commands. See /work/shared/docs/vm.md for the measured facts.

Two parts:

* **The kit** (``build_kit()``): Debian's guest kernel (the ``linux-image-<abi>-amd64`` package that
  ``linux-image-amd64`` depends on, fetched with ``apt-get download`` and unpacked with ``dpkg -x``,
  never installed), its ``vmlinuz`` decompressed to an ELF ``vmlinux`` (PVH boot through
  ``qboot.rom``: no in-guest decompression under TCG), and a busybox (``busybox-static``) initramfs
  with the virtio/9p/overlay modules. Everything comes from apt; the kit is cached outside the
  checkout in ``$OCI_VMKIT`` (default ``$XDG_CACHE_HOME/ociruntime-vmkit`` or
  ``/var/tmp/ociruntime-vmkit``), one directory per kernel package version, built under a lock.
* **The guest** (``Guest.start()``): the host's ``/`` shared read-only over virtio-9p below a tmpfs
  overlay (so the checkout, its ``.venv`` and the build run unchanged; writes stay in the guest),
  fresh tmpfs on ``/tmp``, ``/var/tmp``, ``/run``, ``/dev/shm`` (a checkout below one of them is
  bound back), a control directory on the host (``Guest.ctl``, ``/run/vm/ctl`` in the guest,
  read-write) and optional extra shares. ``init="busybox"`` (default) runs busybox ``init`` (which
  reaps orphans) with our agent; ``init="systemd"`` boots the host's ``/lib/systemd/systemd`` with
  the agent as a service (``vm-agent.service``). ``cgroup="v2"`` boots pure cgroup v2
  (``cgroup_no_v1=all``), ``cgroup="v1"`` all v1 hierarchies (systemd's "legacy" layout).

The agent reads job ids from a virtio-serial port (``ociruntime.ctl``, a socketpair on the host:
no path, no polling), runs ``/run/vm/ctl/jobs/<id>/cmd`` with ``/bin/sh`` in its own session with
a clean environment, writes ``out``/``err`` there and answers ``done <id> <status>``.

qemu runs in its own process group (``start_new_session``), dies with the process that started it
(``PR_SET_PDEATHSIG``), and ``Guest.stop()`` (also run at interpreter exit) powers the guest off and
then SIGKILLs that process group by its id and removes the control directory.

Command line: ``python tests/vm/qemu.py --build-kit`` (what ``make test`` runs) and
``python tests/vm/qemu.py [--cgroup v1] [--init systemd] -- 'shell command'``.
"""
import atexit
import fcntl
import gzip
import json
import lzma
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

KIT_FORMAT = 2  # bump when the kit layout changes: older kits are rebuilt (2: modules.alias)
QEMU = "qemu-system-x86_64"
QBOOT = "/usr/share/qemu/qboot.rom"
BUSYBOX = "/bin/busybox"
HOST_PACKAGES = ("qemu-system-x86", "busybox-static")
# loaded with insmod by the initramfs, dependencies first (computed from the modules' depends=)
BOOT_MODULES = ("virtio_pci", "virtio_console", "virtio_blk", "9pnet_virtio", "9p", "overlay")
PORT_NAME = "ociruntime.ctl"
O9P = "trans=virtio,version=9p2000.L,msize=524288"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# mitigations=off: a throw-away guest; every syscall costs less under TCG
CMDLINE_BASE = "console=ttyS0 quiet loglevel=4 panic=-1 oops=panic tsc=reliable no_timer_check mitigations=off"
CGROUP_CMDLINE = {
    "v2": "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1",
    "v1": "systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=1",
}


class KitError(Exception):
    """The kit cannot be built (the reason is the message)."""


class GuestError(Exception):
    """The guest did not boot, died, or did not answer (the reason is the message)."""


class GuestTimeout(GuestError):
    pass


def log(msg):
    print(f"[vm] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ kit

def kit_home():
    if os.environ.get("OCI_VMKIT"):
        return os.environ["OCI_VMKIT"]
    base = os.environ.get("XDG_CACHE_HOME") or "/var/tmp"
    return os.path.join(base, "ociruntime-vmkit")


def _run(argv, cwd=None, timeout=900):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    try:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(argv, 127, "", str(e))


APT = ("apt-get", "-o", "DPkg::Lock::Timeout=900", "-q")


def _apt_update():
    r = _run([*APT, "update"])
    if r.returncode != 0:
        raise KitError(f"apt-get update failed: {r.stderr.strip()[-600:]}")


def ensure_host_packages():
    """qemu-system-x86 (qemu, qboot.rom) and busybox-static: apt-get install when missing."""
    def missing():
        out = []
        if not shutil.which(QEMU) or not os.path.exists(QBOOT):
            out.append("qemu-system-x86")
        if not _static_busybox():
            out.append("busybox-static")
        return out
    need = missing()
    if not need:
        return
    if os.geteuid() != 0:
        raise KitError(f"missing {need} and installing them needs root")
    for attempt in range(2):
        if attempt:
            _apt_update()
        r = _run([*APT, "install", "-y", "--no-install-recommends", *need])
        if r.returncode == 0 and not missing():
            return
    raise KitError(f"cannot install {need}: {r.stderr.strip()[-600:]}")


def _static_busybox():
    """True when /bin/busybox is a static binary (no ELF interpreter): the initramfs has no libc."""
    try:
        with open(BUSYBOX, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head


def kernel_package():
    """(package, version) of the guest kernel: what linux-image-amd64 depends on."""
    def query():
        r = _run(["apt-cache", "depends", "linux-image-amd64"])
        m = re.search(r"Depends:\s+(linux-image-[0-9][^\s]*-amd64)", r.stdout)
        if not m:
            return None
        pkg = m.group(1)
        r = _run(["apt-cache", "policy", pkg])
        v = re.search(r"Candidate:\s+(\S+)", r.stdout)
        return (pkg, v.group(1)) if v and v.group(1) != "(none)" else None
    found = query()
    if not found:
        _apt_update()
        found = query()
    if not found:
        raise KitError("apt knows no linux-image-<abi>-amd64 (apt-cache depends linux-image-amd64)")
    return found


class Kit:
    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "kit.json")) as f:
            self.info = json.load(f)
        self.kver = self.info["kver"]
        self.kernel = os.path.join(path, self.info["kernel"])
        self.initramfs = os.path.join(path, "initramfs.cpio.gz")
        self.modules = os.path.join(path, "modules", self.kver)

    def __repr__(self):
        return f"Kit({self.path}, {self.info['package']} {self.info['version']})"


def _ready_kits(home):
    out = []
    try:
        names = os.listdir(home)
    except OSError:
        return out
    for n in names:
        d = os.path.join(home, n)
        if n.endswith(f"-k{KIT_FORMAT}") and os.path.exists(os.path.join(d, "kit.json")):
            out.append(d)
    return sorted(out, key=os.path.getmtime)


def build_kit(home=None):
    """The kit for apt's current guest kernel: cached, else built (under a lock: several worktrees
    may ask at once). Without apt (offline) the newest cached kit is used. Raises KitError."""
    home = home or kit_home()
    os.makedirs(home, mode=0o755, exist_ok=True)
    ensure_host_packages()
    with open(os.path.join(home, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        try:
            pkg, ver = kernel_package()
        except KitError:
            kits = _ready_kits(home)
            if kits:
                return Kit(kits[-1])
            raise
        name = f"{pkg}_{ver.replace(':', '%')}-k{KIT_FORMAT}"
        final = os.path.join(home, name)
        if os.path.exists(os.path.join(final, "kit.json")):
            return Kit(final)
        t0 = time.monotonic()
        log(f"building the guest kit {final} ({pkg} {ver})")
        tmp = tempfile.mkdtemp(prefix=".build-", dir=home)
        try:
            _build_into(tmp, pkg, ver)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in _ready_kits(home):  # older kits are dead weight once nobody can still be booting one
            if old != final and time.time() - os.path.getmtime(old) > 86400:
                shutil.rmtree(old, ignore_errors=True)
        log(f"guest kit ready in {time.monotonic() - t0:.0f}s")
        return Kit(final)


def _build_into(d, pkg, ver):
    os.chmod(d, 0o755)  # apt-get download runs as _apt where it can
    dl = os.path.join(d, "dl")
    os.mkdir(dl)
    os.chmod(dl, 0o777)
    r = _run([*APT, "download", f"{pkg}={ver}"], cwd=dl)
    if r.returncode != 0:
        _apt_update()
        r = _run([*APT, "download", f"{pkg}={ver}"], cwd=dl)
    debs = [f for f in os.listdir(dl) if f.endswith(".deb")]
    if r.returncode != 0 or not debs:
        raise KitError(f"apt-get download {pkg}={ver} failed: {r.stderr.strip()[-600:]}")
    x = os.path.join(d, "x")
    r = _run(["dpkg", "-x", os.path.join(dl, debs[0]), x])
    if r.returncode != 0:
        raise KitError(f"dpkg -x {debs[0]} failed: {r.stderr.strip()[-600:]}")
    kvers = os.listdir(os.path.join(x, "lib", "modules"))
    if len(kvers) != 1:
        raise KitError(f"{debs[0]}: expected one module tree, found {kvers}")
    kver = kvers[0]
    vmlinuz = os.path.join(x, "boot", f"vmlinuz-{kver}")
    kernel = "vmlinux" if _decompress_kernel(vmlinuz, os.path.join(d, "vmlinux")) else "vmlinuz"
    if kernel == "vmlinuz":
        shutil.copyfile(vmlinuz, os.path.join(d, "vmlinuz"))
    shutil.copyfile(os.path.join(x, "boot", f"config-{kver}"), os.path.join(d, "config"))
    os.makedirs(os.path.join(d, "modules"))
    os.rename(os.path.join(x, "lib", "modules", kver), os.path.join(d, "modules", kver))
    shutil.rmtree(x)
    shutil.rmtree(dl)
    mods = os.path.join(d, "modules", kver)
    deps = _module_deps(mods)
    _write_modules_dep(mods, deps)
    _write_modules_alias(mods, deps)
    order = _load_order(BOOT_MODULES, deps)
    _write_initramfs(os.path.join(d, "initramfs.cpio.gz"), mods, deps, order)
    with open(os.path.join(d, "kit.json"), "w") as f:
        json.dump({"package": pkg, "version": ver, "kver": kver, "kernel": kernel, "boot_modules": order,
                   "format": KIT_FORMAT, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=1)


def _decompress_kernel(vmlinuz, out):
    """The ELF vmlinux inside a bzImage (xz or gzip payload); False when none is found."""
    with open(vmlinuz, "rb") as f:
        data = f.read()
    for magic, fn in ((b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(b)),
                      (b"\x1f\x8b\x08", lambda b: gzip.GzipFile(fileobj=__import__("io").BytesIO(b)).read())):
        i = data.find(magic)
        while i >= 0:
            try:
                elf = fn(data[i:])
            except Exception:
                elf = b""
            if elf[:4] == b"\x7fELF":
                with open(out, "wb") as f:
                    f.write(elf)
                return True
            i = data.find(magic, i + 1)
    return False


def _module_deps(mods):
    """{name: (relative path, [dependency names], [aliases])} from each module's ``depends=`` and
    ``alias=`` modinfo."""
    out = {}
    for root, _dirs, files in os.walk(os.path.join(mods, "kernel")):
        for fn in files:
            if not fn.endswith((".ko", ".ko.xz")):
                continue
            p = os.path.join(root, fn)
            with open(p, "rb") as f:
                data = f.read()
            if fn.endswith(".xz"):
                data = lzma.decompress(data)
            m = re.search(rb"\0depends=([^\0]*)\0", data)
            deps = [x.decode() for x in m.group(1).split(b",") if x] if m else []
            aliases = [a.decode(errors="replace") for a in re.findall(rb"\0alias=([^\0]+)", data)]
            name = fn.split(".ko")[0].replace("-", "_")
            out[name] = (os.path.relpath(p, mods), deps, aliases)
    return out


def _write_modules_dep(mods, deps):
    """modules.dep for an in-guest modprobe (busybox modprobe reads this format)."""
    def closure(n, seen):
        for dep in deps.get(n, ("", []))[1]:
            if dep not in seen and dep in deps:
                seen.append(dep)
                closure(dep, seen)
        return seen
    with open(os.path.join(mods, "modules.dep"), "w") as f:
        for n in sorted(deps):
            f.write(f"{deps[n][0]}: {' '.join(deps[d][0] for d in closure(n, []))}\n")


def _write_modules_alias(mods, deps):
    """modules.alias (depmod's format, which busybox modprobe reads): the kernel's on-demand loads by
    alias resolve in the guest, e.g. sock_diag's ``net-pf-16-proto-4-type-1`` -> unix_diag, which CRIU
    needs to dump sockets."""
    with open(os.path.join(mods, "modules.alias"), "w") as f:
        for n in sorted(deps):
            for a in deps[n][2]:
                if " " not in a:
                    f.write(f"alias {a} {n}\n")


def _load_order(wanted, deps):
    order = []

    def visit(n):
        if n in order:
            return
        if n not in deps:
            return  # built into the kernel
        for dep in deps[n][1]:
            visit(dep.replace("-", "_"))
        order.append(n)
    for n in wanted:
        if n not in deps:
            raise KitError(f"module {n} is not in the guest kernel package")
        visit(n)
    return order


INITRAMFS_INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for m in $(cat /modules.order); do insmod /lib/modules/$m.ko || echo "vm-init: insmod $m failed"; done
i=0
until mount -t 9p -o {O9P} vmctl /ctl 2>/dev/null; do
  i=$((i+1)); [ $i -lt 50 ] || {{ echo "vm-init: cannot mount the control share"; poweroff -f; }}
  sleep 0.1
done
exec sh /ctl/init1
"""


def _cpio_entry(name, mode, data=b"", rdev=(0, 0), ino=0, uid=0, gid=0, mtime=0):
    name_b = name.encode() + b"\0"
    hdr = "070701" + "".join(f"{v:08x}" for v in (
        ino, mode, uid, gid, 1, mtime & 0xFFFFFFFF, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
    out = hdr.encode() + name_b
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def _write_initramfs(path, mods, deps, order):
    """newc cpio (gzip), written here: no cpio tool, owner root, mtime 0 (reproducible)."""
    parts = []
    for dname in ("bin", "dev", "proc", "sys", "ctl", "newroot", "ovl", "lib", "lib/modules"):
        parts.append(_cpio_entry(dname, 0o040755))
    parts.append(_cpio_entry("dev/console", 0o020600, rdev=(5, 1)))
    with open(BUSYBOX, "rb") as f:
        parts.append(_cpio_entry("bin/busybox", 0o100755, f.read()))
    for n in order:
        rel = deps[n][0]
        with open(os.path.join(mods, rel), "rb") as f:
            data = f.read()
        if rel.endswith(".xz"):
            data = lzma.decompress(data)
        parts.append(_cpio_entry(f"lib/modules/{n}.ko", 0o100644, data))
    parts.append(_cpio_entry("modules.order", 0o100644, ("\n".join(order) + "\n").encode()))
    parts.append(_cpio_entry("init", 0o100755, INITRAMFS_INIT.encode()))
    parts.append(_cpio_entry("TRAILER!!!", 0))
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(b"".join(parts))


def _local_cpio(out, paths, exclude):
    """An uncompressed newc cpio of host trees below ``local/`` (modes, owners, mtimes kept: Python
    checks a .pyc against its source's mtime). ``exclude``: names (any level) or absolute paths."""
    import fnmatch
    import stat as st

    def skip(path):
        return any(fnmatch.fnmatch(path, x) if x.startswith("/") else fnmatch.fnmatch(os.path.basename(path), x)
                   for x in exclude)
    ino = 1
    seen = {"local"}
    out.write(_cpio_entry("local", 0o040755))

    def entry(path, name):
        nonlocal ino
        s = os.lstat(path)
        ino += 1
        if st.S_ISLNK(s.st_mode):
            data = os.readlink(path).encode()
        elif st.S_ISREG(s.st_mode):
            with open(path, "rb") as f:
                data = f.read()
        elif st.S_ISDIR(s.st_mode):
            data = b""
        else:
            return
        out.write(_cpio_entry(name, s.st_mode, data, ino=ino, uid=s.st_uid, gid=s.st_gid, mtime=int(s.st_mtime)))

    for top in paths:
        parts = top.strip("/").split("/")
        for i in range(1, len(parts)):  # parent directories first
            d = "local/" + "/".join(parts[:i])
            if d not in seen:
                seen.add(d)
                out.write(_cpio_entry(d, 0o040755))
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not skip(os.path.join(root, d))]
            entry(root, "local" + root)
            for fn in files:
                p = os.path.join(root, fn)
                if not skip(p):
                    entry(p, "local" + p)
            for d in list(dirs):  # symlinks to directories: os.walk lists them as dirs
                p = os.path.join(root, d)
                if os.path.islink(p):
                    entry(p, "local" + p)
                    dirs.remove(d)
    out.write(_cpio_entry("TRAILER!!!", 0))


# ------------------------------------------------------------------------------------------------ guest

def _init1(kver, cgroup, init, shares, keep, local):
    """Stage 1, run by the initramfs' busybox sh from the control share: the root (overlay of the
    host's / over 9p on a tmpfs), tmpfs dirs, shares, then chroot into it: busybox init or systemd."""
    q = shlex.quote
    lines = [
        "log() { echo \"vm-init: [$(cut -d' ' -f1 /proc/uptime 2>/dev/null)] $*\"; }",
        "log stage1",
        "fail() { log \"$*\"; poweroff -f; }",
        "R=/newroot",
        "mount -t tmpfs -o mode=755 tmpfs /ovl && mkdir -p /ovl/lower /ovl/upper /ovl/work || fail tmpfs",
        f"mount -t 9p -o {O9P},ro,cache=loose hostroot /ovl/lower || fail 'mount of the host root failed'",
        "mount -t overlay overlay -o lowerdir=/ovl/lower,upperdir=/ovl/upper,workdir=/ovl/work $R || fail overlay",
    ]
    for i, p in enumerate(keep):  # the checkout below a directory that gets a fresh tmpfs
        lines.append(f"mkdir -p /ovl/keep{i} && mount --bind $R{q(p)} /ovl/keep{i} || fail 'bind {p}'")
    for d in ("tmp", "var/tmp"):
        lines.append(f"mount -t tmpfs -o mode=1777 tmpfs $R/{d}")
    lines.append("mount -t tmpfs -o mode=755 tmpfs $R/run")
    for i, p in enumerate(keep):
        lines.append(f"mkdir -p $R{q(p)} && mount --move /ovl/keep{i} $R{q(p)}")
    for p in local:  # host trees copied into guest RAM (unpacked by the kernel from the initrd, /local)
        lines.append(f"mkdir -p $R{q(p)} && mount --bind /local{q(p)} $R{q(p)} || fail 'bind local {p}'")
    lines += [
        "mkdir -p $R/run/vm/ctl && mount --move /ctl $R/run/vm/ctl || fail 'move ctl'",
        "cp /bin/busybox $R/run/vm/busybox && ln -s busybox $R/run/vm/modprobe",
        # the kernel's on-demand module loads (veth, the *_diag sockets CRIU needs) through busybox's
        # modprobe, which reads the kit's text modules.dep/alias: the host's root may have no kmod at all
        "echo /run/vm/modprobe > /proc/sys/kernel/modprobe",
        f"mkdir -p $R/lib/modules/{kver} && mount -t 9p -o {O9P},ro vmmod $R/lib/modules/{kver} || log 'no module share'",
    ]
    for tag, gpath, ro in shares:
        lines.append(f"mkdir -p $R{q(gpath)} && mount -t 9p -o {O9P}{',ro' if ro else ''} {tag} $R{q(gpath)} "
                     f"|| fail 'mount of share {gpath} failed'")
    lines += [
        "echo vm > $R/etc/hostname",
        *(["mkdir -p $R/etc/systemd/system && cp -a $R/run/vm/ctl/units/. $R/etc/systemd/system/",
           # a host that is itself a container (/.dockerenv) would make the guest's systemd believe it is
           # one too: it then takes its "kernel" command line (systemd.unified_cgroup_hierarchy=0) from its
           # own argv and boots v2 whatever cgroup= asked for
           "rm -f $R/.dockerenv $R/run/.containerenv"]
          if init == "systemd" else []),
        "rm -f $R/etc/machine-id 2>/dev/null; : > $R/etc/machine-id",
    ]
    if init == "busybox":
        lines += [
            "cat > $R/etc/inittab <<'EOF'",
            "::sysinit:/run/vm/busybox sh /run/vm/ctl/init2",
            "::once:/run/vm/busybox sh /run/vm/ctl/agent",
            "EOF",
        ]
    lines += [
        "mount --move /proc $R/proc; mount --move /sys $R/sys; mount --move /dev $R/dev",
        "log 'entering the root'",
        # not switch_root: it would empty the initramfs, and /local's trees live there
        "cd $R && mount --move . / || fail 'move root'",
        "exec chroot . /run/vm/busybox init" if init == "busybox" else
        "exec chroot . /lib/systemd/systemd --unit=vm.target",
    ]
    return "\n".join(lines) + "\n"


def _init2(cgroup):
    """busybox init's sysinit: the mounts a system has (systemd does these itself)."""
    bb = "/run/vm/busybox"
    lines = [
        f"BB={bb}",
        "exec >/dev/console 2>&1",
        "mkdir -p /dev/pts /dev/shm /dev/mqueue /run/lock",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts",
        "ln -sf pts/ptmx /dev/ptmx 2>/dev/null",
        "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm",
        "mount -t mqueue mqueue /dev/mqueue",
        "mount -t bpf bpf /sys/fs/bpf 2>/dev/null",
        "mount -t securityfs securityfs /sys/kernel/security 2>/dev/null",
        "echo /run/vm/modprobe > /proc/sys/kernel/modprobe",
        "$BB hostname vm",
        "$BB ip link set lo up",
    ]
    if cgroup == "v2":
        lines.append("mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup")
    else:
        lines += [
            "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup",
            "for c in $(awk 'NR>1 && $4==1 {print $1}' /proc/cgroups); do",
            "  case $c in cpu|cpuacct) d=cpu,cpuacct;; net_cls|net_prio) d=net_cls,net_prio;; *) d=$c;; esac",
            "  [ -d /sys/fs/cgroup/$d ] || { mkdir -p /sys/fs/cgroup/$d; mount -t cgroup -o $d cgroup /sys/fs/cgroup/$d; }",
            "done",
            "ln -s cpu,cpuacct /sys/fs/cgroup/cpu; ln -s cpu,cpuacct /sys/fs/cgroup/cpuacct",
            "ln -s net_cls,net_prio /sys/fs/cgroup/net_cls; ln -s net_cls,net_prio /sys/fs/cgroup/net_prio",
            "mkdir -p /sys/fs/cgroup/unified /sys/fs/cgroup/systemd",
            "mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup/unified",
            "mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd",
        ]
    return "\n".join(lines) + "\n"


AGENT = f"""# the session agent: job ids from the virtio-serial port, "done <id> <status>" back
BB=/run/vm/busybox
J=/run/vm/ctl/jobs
port=
for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = {PORT_NAME} ] && port=/dev/${{p##*/}}; done
[ -n "$port" ] || {{ echo "vm-agent: no virtio port {PORT_NAME}" >/dev/console; $BB poweroff -f; }}
exec 8<>"$port"
cut -d' ' -f1 /proc/uptime > /run/vm/ctl/uptime_at_agent
while read -r cmd id <&8; do
  case "$cmd" in
    hello) echo "ready $(cut -d' ' -f1 /proc/uptime) $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)" >&8;;
    run) d=$J/$id
         ( $BB setsid $BB sh -c 'echo $$ > "$0/pid"; cd /; exec $BB env -i PATH={GUEST_PATH} \\
             HOME=/root LANG=C.UTF-8 TERM=dumb TMPDIR=/tmp OCI_VM_GUEST=1 /bin/sh "$0/cmd" \\
             </dev/null >"$0/out" 2>"$0/err"' "$d" 8>&-
           echo "done $id $?" >&8 ) & ;;
    kill) [ -s "$J/$id/pid" ] && kill -9 -"$(cat "$J/$id/pid")" 2>/dev/null;;
    stop) break;;
  esac
done
sync
$BB poweroff -f
"""

SYSTEMD_UNITS = {
    "vm.target": """[Unit]
Description=ociruntime test guest
Requires=basic.target
After=basic.target
Wants=vm-agent.service dbus.socket
AllowIsolate=yes
""",
    "vm-agent.service": """[Unit]
Description=ociruntime test guest agent
After=basic.target dbus.socket
[Service]
Type=exec
ExecStart=/run/vm/busybox sh /run/vm/ctl/agent
StandardInput=null
StandardOutput=journal+console
StandardError=journal+console
""",
}
# units that slow a TCG boot or wait for hardware/network the guest does not have
SYSTEMD_MASK = ("getty@tty1.service", "serial-getty@ttyS0.service", "systemd-timesyncd.service",
                "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer",
                "fstrim.timer", "dpkg-db-backup.timer", "systemd-networkd-wait-online.service",
                "systemd-pstore.service", "docker.socket", "docker.service", "containerd.service",
                "podman.socket", "podman.service", "cron.service", "ssh.service",
                "systemd-udev-settle.service", "systemd-firstboot.service", "systemd-random-seed.service",
                "systemd-journal-flush.service", "systemd-update-utmp.service", "e2scrub_reap.service",
                "sys-kernel-config.mount", "sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount")


def _hidden_below_tmpfs(path):
    """``path`` when it lives below a directory that gets a fresh tmpfs in the guest."""
    path = os.path.realpath(path)
    for base in ("/tmp/", "/var/tmp/", "/run/", "/dev/shm/"):
        if path.startswith(base):
            return [path]
    return []


def _qemu_path(p):
    return p.replace(",", ",,")  # qemu's option syntax escapes a comma by doubling it


class Result:
    def __init__(self, rc, out, err, duration):
        self.rc, self.out, self.err, self.duration = rc, out, err, duration

    @property
    def ok(self):
        return self.rc == 0

    def __repr__(self):
        return f"Result(rc={self.rc}, {self.duration:.1f}s, out={self.out[-300:]!r}, err={self.err[-300:]!r})"


_LIVE = set()


@atexit.register
def _stop_all():
    for g in list(_LIVE):
        g.stop(timeout=5)


def _pdeathsig():
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Guest:
    """A running guest. ``Guest.start()`` boots it (returns when the agent answers), ``sh()`` runs
    a shell script in it, ``stop()`` powers it off (kills the qemu process group) and cleans up."""

    def __init__(self):
        self.proc = None
        self.sock = None
        self.ctl = None
        self._buf = b""
        self._done = {}
        self._seq = 0
        self.boot_seconds = None
        self.controllers = ""

    # ---------------------------------------------------------------------------------- start
    @classmethod
    def start(cls, kit=None, *, init="busybox", cgroup="v2", mem=2048, smp=2, shares=(), disk_mb=0,
              keep=(), local=(), local_exclude=(), append="", boot_timeout=300, workdir=None):
        """Boot a guest. ``shares``: (host path, guest path, read_only) tuples; ``disk_mb``: a raw
        scratch disk (``/dev/vda``); ``keep``: host paths below /tmp, /var/tmp, /run that the guest
        must still see (the checkout is added by the caller); ``local``: host directories copied into
        guest RAM at boot (tar through the control share; writable, never written back): under TCG
        every 9p lookup costs milliseconds, so a Python tree (stdlib, venv, checkout) belongs here
        (``local_exclude``: names at any level, or absolute path patterns); ``workdir``: where the control
        directory goes (default: $TMPDIR). Raises GuestError with the console's tail."""
        if init not in ("busybox", "systemd"):
            raise ValueError(f"init must be busybox or systemd, not {init!r}")
        if cgroup not in CGROUP_CMDLINE:
            raise ValueError(f"cgroup must be one of {sorted(CGROUP_CMDLINE)}, not {cgroup!r}")
        if init == "systemd" and not os.access("/lib/systemd/systemd", os.X_OK):
            raise GuestError("init=systemd boots the host's /lib/systemd/systemd: install the systemd package")
        kit = kit or build_kit()
        g = cls()
        g.ctl = tempfile.mkdtemp(prefix="ociruntime-vm-", dir=workdir)
        os.chmod(g.ctl, 0o755)
        _LIVE.add(g)
        try:
            g._launch(kit, init, cgroup, mem, smp, shares, disk_mb, keep, local, local_exclude, append,
                      boot_timeout)
        except BaseException:
            g.stop(timeout=5)
            raise
        return g

    def _write(self, name, text, mode=0o644):
        p = os.path.join(self.ctl, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def _launch(self, kit, init, cgroup, mem, smp, shares, disk_mb, keep, local, local_exclude, append,
                boot_timeout):
        os.mkdir(os.path.join(self.ctl, "jobs"))
        local = [os.path.realpath(p) for p in local if os.path.isdir(p)]
        initrd = kit.initramfs
        if local:  # the kit's initramfs + a cpio of the local trees, one initrd (4-byte aligned join)
            initrd = os.path.join(self.ctl, "initrd")
            with open(initrd, "wb") as out:
                with open(kit.initramfs, "rb") as f:
                    shutil.copyfileobj(f, out)
                out.write(b"\0" * (-out.tell() % 4))
                _local_cpio(out, local, local_exclude)
        tagged = [(f"share{i}", os.path.realpath(h), g, bool(ro)) for i, (h, g, ro) in enumerate(shares)]
        keep_paths = []
        for k in keep:
            keep_paths += _hidden_below_tmpfs(k)
        self._write("init1", _init1(kit.kver, cgroup, init, [(t, g, ro) for t, _h, g, ro in tagged], keep_paths,
                                    local))
        self._write("init2", _init2(cgroup))
        self._write("agent", AGENT)
        if init == "systemd":
            os.mkdir(os.path.join(self.ctl, "units"))
            for name, text in SYSTEMD_UNITS.items():
                self._write(os.path.join("units", name), text)
            for name in SYSTEMD_MASK:
                os.symlink("/dev/null", os.path.join(self.ctl, "units", name))
        host_end, guest_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = host_end
        argv = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-m", str(mem), "-smp", str(smp), "-accel", "tcg,thread=multi,tb-size=512", "-cpu", "max",
                "-kernel", kit.kernel, "-initrd", initrd,
                "-append", f"{CMDLINE_BASE} {CGROUP_CMDLINE[cgroup]} {append}".strip(),
                "-serial", f"file:{_qemu_path(os.path.join(self.ctl, 'console.log'))}",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=ctl,fd={guest_end.fileno()}",
                "-device", f"virtserialport,chardev=ctl,name={PORT_NAME}"]
        if os.path.exists(QBOOT):
            argv += ["-bios", QBOOT]
        fsdevs = [("vmctl", self.ctl, False), ("hostroot", "/", True), ("vmmod", kit.modules, True)]
        fsdevs += [(t, h, ro) for t, h, _g, ro in tagged]
        for i, (tag, path, ro) in enumerate(fsdevs):
            argv += ["-fsdev", f"local,id=fs{i},path={_qemu_path(path)},security_model=none,multidevs=remap"
                     + (",readonly=on" if ro else ""),
                     "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag={tag}"]
        if disk_mb:
            disk = os.path.join(self.ctl, "scratch.img")
            with open(disk, "wb") as f:
                f.truncate(disk_mb << 20)
            argv += ["-drive", f"file={_qemu_path(disk)},format=raw,if=none,id=d0,cache=unsafe",
                     "-device", "virtio-blk-pci,drive=d0"]
        self._write("qemu.argv", shlex.join(argv) + "\n")
        t0 = time.monotonic()
        with open(os.path.join(self.ctl, "qemu.log"), "wb") as qlog:
            try:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog,
                                             start_new_session=True, pass_fds=(guest_end.fileno(),),
                                             preexec_fn=_pdeathsig)
            except OSError as e:
                raise GuestError(f"cannot start {QEMU}: {e}")
            finally:
                guest_end.close()
        self.sock.sendall(b"hello x\n")
        line = self._readline(boot_timeout, "the guest to boot")
        if not line.startswith("ready"):
            raise GuestError(f"unexpected greeting {line!r}\n{self.diagnostics()}")
        self.boot_seconds = time.monotonic() - t0
        self.controllers = line.split(None, 2)[2] if len(line.split()) > 2 else ""

    # ---------------------------------------------------------------------------------- jobs
    def _readline(self, timeout, what):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestTimeout(f"timeout ({timeout:.0f}s) waiting for {what}\n{self.diagnostics()}")
            r, _, _ = select.select([self.sock], [], [], min(left, 1.0))
            if r:
                try:
                    chunk = self.sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    try:
                        self.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
                    raise GuestError(f"the guest closed its port while waiting for {what}\n{self.diagnostics()}")
                self._buf += chunk
            elif self.proc.poll() is not None:
                raise GuestError(f"qemu exited ({self.proc.returncode}) while waiting for {what}\n"
                                 f"{self.diagnostics()}")
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def submit(self, script, env=None, cwd=None):
        """Start ``script`` (sh) in the guest; returns a job id for ``wait``."""
        if not self.alive():
            raise GuestError("the guest is not running\n" + self.diagnostics())
        self._seq += 1
        jid = f"j{self._seq}"
        d = os.path.join(self.ctl, "jobs", jid)
        os.mkdir(d)
        pre = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in (env or {}).items())
        if cwd:
            pre += f"cd {shlex.quote(cwd)} || exit 125\n"
        with open(os.path.join(d, "cmd"), "w") as f:
            f.write(pre + script + "\n")
        self.sock.sendall(f"run {jid}\n".encode())
        return jid

    def wait(self, jid, timeout=600):
        """(Result) of job ``jid``; on timeout the job's session is SIGKILLed and GuestTimeout raised."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while jid not in self._done:
            try:
                line = self._readline(max(0.0, deadline - time.monotonic()), f"job {jid}")
            except GuestTimeout:
                if self.alive():
                    self.sock.sendall(f"kill {jid}\n".encode())
                raise
            parts = line.split()
            if len(parts) == 3 and parts[0] == "done":
                self._done[parts[1]] = int(parts[2])
        rc = self._done.pop(jid)
        d = os.path.join(self.ctl, "jobs", jid)
        out = self._read(os.path.join(d, "out"))
        err = self._read(os.path.join(d, "err"))
        shutil.rmtree(d, ignore_errors=True)
        return Result(rc, out, err, time.monotonic() - t0)

    def sh(self, script, timeout=600, env=None, cwd=None):
        """Run ``script`` with /bin/sh in the guest (clean environment plus ``env``); returns
        Result(rc, out, err, duration)."""
        return self.wait(self.submit(script, env=env, cwd=cwd), timeout=timeout)

    @staticmethod
    def _read(p, default=""):
        try:
            with open(p, errors="replace") as f:
                return f.read()
        except OSError:
            return default

    def guest_path(self, *parts):
        """The control directory as the guest sees it (read-write, shared with the host)."""
        return os.path.join("/run/vm/ctl", *parts)

    def host_path(self, *parts):
        return os.path.join(self.ctl, *parts)

    # ---------------------------------------------------------------------------------- end
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def console(self):
        return self._read(os.path.join(self.ctl, "console.log")) if self.ctl else ""

    def diagnostics(self, n=3000):
        q = self._read(os.path.join(self.ctl, "qemu.log")) if self.ctl else ""
        return (f"--- qemu: {q.strip()[-800:]}\n" if q.strip() else "") + f"--- guest console:\n{self.console()[-n:]}"

    def stop(self, timeout=30):
        """Power the guest off (SIGKILL its process group after ``timeout``), remove the control dir."""
        _LIVE.discard(self)
        if self.proc is not None:
            if self.proc.poll() is None and self.sock is not None:
                try:
                    self.sock.sendall(b"stop x\n")
                    self.proc.wait(timeout=timeout)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # qemu's own group (start_new_session)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.ctl:
            shutil.rmtree(self.ctl, ignore_errors=True)
            self.ctl = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-kit", action="store_true", help="build (or find) the cached kit and exit")
    ap.add_argument("--cgroup", default="v2", choices=sorted(CGROUP_CMDLINE))
    ap.add_argument("--init", default="busybox", choices=("busybox", "systemd"))
    ap.add_argument("--console", action="store_true", help="print the guest console at the end")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("command", nargs="*")
    a = ap.parse_args(argv)
    try:
        kit = build_kit()
    except KitError as e:
        print(f"vm: {e}", file=sys.stderr)
        return 125
    if a.build_kit:
        print(kit.path)
        return 0
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        g = Guest.start(kit, init=a.init, cgroup=a.cgroup, keep=[here], disk_mb=64)
    except GuestError as e:
        print(f"vm: {e}", file=sys.stderr)
        return 125
    try:
        log(f"booted in {g.boot_seconds:.1f}s; controllers: {g.controllers}")
        r = g.sh(" ".join(a.command) or "uname -a; cat /proc/cmdline; findmnt -n -o TARGET,FSTYPE /sys/fs/cgroup",
                 timeout=a.timeout)
        sys.stdout.write(r.out)
        sys.stderr.write(r.err)
        log(f"rc={r.rc} in {r.duration:.1f}s")
        if a.console:
            sys.stderr.write(g.console())
        return r.rc
    finally:
        g.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
