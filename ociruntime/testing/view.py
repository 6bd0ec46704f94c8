"""The differential harness: what a container sees, normalised, so that two runtimes can be
compared on the same bundle.

``container_view(runtime, bundle)`` runs a busybox shell script as the bundle's process (the rest
of the config is left alone) and returns a dict of normalised sections (credentials, mounts,
limits, /dev, namespaces, …) plus the normalised ``state`` JSON seen through a
create/start/stop/delete cycle of the same bundle. ``diff_views(a, b)`` renders the difference
as a unified diff of ``section: line`` lines ("" when equal).

Normalisation removes what legitimately differs between two runs: container ids, pids, times,
mount ids and device numbers, the host paths of the bundle/rootfs/runtime root, file dates,
pipe/socket inode numbers. It keeps everything a runtime decides: mount points, options, fs
types, sources, propagation shape, modes, owners, device numbers of device nodes, …
"""

import copy
import difflib
import json
import os
import re
import time

from .bundle import NS_PROC_NAMES

MARK = "@@@@ "

#: RFC 3339 with optional fraction (Go RFC3339Nano trims trailing zeros), UTC "Z"
CREATED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
CREATED_ANY_TZ_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")

STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Uid", "Gid", "Groups",
                 "NoNewPrivs", "Seccomp", "Seccomp_filters")

NS_NAMES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")

#: section name -> shell commands (``$$`` is the container process itself)
SECTION_SCRIPTS = {
    "status": "grep -E '^(%s):' /proc/$$/status" % "|".join(STATUS_FIELDS),
    "mountinfo": "cat /proc/$$/mountinfo",
    "limits": "cat /proc/$$/limits",
    "hostname": "hostname",
    "domainname": "cat /proc/sys/kernel/domainname",
    "dev": "ls -lnR /dev",
    "id": "id",
    "umask": "umask",
    "pwd": "pwd",
    "env": "env | sort",
    "oom_score_adj": "cat /proc/$$/oom_score_adj",
    "namespaces": 'for n in %s; do echo "$n $(readlink /proc/$$/ns/$n)"; done' % " ".join(NS_NAMES),
    "id_maps": 'echo "uid_map:"; cat /proc/$$/uid_map; echo "gid_map:"; cat /proc/$$/gid_map; '
               'echo "setgroups: $(cat /proc/$$/setgroups)"',
    "cgroup": "cat /proc/$$/cgroup",
    "fds": "ls -l /proc/$$/fd",
    "root": "stat -c '%F %a %u:%g' / ; "
            "if touch /.oci-view-probe 2>/dev/null; then rm -f /.oci-view-probe; echo writable; "
            "else echo not-writable; fi",
}
DEFAULT_SECTIONS = tuple(SECTION_SCRIPTS)

#: view keys that ``diff_views`` ignores unless told otherwise (raw outputs, error texts)
DEFAULT_IGNORE = ("raw",)


# --------------------------------------------------------------------------------------------
# script
# --------------------------------------------------------------------------------------------

def _shq(s):
    return "'" + str(s).replace("'", "'\\''") + "'"


def sysctl_proc_path(key):
    """``net.ipv4.ip_forward`` -> ``/proc/sys/net/ipv4/ip_forward`` (slashes are kept as is)."""
    if "/" in key:
        return "/proc/sys/" + key.lstrip("/")
    return "/proc/sys/" + key.replace(".", "/")


def build_script(sections=DEFAULT_SECTIONS, sysctls=(), paths=(), script=None):
    """The shell script printing ``@@@@ <section>`` headers followed by each section's output.

    ``paths``: container paths to describe (type, mode, owner, device numbers; writability is
    visible in ``mountinfo``: nothing is ever written to them);
    ``script``: extra commands, run in a subshell as section ``script``; its exit status becomes
    the container's exit status."""
    lines = ["exec 2>&1", "s() { echo '%s'\"$1\"; }" % MARK]
    for name in sections:
        lines.append(f"s {name}")
        lines.append(SECTION_SCRIPTS[name])
    for key in sysctls:
        lines.append(f"s {_shq('sysctl:' + key)}")
        lines.append(f"cat {_shq(sysctl_proc_path(key))}")
    if paths:
        lines.append("s paths")
        for p in paths:
            q = _shq(p)
            lines.append(
                f"if [ -e {q} ] || [ -L {q} ]; then "
                f"echo {q} \"$(stat -c '%F %a %u:%g %t:%T' {q})\"; "
                f"else echo {q} missing; fi")
    rc = "0"
    if script is not None:
        lines.append("s script")
        lines.append("(\n" + script + "\n)")
        lines.append("rc=$?")
        lines.append('s "script-exit $rc"')
        rc = "$rc"
    lines.append("s end")
    lines.append(f"exit {rc}")
    return "\n".join(lines) + "\n"


def parse_sections(text):
    """``@@@@ name`` delimited output -> {name: [lines]} (order kept; ``_preamble`` for
    anything before the first header)."""
    out = {}
    cur = "_preamble"
    for line in text.splitlines():
        if line.startswith(MARK):
            cur = line[len(MARK):].strip()
            out.setdefault(cur, [])
            continue
        out.setdefault(cur, []).append(line.rstrip())
    if not out.get("_preamble"):
        out.pop("_preamble", None)
    return out


# --------------------------------------------------------------------------------------------
# replacements (host paths, ids)
# --------------------------------------------------------------------------------------------

def _host_mounts():
    mounts = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                p = line.split()
                if len(p) > 4:
                    unesc = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), x)
                             for x in (p[3], p[4])]
                    mounts.append((unesc[1], unesc[0]))  # (mountpoint, root within fs)
    except OSError:
        pass
    return mounts


def fs_relative_variants(path, _mounts=None):
    """``path`` plus how it appears as the ``root`` field of a bind mount in mountinfo (the
    path relative to the root of the filesystem holding it)."""
    path = os.path.realpath(path)
    variants = [path]
    best = None
    for mp, root in (_mounts if _mounts is not None else _host_mounts()):
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best[0]):
                best = (mp, root)
    if best:
        mp, root = best
        rest = path[len(mp.rstrip("/")):] if mp != "/" else path
        rel = (root.rstrip("/") + rest) or "/"
        if rel not in variants:
            variants.append(rel)
    return variants


class Normalizer:
    """Replaces host-specific strings with placeholders, longest first."""

    def __init__(self, pairs=()):
        self.pairs = []
        for s, ph in pairs:
            self.add(s, ph)

    def add(self, s, placeholder):
        if s and len(s) > 1 and (s, placeholder) not in self.pairs:
            self.pairs.append((s, placeholder))
            self.pairs.sort(key=lambda p: -len(p[0]))
        return self

    def add_path(self, path, placeholder, mounts=None):
        if not path:
            return self
        path = os.fspath(path)
        self.add(os.path.abspath(path), placeholder)
        for v in fs_relative_variants(path, mounts):
            self.add(v, placeholder)
        return self

    def __call__(self, s):
        if not isinstance(s, str):
            return s
        for old, new in self.pairs:
            if old in s:
                s = s.replace(old, new)
        return s


def normalizer_for(runtime, bundle, ids=(), extra_paths=()):
    mounts = _host_mounts()
    n = Normalizer()
    n.add_path(bundle.rootfs, "<ROOTFS>", mounts)
    n.add_path(bundle.path, "<BUNDLE>", mounts)
    n.add_path(runtime.root, "<RTROOT>", mounts)
    n.add_path(runtime.workdir, "<RTWORK>", mounts)
    for i, p in enumerate(extra_paths):
        label = p[1] if isinstance(p, tuple) else f"<PATH{i}>"
        path = p[0] if isinstance(p, tuple) else p
        n.add_path(path, label, mounts)
    for cid in ids:
        n.add(cid, "<ID>")
    return n


# --------------------------------------------------------------------------------------------
# section normalisers
# --------------------------------------------------------------------------------------------

_OPT_FIELD_RE = re.compile(r"^(shared|master|propagate_from):\d+$")


def normalize_mountinfo(lines, norm=lambda s: s):
    """Drop mount id, parent id and major:minor; keep root, mount point, options, propagation
    (``shared``/``master``/``propagate_from`` without group numbers), fs type, source,
    super options."""
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) < 7 or "-" not in parts[6:]:
            out.append("?? " + norm(line))
            continue
        sep = parts.index("-", 6)
        root, mp, opts = parts[3], parts[4], parts[5]
        optional = [_OPT_FIELD_RE.sub(r"\1", f) for f in parts[6:sep]]
        rest = parts[sep + 1:]
        fstype = rest[0] if rest else "?"
        source = rest[1] if len(rest) > 1 else "?"
        superopts = rest[2] if len(rest) > 2 else ""
        prop = ",".join(optional) if optional else "private"
        out.append(norm(f"{mp} {opts} [{prop}] {fstype} {source} {superopts} root={root}"))
    return out


def normalize_ls(lines, norm=lambda s: s):
    """``ls -ln`` / ``ls -lnR`` output without dates and ``total`` lines."""
    out = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("total "):
            continue
        if s.endswith(":") and s.startswith("/"):
            out.append(norm(s))
            continue
        t = s.split()
        if len(t) < 6 or not re.match(r"^[-bcdlps?][-rwxsStT]{9}", t[0]):
            out.append("?? " + norm(s))
            continue
        perms, links, uid, gid = t[0], t[1], t[2], t[3]
        i = 4
        if perms[0] in "bc":
            if t[i].endswith(",") and i + 1 < len(t):
                size = t[i] + t[i + 1]
                i += 2
            else:
                size = t[i]
                i += 1
        else:
            size = t[i]
            i += 1
        name = " ".join(t[i + 3:])  # skip month, day, time-or-year
        out.append(norm(f"{perms} {links} {uid} {gid} {size} {name}"))
    return out


def normalize_fds(lines, norm=lambda s: s):
    out = []
    for line in normalize_ls(lines, norm):
        parts = line.split(" ", 5)
        if len(parts) < 6:
            out.append(line)
            continue
        name = re.sub(r"\b(pipe|socket|net|mnt|user|pid|ipc|uts|cgroup|time):\[\d+\]", r"\1",
                      parts[5])
        out.append(f"{parts[0]} {name}")
    return out


def normalize_namespaces(lines, host_ns, joined):
    """``net net:[4026531840]`` -> ``net host`` / ``net new`` / ``net joined(network)``."""
    out = []
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) != 2:
            if parts:
                out.append(f"{parts[0]} unavailable")
            continue
        name, link = parts
        m = re.search(r"\[(\d+)\]", link)
        if not m:
            out.append(f"{name} unavailable")
            continue
        ino = int(m.group(1))
        if ino in joined.get(name, {}):
            out.append(f"{name} joined({joined[name][ino]})")
        elif host_ns.get(name) == ino:
            out.append(f"{name} host")
        else:
            out.append(f"{name} new")
    return out


def parse_proc_status(text):
    """``/proc/<pid>/status`` text -> {field: value with whitespace collapsed}."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = re.sub(r"\s+", " ", v).strip()
    return out


def host_namespace_link(name, pid="self"):
    """``readlink /proc/<pid>/ns/<name>``, e.g. ``net:[4026531840]``."""
    return os.readlink(f"/proc/{pid}/ns/{name}")


def host_namespaces():
    ns = {}
    for name in NS_NAMES:
        try:
            link = os.readlink(f"/proc/self/ns/{name}")
        except OSError:
            continue
        m = re.search(r"\[(\d+)\]", link)
        if m:
            ns[name] = int(m.group(1))
    return ns


def joined_namespaces(config):
    """{proc ns name: {inode: "type path"}} for the ``path`` namespaces of a config."""
    out = {}
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        path = ns.get("path")
        if not path:
            continue
        try:
            ino = os.stat(path).st_ino
        except OSError:
            continue
        out.setdefault(NS_PROC_NAMES.get(ns["type"], ns["type"]), {})[ino] = ns["type"]
    return out


def normalize_state_text(text, norm=lambda s: s, ids=()):
    """Normalise the stdout of ``state``: the parsed object with volatile values replaced, the
    key order, and the format facts (indent, trailing newline)."""
    out = {}
    try:
        st = json.loads(text)
    except ValueError:
        return {"invalid_json": norm(text[:500])}
    if not isinstance(st, dict):
        return {"not_an_object": norm(text[:500])}
    out["keys"] = list(st)
    vals = {}
    for k, v in st.items():
        if k == "ociVersion":
            vals[k] = "<SEMVER>" if isinstance(v, str) and SEMVER_RE.match(v) else v
        elif k == "id":
            vals[k] = "<ID>" if v in ids else norm(v)
        elif k == "pid":
            vals[k] = "<PID>" if isinstance(v, int) and not isinstance(v, bool) and v > 0 else v
        elif k == "created":
            vals[k] = ("<RFC3339NANO-UTC>" if isinstance(v, str) and CREATED_RE.match(v)
                       else ("<RFC3339>" if isinstance(v, str) and CREATED_ANY_TZ_RE.match(v)
                             else v))
        elif isinstance(v, str):
            vals[k] = norm(v)
        else:
            vals[k] = _norm_json(v, norm)
    out["values"] = vals
    out["format"] = {
        "indent": _indent_of(text),
        "trailing_newline": text.endswith("\n"),
    }
    return out


def _norm_json(v, norm):
    if isinstance(v, str):
        return norm(v)
    if isinstance(v, dict):
        return {k: _norm_json(x, norm) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm_json(x, norm) for x in v]
    return v


def _indent_of(text):
    for line in text.splitlines()[1:]:
        m = re.match(r"^([ \t]*)\S", line)
        if m:
            ws = m.group(1)
            if not ws:
                continue
            return "tab" if ws[0] == "\t" else f"{len(ws)} spaces"
    return "none" if "\n" not in text.strip() else "unknown"


def normalize_hook_lines(text, norm=lambda s: s, ids=()):
    """Hook logs: ``NAME {state json}`` lines -> ``NAME {normalised, sorted keys}``."""
    out = []
    for line in text.splitlines():
        i = line.find("{")
        if i < 0:
            out.append(norm(line.rstrip()))
            continue
        head, body = line[:i], line[i:]
        try:
            obj = json.loads(body)
        except ValueError:
            out.append(norm(line.rstrip()))
            continue
        if isinstance(obj, dict):
            if obj.get("id") in ids:
                obj["id"] = "<ID>"
            if isinstance(obj.get("pid"), int) and obj["pid"] > 0:
                obj["pid"] = "<PID>"
            if isinstance(obj.get("ociVersion"), str) and SEMVER_RE.match(obj["ociVersion"]):
                obj["ociVersion"] = "<SEMVER>"
            obj = _norm_json(obj, norm)
        out.append(head + json.dumps(obj, sort_keys=True))
    return out


def strip_log_times(text):
    """Remove logrus ``time="…"`` / JSON ``"time":"…"`` fields from runtime error output."""
    text = re.sub(r'time="[^"]*" ?', "", text)
    text = re.sub(r'"time":"[^"]*",?', "", text)
    return text


# --------------------------------------------------------------------------------------------
# the view
# --------------------------------------------------------------------------------------------

def _default_paths(config):
    lx = config.get("linux") or {}
    paths = list(lx.get("maskedPaths") or []) + list(lx.get("readonlyPaths") or [])
    paths += [d["path"] for d in lx.get("devices") or [] if "path" in d]
    seen = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def _collect_files(files, norm, ids):
    out = {}
    for f in files:
        label = norm(os.path.abspath(f))
        try:
            with open(f) as fh:
                text = fh.read()
        except FileNotFoundError:
            out[label] = "<missing>"
            continue
        out[label] = normalize_hook_lines(text, norm, ids)
        with open(f, "w"):
            pass  # truncate for the next phase
    return out


def container_view(runtime, bundle, script=None, sysctls=None, sections=DEFAULT_SECTIONS,
                   paths=None, files=(), extra_paths=(), lifecycle=True, timeout=60.0):
    """Run ``bundle`` under ``runtime`` and return its normalised view (a dict).

    * ``script``: extra shell commands (section ``script``; their exit status is the
      container's); ``sysctls``: keys to read (default: the config's ``linux.sysctl``);
      ``paths``: container paths to describe (default: masked/readonly paths and devices);
    * ``files``: host files (e.g. hook logs) read — and truncated — after each phase;
    * ``extra_paths``: more host paths to replace with placeholders (``(path, "<LABEL>")``);
    * ``lifecycle``: also run create/state/start/state/delete and record normalised states.

    ``process.args`` (and ``terminal``) of the bundle are replaced for the duration of the call
    and config.json is restored afterwards."""
    saved = copy.deepcopy(bundle.config)
    if sysctls is None:
        sysctls = sorted(((saved.get("linux") or {}).get("sysctl") or {}))
    if paths is None:
        paths = _default_paths(saved)
    text = build_script(sections, sysctls, paths, script)
    view = {"raw": {}}
    host_ns = host_namespaces()
    joined = joined_namespaces(saved)
    ids = []
    try:
        bundle.set_args("/bin/sh", "-c", text)
        bundle.set_terminal(False)
        if getattr(runtime, "spec_version", None):
            bundle.config["ociVersion"] = runtime.spec_version
        bundle.write()
        norm = normalizer_for(runtime, bundle, ids, extra_paths)
        if files:
            _collect_files(files, norm, ids)  # start from empty logs
        if lifecycle:
            cid = runtime.new_id()
            ids.append(cid)
            norm.add(cid, "<ID>")
            view["lifecycle"] = _lifecycle(runtime, bundle, cid, norm, ids, timeout)
            view["raw"]["lifecycle_output"] = runtime.output(cid)
            if files:
                view["files_lifecycle"] = _collect_files(files, norm, ids)
        cid2 = runtime.new_id()
        ids.append(cid2)
        norm.add(cid2, "<ID>")
        hostname = saved.get("hostname")
        r = runtime.run(cid2, bundle, timeout=timeout)
        view["exit_code"] = "TIMEOUT" if r.timed_out else r.rc
        view["runtime_stderr"] = "empty" if not r.stderr.strip() else "non-empty"
        view["raw"]["run_stdout"] = r.stdout
        view["raw"]["run_stderr"] = strip_log_times(norm(r.stderr))
        secs = parse_sections(r.stdout)
        view.update(_normalize_sections(secs, norm, host_ns, joined, hostname))
        if files:
            view["files_run"] = _collect_files(files, norm, ids)
        runtime.delete(cid2, force=True)
    finally:
        bundle.config = saved
        bundle.write()
    return view


def _lifecycle(runtime, bundle, cid, norm, ids, timeout):
    lc = {}
    r = runtime.create(cid, bundle, timeout=timeout)
    lc["create"] = "ok" if r.ok else "error"
    if not r.ok:
        lc["create_stderr"] = "non-empty" if r.stderr.strip() else "empty"
        runtime.delete(cid, force=True)
        lc["after_delete"] = "gone" if not runtime.state_result(cid).ok else "still there"
        return lc
    s = runtime.state_result(cid)
    lc["state_created"] = normalize_state_text(s.stdout, norm, ids) if s.ok else "error"
    lc["state_created_stderr"] = "empty" if not s.stderr else "non-empty"
    r = runtime.start(cid, timeout=timeout)
    lc["start"] = "ok" if r.ok else "error"
    try:
        runtime.wait_stopped(cid, timeout=timeout)
        lc["stopped"] = True
    except AssertionError:
        lc["stopped"] = False
    s = runtime.state_result(cid)
    lc["state_stopped"] = normalize_state_text(s.stdout, norm, ids) if s.ok else "error"
    r = runtime.delete(cid)
    lc["delete"] = "ok" if r.ok else "error"
    if not r.ok:
        runtime.delete(cid, force=True)
    lc["after_delete"] = "gone" if not runtime.state_result(cid).ok else "still there"
    return lc


def _normalize_sections(secs, norm, host_ns, joined, hostname):
    out = {"complete": "end" in secs}
    for name, lines in secs.items():
        if name == "end":
            continue
        if name == "mountinfo":
            val = normalize_mountinfo(lines, norm)
        elif name == "dev":
            val = normalize_ls(lines, norm)
        elif name == "fds":
            val = normalize_fds(lines, norm)
        elif name == "namespaces":
            val = normalize_namespaces(lines, host_ns, joined)
        elif name == "env":
            val = sorted(norm(l) for l in lines)
        elif name == "status":
            val = [re.sub(r"\s+", " ", l).strip() for l in lines]
        elif name == "hostname" and hostname:
            val = ["<HOSTNAME>" if l == hostname else norm(l) for l in lines]
        elif name == "limits":
            val = [re.sub(r"\s{2,}", "  ", l).strip() for l in lines]
        else:
            val = [norm(l) for l in lines]
        out[name] = val
    return out


# --------------------------------------------------------------------------------------------
# diffing
# --------------------------------------------------------------------------------------------

def flatten_view(view, ignore=DEFAULT_IGNORE, prefix=""):
    """``{"a": {"b": [1, 2]}}`` -> ``["a.b: 1", "a.b: 2"]`` (dict order kept), skipping keys
    whose dotted path starts with an entry of ``ignore``."""
    lines = []

    def skip(path):
        return any(path == i or path.startswith(i + ".") for i in ignore)

    def walk(v, path):
        if skip(path):
            return
        if isinstance(v, dict):
            if not v:
                lines.append(f"{path}: {{}}")
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else str(k))
        elif isinstance(v, (list, tuple)):
            if not v:
                lines.append(f"{path}: []")
            for x in v:
                if isinstance(x, (dict, list, tuple)):
                    walk(x, path + "[]")
                else:
                    lines.append(f"{path}: {x}")
        else:
            lines.append(f"{path}: {v}")

    walk(view, prefix)
    return lines


def diff_views(a, b, ignore=DEFAULT_IGNORE, labels=("reference", "candidate"), context=2):
    """A unified diff of two views ("" when they are equal after ``ignore``)."""
    la = flatten_view(a, ignore)
    lb = flatten_view(b, ignore)
    if la == lb:
        return ""
    return "\n".join(difflib.unified_diff(la, lb, fromfile=labels[0], tofile=labels[1],
                                          n=context, lineterm=""))


def assert_views_equal(a, b, ignore=DEFAULT_IGNORE, labels=("reference", "candidate")):
    __tracebackhide__ = True
    d = diff_views(a, b, ignore=ignore, labels=labels)
    if d:
        raise AssertionError(f"container views differ ({labels[0]} vs {labels[1]}):\n{d}")


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll ``predicate()`` until it returns a truthy value (returned); AssertionError on
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
