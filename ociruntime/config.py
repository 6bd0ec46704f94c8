"""Strict loading of config.json and of the process.json given to `exec --process`.

Python's json module accepts things the JSON spec (RFC 8259) and the runtime spec do not: duplicate keys (the last
one wins silently), NaN / Infinity / -Infinity, and numbers like 1e400 that overflow to inf. We reject all of these.
We also reject:

* files over 16 MiB, checked with fstat before reading. A config.json that is not a regular file (such as a FIFO,
  which would block) is rejected too; a process.json may be any readable file, a pipe included
  (`exec --process <(...)`, as runc).
* bytes that are not valid UTF-8, and a UTF-8 byte order mark.
* trailing garbage after the document.
* nesting deep enough to make the parser recurse too far (RecursionError).
* a top-level value that is not an object.
* strings that contain NUL (U+0000) or a lone UTF-16 surrogate (such as "\\ud800"). Every string may reach a C API
  or execve(2), where NUL would silently truncate the string and a lone surrogate cannot be encoded at all.

A JSON null as the value of a member means that member is absent (Go's decoding, which runc uses).

Every failure raises ConfigError(pointer, reason). For syntax errors the reason names the line and column. The one
exception is a missing config.json: that raises OciError with runc's exact text.
"""

import os
import stat

from ociruntime.errors import ConfigError, OciError

MAX_SIZE = 16 * 1024 * 1024

CONFIG_NOT_FOUND = "JSON specification file config.json not found"

_INF = float("inf")


def load(path, keep_null=False):
    """Read and strictly parse config.json at ``path``. Returns the top-level object as a dict; a JSON null
    is dropped (absent, as Go's decoding in runc reads it) unless ``keep_null`` (the `check` command)."""
    try:
        data = _read(path, "config.json")
    except FileNotFoundError:
        raise OciError(CONFIG_NOT_FOUND) from None
    return loads(data, "config.json", keep_null)


def load_process(path):
    """Read and strictly parse a process.json for `exec --process`. Errors name "process.json"."""
    try:
        data = _read(path, "process.json", any_file=True)
    except FileNotFoundError:
        raise ConfigError("", f"cannot open {path}: no such file", source="process.json") from None
    return loads(data, "process.json")


def loads(data, source="config.json", keep_null=False):
    """Strictly parse ``data`` (bytes) as a JSON object, with the same rules as load()."""
    if len(data) > MAX_SIZE:
        raise ConfigError("", f"file is larger than {MAX_SIZE} bytes", source=source)
    if data.startswith(b"\xef\xbb\xbf"):
        raise ConfigError("", "invalid JSON: a UTF-8 byte order mark (BOM) is not allowed", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _position(data, e.start)
        raise ConfigError("", f"invalid UTF-8 at line {line} column {col} (byte offset {e.start})",
                          source=source) from None

    bad = []   # set when the parser produced a sentinel for something we reject

    def pairs_hook(pairs):
        d = dict(pairs)
        if len(d) != len(pairs):
            seen = set()
            for k, _ in pairs:
                if k in seen:
                    bad.append(True)
                    return _Bad(f"duplicate key {k!r}", key=k, value=d)
                seen.add(k)
        if not keep_null and None in d.values():
            # Go's decoding (runc): a JSON null leaves the field at its zero value, i.e. absent
            d = {k: v for k, v in d.items() if v is not None}
        return d

    def parse_constant(name):
        bad.append(True)
        return _Bad(f"{name} is not a valid JSON number")

    def parse_float(s):
        v = float(s)
        if v == _INF or v == -_INF:
            bad.append(True)
            return _Bad(f"number {_clip(s)} is out of range")
        return v

    try:
        # the fast path: the C scanner alone, without importing the json package (re, enum, …)
        from ociruntime import fastjson
        doc = fastjson.loads_with(text, pairs_hook, parse_constant, parse_float)
    except (ValueError, StopIteration):
        doc = None  # not valid JSON: parse again below, only to explain where and why
    except RecursionError:
        raise ConfigError("", "invalid JSON: nesting is too deep", source=source) from None
    else:
        return _check_doc(doc, bad, text, source)
    import json
    bad.clear()
    decoder = json.JSONDecoder(object_pairs_hook=pairs_hook, parse_constant=parse_constant,
                               parse_float=parse_float)
    try:
        doc = decoder.decode(text)
    except json.JSONDecodeError as e:
        msg = e.msg[:-3] if e.msg.endswith(" at") else e.msg      # "Invalid control character at"
        raise ConfigError("", f"invalid JSON: {msg} at line {e.lineno} column {e.colno}",
                          source=source) from None
    except RecursionError:
        raise ConfigError("", "invalid JSON: nesting is too deep", source=source) from None
    except ValueError as e:
        # An integer literal with more digits than int() accepts (sys.get_int_max_str_digits()).
        reason = "an integer has too many digits" if "digits" in str(e) else _clip(" ".join(str(e).split()), 200)
        raise ConfigError("", f"invalid JSON: {reason}", source=source) from None

    return _check_doc(doc, bad, text, source)


def _check_doc(doc, bad, text, source):
    if bad:
        pointer, reason = _find_bad(doc)
        raise ConfigError(pointer, reason, source=source)
    if not isinstance(doc, dict):
        raise ConfigError("", f"the top-level value must be a JSON object, not {_json_type(doc)}", source=source)
    if _NUL_ESCAPE in text or _maybe_surrogate(text):
        found = _find_bad_string(doc)
        if found is not None:
            raise ConfigError(found[0], found[1], source=source)
    return doc


# ------------------------------------------------------------------------------------------------ internals

class _Bad:
    """Stands in for a value the parser must not produce. It lets us report a JSON pointer after parsing."""
    __slots__ = ("reason", "key", "value")

    def __init__(self, reason, key=None, value=None):
        self.reason = reason
        self.key = key
        self.value = value


def _read(path, source, any_file=False):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ConfigError("", f"cannot open {path}: {e.strerror}", source=source) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            if not any_file or stat.S_ISDIR(st.st_mode):
                raise ConfigError("", f"{path} is not a regular file", source=source)
            os.set_blocking(fd, True)  # a pipe: read until its writer is done
        if st.st_size > MAX_SIZE:
            raise ConfigError("", f"file is larger than {MAX_SIZE} bytes ({st.st_size} bytes)", source=source)
        chunks = []
        total = 0
        while total <= MAX_SIZE:
            # The size from fstat is a hint: the file may grow, and some files report 0.
            chunk = os.read(fd, max(st.st_size + 1 - total, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_SIZE:
            raise ConfigError("", f"file is larger than {MAX_SIZE} bytes", source=source)
        return b"".join(chunks)
    except OSError as e:
        raise ConfigError("", f"cannot read {path}: {e.strerror}", source=source) from None
    finally:
        os.close(fd)


def _position(data, offset):
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, col


def _clip(s, n=40):
    return s if len(s) <= n else s[:n - 3] + "..."


def _json_type(v):
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if v is None:
        return "null"
    return "a number"


def _escape(key):
    return str(key).replace("~", "~0").replace("/", "~1")


def _walk(doc):
    """Yield (pointer, value) for every node, depth first, without recursion (the depth can be large)."""
    stack = [("", doc)]
    while stack:
        ptr, v = stack.pop()
        yield ptr, v
        if isinstance(v, dict):
            items = list(v.items())
            for k, child in reversed(items):
                stack.append((f"{ptr}/{_escape(k)}", child))
        elif isinstance(v, list):
            for i in range(len(v) - 1, -1, -1):
                stack.append((f"{ptr}/{i}", v[i]))
        elif isinstance(v, _Bad) and v.value is not None:
            # An object with a duplicate key: report the first duplicate, unless something inside it is worse.
            stack.append((ptr, _Dup(v)))
            items = list(v.value.items())
            for k, child in reversed(items):
                stack.append((f"{ptr}/{_escape(k)}", child))


class _Dup:
    __slots__ = ("bad",)

    def __init__(self, bad):
        self.bad = bad


def _find_bad(doc):
    dup = None
    for ptr, v in _walk(doc):
        if isinstance(v, _Bad):
            if v.value is None:
                return ptr, v.reason
        elif isinstance(v, _Dup) and dup is None:
            dup = (f"{ptr}/{_escape(v.bad.key)}", v.bad.reason)
    if dup is not None:
        return dup
    return "", "invalid JSON"


# Strings with NUL or lone surrogates can only come from \u escapes, because the decoder rejects raw control
# characters and the UTF-8 decoder rejects encoded surrogates. Scan the text first: that is cheap.
_NUL_ESCAPE = "\\u0000"


def _maybe_surrogate(text):
    if "\\u" not in text:
        return False
    import re
    return re.search(r"\\u[dD][89a-fA-F]", text) is not None


def _string_problem(s):
    if "\x00" in s:
        return "contains a NUL character"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate"
    return None


def _find_bad_string(doc):
    for ptr, v in _walk(doc):
        if isinstance(v, dict):
            for k in v:
                p = _string_problem(k)
                if p is not None:
                    return f"{ptr}/{_escape(k)}", f"key {p}"
        elif isinstance(v, str):
            p = _string_problem(v)
            if p is not None:
                return ptr, f"string {p}"
    return None
