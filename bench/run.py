#!/usr/bin/env python3
"""Side-by-side benchmark of OCI runtimes: ociruntime vs runc (and crun where it works here).

    sudo python3 bench/run.py [--quick] [--only SCENARIO] [--runtime NAME=PATH ...]

Method (see bench/README.md): every create/run gets a config.json it has never seen (unique hostname),
the "same bundle repeated" mode is reported separately; runtimes alternate round-robin (order rotated every
round) after a warm-up; each runtime has its own private --root.  The whole run happens in a private mount
namespace (the script re-executes itself under `unshare --mount --propagation private`) where
/sys/fs/cgroup/unified/cgroup.controllers is covered by an empty read-only file, for every runtime alike
(crun 1.8.1 refuses this machine's hybrid cgroup layout otherwise).  The bench is a child subreaper, as
conmon and containerd-shim are: container processes stay its descendants, it waits on their pids and reaps.

Standard library only; matplotlib (optional) draws the chart.  No timing assertions: it measures and reports.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import datetime
import itertools
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True                  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # ociruntime (its default spec)
import report  # noqa: E402  (bench/report.py: tables and chart)

REPO = Path(__file__).resolve().parent.parent
NS_MARK = "OCIBENCH_PRIVATE_MNTNS"
CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"
SCENARIOS = ("run", "lifecycle", "memory", "exec", "concurrent", "scaling")
TRUE, SLEEP = ["/bin/true"], ["/bin/sleep", "3600"]
PR_SET_CHILD_SUBREAPER = 36


def oci_config(rootfs: str, hostname: str, args: list[str]) -> dict:
    """The config `runc spec` (1.1.5) writes, with terminal off, the given args and an absolute root path:
    the project's one default spec (ociruntime.misc.default_spec, runc 1.4's example) as 1.1.5 had it —
    ociVersion 1.0.2-dev, ambient capabilities, no cgroup namespace."""
    from ociruntime.misc import default_spec
    spec = default_spec(cgroupns=False)
    caps = spec["process"]["capabilities"]
    caps["ambient"] = list(caps["bounding"])
    spec["process"].update(terminal=False, args=list(args))
    spec.update(ociVersion="1.0.2-dev", hostname=hostname, root={"path": rootfs, "readonly": True})
    return spec


# ---------------------------------------------------------------------------------------------- helpers

def say(*args):
    """print() that cannot abort the cleanup when stdout is gone (e.g. `run.py | head`)."""
    try:
        print(*args, flush=True)
    except OSError:
        pass


def ms(seconds):
    return None if seconds is None else seconds * 1000.0


def smaps(pid: int) -> dict:
    """Rss, Pss and Uss (private pages) in MiB from /proc/PID/smaps_rollup; {} if the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    out[key] = int(value.split()[0]) / 1024.0
        if out:
            out["Uss"] = out.pop("Private_Clean", 0.0) + out.pop("Private_Dirty", 0.0)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of `root`, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def mem_available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("inf")


def machine_info() -> dict:
    def first(path, prefix, sep=":"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(prefix):
                        return line.split(sep, 1)[1].strip().strip('"')
        except OSError:
            pass
        return None
    try:
        git = subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(), "kernel_version": platform.version(),
        "os": first("/etc/os-release", "PRETTY_NAME=", "="),
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "nproc": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "mem_total_mib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 1024),
        "python": platform.python_version(), "repo_commit": git,
    }


class Runtime:
    def __init__(self, name: str, path: str, root: Path):
        self.name, self.path, self.root = name, path, root

    def argv(self, *args) -> list[str]:
        return [self.path, "--root", str(self.root), *map(str, args)]


class Metric:
    """Samples of one measured quantity, per runtime.  `failures` counts failed operations."""

    def __init__(self, label: str, unit: str, names):
        self.label, self.unit = label, unit
        self.samples = {n: [] for n in names}
        self.failures = dict.fromkeys(names, 0)

    def add(self, rt: Runtime, value, record=True, failures=0):
        if not record:
            return
        if value is None:
            self.failures[rt.name] += 1
        else:
            self.samples[rt.name].append(value)
        self.failures[rt.name] += failures


# ---------------------------------------------------------------------------------------------- bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.token = os.urandom(3).hex()          # makes ids/hostnames unique across bench runs too
        self.seq = itertools.count()
        self.lock = threading.Lock()
        self.live: dict[tuple[str, str], tuple[Runtime, int | None]] = {}   # containers not yet deleted
        self.errors: dict[str, list[str]] = {}
        self.trash: list[tuple[str, int | None]] = []   # deleted containers: files to drop, pids to reap
        self.work = Path(tempfile.mkdtemp(prefix="ocibench-"))
        self.masked = False
        self.runtimes: list[Runtime] = []
        self.runtime_info: dict[str, dict] = {}
        self.scenarios: list[dict] = []

    # ----------------------------------------------------------------- setup

    def setup(self):
        if os.readlink("/proc/self/ns/mnt") == os.environ.get(NS_MARK):
            raise SystemExit("bench: not in a private mount namespace; refusing to mount anything")
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise SystemExit("bench: prctl(PR_SET_CHILD_SUBREAPER) failed")
        for d in ("bundles", "pids", "roots", "procs"):
            (self.work / d).mkdir()
        self.rootfs = self.build_rootfs()
        self.mask_unified_controllers()
        self.pick_runtimes()

    def build_rootfs(self) -> Path:
        root = self.work / "rootfs"
        (root / "bin").mkdir(parents=True)
        shutil.copy2("/bin/busybox", root / "bin" / "busybox")
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            if applet != "busybox":                     # `busybox --list` names itself: no self-loop
                (root / "bin" / applet).symlink_to("busybox")
        for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
            (root / d).mkdir()
        return root

    def mask_unified_controllers(self):
        """Cover cgroup.controllers of the cgroup2 hierarchy with an empty read-only file, only in this
        private mount namespace (after checking the mount is not shared with the host)."""
        if not os.path.exists(CONTROLLERS):
            return
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == os.path.dirname(CONTROLLERS) and any(x.startswith("shared:") for x in
                                                                     fields[6:fields.index("-")]):
                    raise SystemExit("bench: cgroup2 mount is shared with the host; refusing to mask")
        empty = self.work / "empty"
        empty.touch()
        subprocess.run(["mount", "-o", "bind,ro", str(empty), CONTROLLERS], check=True)
        self.masked = True

    def pick_runtimes(self):
        wanted = self.args.runtime or [
            f"ociruntime={REPO / '.venv' / 'bin' / 'ociruntime'}", "runc=/usr/sbin/runc", "crun=/usr/bin/crun"]
        for spec in wanted:
            name, _, path = spec.partition("=")
            info = self.runtime_info[name] = {"path": path}
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                info.update(status="skipped", reason=f"binary not found: {path}")
                print(f"skipping {name}: binary not found: {path}")
                continue
            try:
                version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
                info["version"] = (version.stdout or version.stderr).strip() or "?"
            except (OSError, subprocess.SubprocessError) as e:
                info["version"] = f"? ({e})"
            rt = Runtime(name, path, self.work / "roots" / name)
            rt.root.mkdir()
            cid = self.new_id()
            with self.lock:
                self.live[(name, cid)] = (rt, None)
            ok, _, msg = self.exec_(rt.argv("run", "--bundle", self.bundle(cid), cid))
            if ok:
                with self.lock:
                    self.live.pop((name, cid))
                    self.trash.append((cid, None))
            else:
                self.discard(rt, cid)
                info.update(status="skipped", reason=f"probe `run /bin/true` failed: {msg}")
                print(f"skipping {name}: it does not work on this machine: {msg}")
                continue
            info["status"] = "ok"
            self.runtimes.append(rt)
        if not self.runtimes:
            raise SystemExit("bench: no runtime to measure")
        names = [rt.name for rt in self.runtimes]
        self.baseline = self.args.baseline if self.args.baseline in names else None

    # ----------------------------------------------------------------- primitives

    def new_id(self) -> str:
        return f"ob{self.token}-{next(self.seq)}"

    def bundle(self, cid: str, args=TRUE, hostname: str | None = None) -> Path:
        """A bundle dir holding only config.json (root.path is the shared read-only busybox rootfs)."""
        d = self.work / "bundles" / cid
        d.mkdir()
        (d / "config.json").write_text(json.dumps(oci_config(str(self.rootfs), hostname or f"h-{cid}", args)))
        return d

    def exec_(self, argv: list[str], timeout=300):
        """Run one command; (ok, seconds, message).  stdin is an empty pipe, stdout+stderr an anonymous file:
        no host device fd and no pipe that a container left behind could keep open."""
        r, w = os.pipe()
        os.close(w)
        try:
            with tempfile.TemporaryFile(dir=self.work) as out:
                # Not subprocess.run(timeout=): Popen.wait(timeout) polls with a sleep that doubles up to
                # 50 ms, which quantizes every measurement.  A pidfd wakes us exactly when the command exits.
                t0 = time.perf_counter()
                try:
                    proc = subprocess.Popen(argv, stdin=r, stdout=out, stderr=out)
                except OSError as e:                     # e.g. EAGAIN under the concurrent burst
                    return False, time.perf_counter() - t0, f"`{' '.join(argv[3:])}` could not start: {e}"
                fd = os.pidfd_open(proc.pid)
                try:
                    poller = select.poll()
                    poller.register(fd, select.POLLIN)
                    timed_out = not poller.poll(int(timeout * 1000))
                    if timed_out:
                        proc.kill()                      # our own child, by pid
                    rc = proc.wait()
                finally:
                    os.close(fd)
                dt = time.perf_counter() - t0
                if timed_out:
                    rc = f"killed after the {timeout}s timeout"
                if rc == 0:
                    return True, dt, ""
                out.seek(0)
                lines = out.read().decode(errors="replace").strip().splitlines()
                return False, dt, f"`{' '.join(argv[3:])}` exit {rc}: {lines[-1][:300] if lines else ''}"
        finally:
            os.close(r)

    def call(self, rt: Runtime, *args, quiet=False):
        """Run `rt args...`; seconds, or None (error recorded) on failure."""
        ok, dt, msg = self.exec_(rt.argv(*args))
        if ok:
            return dt
        if not quiet:
            self.error(rt, msg)
        return None

    def error(self, rt: Runtime, msg: str):
        with self.lock:
            errs = self.errors.setdefault(rt.name, [])
            errs.append(msg)
            if len(errs) <= 5:
                print(f"  ! {rt.name}: {msg}", flush=True)
            elif len(errs) == 6:
                print(f"  ! {rt.name}: further errors are counted, not printed", flush=True)

    def create(self, rt: Runtime, cid: str, bundle: Path):
        """`create`; (seconds, pid) or (None, None).  Tracked for cleanup before the call."""
        pidfile = self.work / "pids" / cid
        with self.lock:
            self.live[(rt.name, cid)] = (rt, None)
        dt = self.call(rt, "create", "--bundle", bundle, "--pid-file", pidfile, cid)
        try:
            pid = int(pidfile.read_text()) if dt is not None else None
        except (OSError, ValueError) as e:
            self.error(rt, f"create {cid}: unreadable pid file: {e}")
            pid = None
        if pid is None:
            self.discard(rt, cid)
            return None, None
        with self.lock:
            self.live[(rt.name, cid)] = (rt, pid)
        return dt, pid

    def delete(self, rt: Runtime, cid: str, force=False, quiet=False):
        """`delete [--force]`; seconds or None.  A container whose delete failed stays tracked for cleanup."""
        dt = self.call(rt, "delete", *(["--force"] if force else []), cid, quiet=quiet)
        if dt is not None:
            with self.lock:
                _, pid = self.live.pop((rt.name, cid), (None, None))
                self.trash.append((cid, pid))
        return dt

    def discard(self, rt: Runtime, cid: str):
        """After a failure: `delete --force` (quiet, untimed) if the container is still tracked."""
        if (rt.name, cid) in self.live:
            self.delete(rt, cid, force=True, quiet=True)

    def flush(self):
        """Outside any timed window: reap the deleted containers' processes, drop their bundles/pid files."""
        with self.lock:
            items, self.trash = self.trash, []
        for cid, pid in items:
            if pid:
                self.wait_exit(pid, timeout=10)
            shutil.rmtree(self.work / "bundles" / cid, ignore_errors=True)
            (self.work / "pids" / cid).unlink(missing_ok=True)

    def wait_exit(self, pid: int, timeout=30.0) -> bool:
        """Wait until `pid` has exited (pidfd, works for non-children too), then reap it if it is ours."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(int(timeout * 1000)):
                return False
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return True
        finally:
            os.close(fd)

    def stop(self, rt: Runtime, cid: str, pid: int | None) -> bool:
        """kill KILL, wait for the exit, delete: what containerd and podman do.  Untimed helper."""
        ok = pid is not None and self.call(rt, "kill", cid, "KILL") is not None and self.wait_exit(pid)
        ok = ok and self.delete(rt, cid) is not None
        if not ok:
            self.discard(rt, cid)
        return ok

    def cycle(self, rt: Runtime, cid: str, bundle: Path):
        """create + start + wait for exit + delete of a /bin/true container; wall seconds or None."""
        t0 = time.perf_counter()
        dt, pid = self.create(rt, cid, bundle)
        ok = dt is not None and self.call(rt, "start", cid) is not None
        if ok and not self.wait_exit(pid):
            self.error(rt, f"{cid}: /bin/true did not exit within 30 s")
            ok = False
        ok = ok and self.delete(rt, cid) is not None
        wall = time.perf_counter() - t0
        if not ok:
            self.discard(rt, cid)
        return wall if ok else None

    def rounds(self, reps: int, warmup: int):
        """(round, record, runtime): warm-up rounds first (record=False); the order rotates every round."""
        n = len(self.runtimes)
        for i in range(warmup + reps):
            for rt in self.runtimes[i % n:] + self.runtimes[:i % n]:
                self.flush()
                yield i, i >= warmup, rt
        self.flush()

    def pool(self, fn, items, width: int):
        ex = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, width))
        try:
            return list(ex.map(fn, items))
        finally:
            ex.shutdown(wait=True, cancel_futures=True)

    def warm(self):
        for rt in self.runtimes:
            cid = self.new_id()
            self.cycle(rt, cid, self.bundle(cid))

    def metric(self, label, unit="ms"):
        return Metric(label, unit, [rt.name for rt in self.runtimes])

    # ----------------------------------------------------------------- scenarios

    def sc_run(self):
        fresh = self.metric("fresh config.json each run (honest)")
        same = self.metric("same bundle repeated")
        same_bundle = {rt.name: self.bundle(f"same-run-{self.token}-{rt.name}", hostname="bench-same")
                       for rt in self.runtimes}
        for rnd, rec, rt in self.rounds(self.args.reps, self.args.warmup):
            modes = [(fresh, None), (same, same_bundle[rt.name])]
            for m, fixed in (modes if rnd % 2 == 0 else modes[::-1]):
                cid = self.new_id()
                bundle = fixed or self.bundle(cid)
                with self.lock:
                    self.live[(rt.name, cid)] = (rt, None)
                dt = self.call(rt, "run", "--bundle", bundle, cid)
                if dt is None:
                    self.discard(rt, cid)
                else:                                   # `run` deletes its container itself
                    with self.lock:
                        self.live.pop((rt.name, cid), None)
                        if fixed is None:
                            self.trash.append((cid, None))
                m.add(rt, ms(dt), rec)
        return "`run` of /bin/true (wall time)", [fresh, same], []

    def sc_lifecycle(self):
        fresh = self.metric("fresh config.json each create (honest)")
        same = self.metric("same bundle repeated")
        same_bundle = {rt.name: self.bundle(f"same-cycle-{self.token}-{rt.name}", hostname="bench-same")
                       for rt in self.runtimes}
        for rnd, rec, rt in self.rounds(self.args.reps, self.args.warmup):
            modes = [(fresh, None), (same, same_bundle[rt.name])]
            for m, fixed in (modes if rnd % 2 == 0 else modes[::-1]):
                cid = self.new_id()
                m.add(rt, ms(self.cycle(rt, cid, fixed or self.bundle(cid))), rec)
        return "create + start + wait for exit + delete, /bin/true (wall time)", [fresh, same], []

    def sc_memory(self):
        pss = self.metric("PSS of the waiting process (pid file)", "MiB")
        uss = self.metric("USS (private) of the waiting process", "MiB")
        rss = self.metric("RSS of the waiting process (pid file)", "MiB")
        total = self.metric("PSS of all processes left by create", "MiB")
        left: dict[str, set] = {rt.name: set() for rt in self.runtimes}
        for _, rec, rt in self.rounds(self.args.reps, self.args.warmup):
            cid = self.new_id()
            dt, pid = self.create(rt, cid, self.bundle(cid))
            if dt is None:
                for m in (pss, uss, rss, total):
                    m.add(rt, None, rec)
                continue
            with self.lock:
                others = {p for (_, p) in self.live.values() if p and p != pid}
            procs = [p for p in descendants(os.getpid()) if p not in others]
            mem = smaps(pid)
            pss.add(rt, mem.get("Pss"), rec)
            uss.add(rt, mem.get("Uss"), rec)
            rss.add(rt, mem.get("Rss"), rec)
            total.add(rt, sum(smaps(p).get("Pss", 0.0) for p in procs), rec)
            if rec:
                left[rt.name].add(len(procs))
            ok = self.call(rt, "start", cid) is not None and self.wait_exit(pid)
            if not (ok and self.delete(rt, cid) is not None):
                self.discard(rt, cid)
        notes = ["processes left behind by `create` (pid-file process included): " +
                 ", ".join(f"{n} {'/'.join(map(str, sorted(v))) or '?'}" for n, v in left.items())]
        return "memory of the created (waiting) container process", [pss, uss, rss, total], notes

    def sc_exec(self):
        by_file = self.metric("exec --process FILE (fresh process.json)")
        by_argv = self.metric("exec CID /bin/true")
        sleepers = {}
        try:
            for rt in self.runtimes:
                cid = self.new_id()
                dt, pid = self.create(rt, cid, self.bundle(cid, SLEEP))
                if dt is not None and self.call(rt, "start", cid) is not None:
                    sleepers[rt.name] = (cid, pid)
            base = oci_config(str(self.rootfs), "x", TRUE)["process"]
            for rnd, rec, rt in self.rounds(self.args.reps, self.args.warmup):
                if rt.name not in sleepers:
                    by_file.add(rt, None, rec)
                    by_argv.add(rt, None, rec)
                    continue
                cid = sleepers[rt.name][0]
                pfile = self.work / "procs" / f"{self.new_id()}.json"
                pfile.write_text(json.dumps(dict(base, env=base["env"] + [f"BENCH_EXEC={pfile.stem}"])))
                modes = [(by_file, ("exec", "--process", pfile, cid)), (by_argv, ("exec", cid, "/bin/true"))]
                for m, argv in (modes if rnd % 2 == 0 else modes[::-1]):
                    m.add(rt, ms(self.call(rt, *argv)), rec)
                pfile.unlink()
        finally:
            for rt in self.runtimes:
                if rt.name in sleepers:
                    self.stop(rt, *sleepers[rt.name])
        return "`exec` of /bin/true into a running container (wall time)", [by_file, by_argv], []

    def sc_concurrent(self):
        n, a = self.args.concurrent, self.args
        up_m = self.metric(f"create+start x{n}, all at once", "s")
        down_m = self.metric(f"kill+wait+delete x{n}, all at once", "s")
        total_m = self.metric("total", "s")
        self.warm()
        for _, rec, rt in self.rounds(a.concurrent_reps, 0):
            ids = [self.new_id() for _ in range(n)]
            bundles = {cid: self.bundle(cid, SLEEP) for cid in ids}      # written before the clock starts

            def up(cid):
                dt, pid = self.create(rt, cid, bundles[cid])
                return pid, dt is not None and self.call(rt, "start", cid) is not None

            t0 = time.perf_counter()
            started = self.pool(up, ids, n)
            t1 = time.perf_counter()
            stopped = self.pool(lambda x: x[1][1] and self.stop(rt, x[0], x[1][0]), list(zip(ids, started)), n)
            t2 = time.perf_counter()
            for cid in ids:                                        # failed ones: force-delete (untimed)
                self.discard(rt, cid)
            up_m.add(rt, t1 - t0, rec, failures=sum(not ok for _, ok in started))
            down_m.add(rt, t2 - t1, rec, failures=sum(ok and not s for (_, ok), s in zip(started, stopped)))
            total_m.add(rt, t2 - t0, rec)
        return (f"{n} containers (sleep) created+started concurrently on {os.cpu_count()} CPUs, then deleted",
                [up_m, down_m, total_m], ["fail = containers that did not come up / did not go away cleanly"])

    def grow(self, population: dict, level: int) -> list[str]:
        """Add created-but-not-started containers until each runtime has `level` (untimed)."""
        notes = []
        for rt in self.runtimes:
            have = population[rt.name]
            while len(have) < level:
                if mem_available_mib() < 2048:
                    notes.append(f"{rt.name}: population capped at {len(have)} (MemAvailable < 2 GiB)")
                    break
                ids = [self.new_id() for _ in range(min(50, level - len(have)))]

                def add(cid):
                    return cid, self.create(rt, cid, self.bundle(cid))[1]

                made = [(cid, pid) for cid, pid in self.pool(add, ids, 2 * os.cpu_count()) if pid]
                if not made:
                    notes.append(f"{rt.name}: population stopped at {len(have)}: create keeps failing")
                    break
                have.extend(made)
        return notes

    def sc_scaling(self):
        """Each operation on one container with 0, 200, 1000 others present, then at 0 again once the
        population is gone: the levels are measured one after the other, so "@0 again" shows the drift of
        the machine over the scenario (a growth the "@0 again" row also has is drift, not the runtime)."""
        a = self.args
        levels = sorted({0, a.population} | ({a.list_population} if a.list_population else set()))
        ops = ("create", "state", "start", "kill", "delete", "list")
        population = {rt.name: [] for rt in self.runtimes}
        metrics, notes = {}, []

        def measure(level: str):
            for op in ops:
                metrics[(op, level)] = self.metric(f"{op} @{level}")
            for _, rec, rt in self.rounds(a.reps, a.warmup):
                cid, t = self.new_id(), {}
                t["create"], pid = self.create(rt, cid, self.bundle(cid, SLEEP))
                if pid:
                    t["state"] = self.call(rt, "state", cid)
                    t["start"] = self.call(rt, "start", cid)
                    t["kill"] = self.call(rt, "kill", cid, "KILL")
                    if t["kill"] is not None and self.wait_exit(pid):
                        t["delete"] = self.delete(rt, cid)
                self.discard(rt, cid)
                t["list"] = self.call(rt, "list")               # lists exactly the population
                for op in ops:
                    metrics[(op, level)].add(rt, ms(t.get(op)), rec)

        def drop_population():
            items = [(rt, cid) for rt in self.runtimes for cid, _ in population[rt.name]]
            self.pool(lambda x: self.delete(x[0], x[1], force=True, quiet=True), items, 4 * os.cpu_count())
            self.flush()
            for have in population.values():
                have.clear()

        self.warm()
        try:
            for level in levels:
                notes += self.grow(population, level)
                measure(str(level))
        finally:
            drop_population()
        labels = [str(lv) for lv in levels]
        if len(levels) > 1:
            measure("0 again")
            labels.append("0 again")
            for op in ops:                            # growth: median @level / median @0, per runtime
                growth = []
                for rt in self.runtimes:
                    lo = metrics[(op, "0")].samples[rt.name]
                    his = [metrics[(op, lv)].samples[rt.name] for lv in labels[1:]]
                    growth.append(rt.name + " " + "/".join(
                        f"{statistics.median(hi) / statistics.median(lo):.2f}" if lo and hi else "-" for hi in his))
                notes.append(f"{op}: median @{'/@'.join(labels[1:])} / median @0: " + ", ".join(growth))
        ordered = [metrics[(op, lv)] for op in ops for lv in labels]
        return ("cost vs number of existing containers (created, not started; every runtime's population "
                "present at once) (wall time)", ordered, notes)

    # ----------------------------------------------------------------- driver

    def run(self):
        self.setup()
        machine = self.machine()                    # taken at the start (date = start of the run)
        print(report.header(machine, self.runtime_info), flush=True)
        for name in self.args.only or SCENARIOS:
            print(f"\n... {name}", flush=True)
            t0 = time.perf_counter()
            title, metrics, notes = getattr(self, f"sc_{name}")()
            sc = report.scenario_dict(name, title, metrics, notes, [r.name for r in self.runtimes], self.baseline)
            sc["seconds"] = round(time.perf_counter() - t0, 1)
            self.scenarios.append(sc)
            print(report.table(sc), flush=True)
        results = {
            "machine": machine,
            "settings": {k: v for k, v in vars(self.args).items() if k != "runtime"},
            "runtimes": self.runtime_info, "baseline": self.baseline,
            "scenarios": self.scenarios,
            "errors": {k: {"count": len(v), "first": v[:20]} for k, v in self.errors.items()},
        }
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {out / 'latest.json'}")
        problem = report.chart(results, out / "latest.png")
        print(problem or f"wrote {out / 'latest.png'}")

    def machine(self) -> dict:
        info = machine_info()
        info["environment"] = (
            "private mount namespace (unshare --mount --propagation private); bench is a child subreaper; "
            + (f"{CONTROLLERS} covered by an empty read-only file (for every runtime)" if self.masked else
               "cgroup.controllers not masked"))
        return info

    def cleanup(self):
        """Delete every container still known, end leftover descendants by pid, reap, unmount, remove tmp."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        with self.lock:
            left = list(self.live.items())
        if left:
            say(f"cleanup: force-deleting {len(left)} container(s)")
            self.pool(lambda kv: self.delete(kv[1][0], kv[0][1], force=True, quiet=True), left, 8)
        self.flush()
        strays = descendants(os.getpid())
        if strays:
            say(f"cleanup: {len(strays)} process(es) still alive below the bench, killing by pid: {strays}")
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in strays:
                self.wait_exit(pid, timeout=5)
        while True:                                   # reap whatever else was reparented to us
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        with self.lock:
            undeleted = [cid for (_, cid) in self.live]
        for cid in undeleted:                         # cgroups of containers whose delete failed (unique ids)
            for hier in Path("/sys/fs/cgroup").iterdir():
                for d in [hier / cid] + list(hier.glob(f"*/{cid}")) + list(hier.glob(f"*/*/{cid}")):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
        if self.masked:
            subprocess.run(["umount", CONTROLLERS], check=False)
        shutil.rmtree(self.work, ignore_errors=True)
        if self.work.exists():
            say(f"cleanup: could not remove {self.work} completely")
        st = os.stat("/dev/null")
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777, os.major(st.st_rdev), os.minor(st.st_rdev)) != (0, 0, 0o666, 1, 3):
            say(f"WARNING: /dev/null is now uid={st.st_uid} gid={st.st_gid} mode={oct(st.st_mode)}; "
                  "a runtime touched a host device")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Side-by-side OCI runtime benchmark (run as root).")
    p.add_argument("--runtime", action="append", metavar="NAME=PATH",
                   help="runtime to measure (repeatable; replaces the defaults ociruntime=.venv/bin/ociruntime, "
                        "runc=/usr/sbin/runc, crun=/usr/bin/crun)")
    p.add_argument("--quick", action="store_true", help="smoke run: 5 reps, fewer containers, no 1000-list")
    p.add_argument("--only", action="append", metavar="SCENARIO",
                   help=f"run only these scenarios (repeatable or comma-separated): {', '.join(SCENARIOS)}")
    p.add_argument("--reps", type=int, help="measured repetitions per runtime (default 30, quick 5)")
    p.add_argument("--warmup", type=int, help="unrecorded warm-up rounds (default 3, quick 1)")
    p.add_argument("--concurrent", type=int, help="containers in the concurrent burst (default 100, quick 20)")
    p.add_argument("--concurrent-reps", type=int, help="bursts per runtime (default 5, quick 2)")
    p.add_argument("--population", type=int, help="existing containers for scaling (default 200, quick 50)")
    p.add_argument("--list-population", type=int, help="containers for the big `list` (default 1000, quick: off)")
    p.add_argument("--baseline", default="runc", help="runtime the ratios are relative to (default runc)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output directory")
    a = p.parse_args(argv)
    q = a.quick
    for key, full, quick in (("reps", 30, 5), ("warmup", 3, 1), ("concurrent", 100, 20),
                             ("concurrent_reps", 5, 2), ("population", 200, 50), ("list_population", 1000, 0)):
        if getattr(a, key) is None:
            setattr(a, key, quick if q else full)
    if a.only:
        a.only = [s for item in a.only for s in item.split(",") if s]
        bad = [s for s in a.only if s not in SCENARIOS]
        if bad:
            p.error(f"unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)}")
        a.only = [s for s in SCENARIOS if s in a.only]
    for spec in a.runtime or []:
        if "=" not in spec:
            p.error(f"--runtime wants NAME=PATH, got {spec!r}")
    return a


def main():
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: must run as root (it creates containers)")
    if NS_MARK not in os.environ:           # re-run inside a private mount namespace made for the bench
        env = dict(os.environ, **{NS_MARK: os.readlink("/proc/self/ns/mnt")})   # the caller's namespace
        os.execve("/usr/bin/unshare", ["unshare", "--mount", "--propagation", "private", "--",
                                       sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    bench = Bench(args)
    status = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        say("\ninterrupted; results not written")
        status = 130
    finally:
        bench.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
