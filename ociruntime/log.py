"""logrus-compatible logging (runc's --log / --log-format contract, cli-contract.md §3)."""
from ociruntime.lean import posix
import sys
import time

LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3, "fatal": 4}


def _now():
    t = time.time()
    lt = time.localtime(t)
    off = lt.tm_gmtoff
    base = time.strftime("%Y-%m-%dT%H:%M:%S", lt)
    if off == 0:
        return base + "Z"
    sign = "+" if off > 0 else "-"
    off = abs(off)
    return f"{base}{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


def _quote(s):
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class Logger:
    def __init__(self):
        self.path = None
        self.fd = 2
        self.format = "text"
        self.level = LEVELS["info"]

    def configure(self, path=None, fmt="text", debug=False):
        if fmt not in ("text", "json", ""):
            raise ValueError(f"invalid log-format: {fmt}")
        self.format = fmt or "text"
        self.level = LEVELS["debug" if debug else "info"]
        if path and path != "/dev/stderr":
            self.fd = posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_SYNC | posix.O_CLOEXEC,
                                 0o644)
            self.path = path

    def log(self, level, msg, **fields):
        if LEVELS[level] < self.level:
            return
        if self.format == "json":
            import json
            obj = {"level": level, "msg": msg, "time": _now(), **fields}
            line = json.dumps(dict(sorted(obj.items())), separators=(",", ":"))
        else:
            line = f"time=\"{_now()}\" level={level} msg={_quote(msg)}"
            for k, v in sorted(fields.items()):
                line += f" {k}={_quote(str(v))}"
        try:
            posix.write(self.fd, (line + "\n").encode())
        except OSError:
            pass
        if level in ("error", "fatal") and self.fd != 2:
            # runc fatal(): the bare message also goes to stderr when logging elsewhere
            try:
                posix.write(2, (msg + "\n").encode())
            except OSError:
                pass

    def debug(self, msg, **kw):
        self.log("debug", msg, **kw)

    def info(self, msg, **kw):
        self.log("info", msg, **kw)

    def warning(self, msg, **kw):
        self.log("warning", msg, **kw)

    def error(self, msg, **kw):
        self.log("error", msg, **kw)


log = Logger()
