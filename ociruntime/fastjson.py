"""JSON without `import json`: the stdlib json package pulls in re, enum and functools (≈10 ms of
start-up under -IS), while its C accelerator `_json` alone is a built-in. Used on every command's hot
path (state.json, state output); `json` itself is still used where error positions matter."""
import _json

_encode_str = _json.encode_basestring_ascii


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    memo = None

    def __init__(self, pairs_hook=None, parse_constant=None, parse_float=float):
        self.object_pairs_hook = pairs_hook
        self.parse_float = parse_float
        self.parse_int = int
        self.parse_constant = parse_constant or {"NaN": float("nan"), "Infinity": float("inf"),
                                                 "-Infinity": float("-inf")}.__getitem__
        self.memo = {}


_scanner = _json.make_scanner(_Ctx())
_WS = " \t\n\r"


def loads(s):
    """Decode a complete JSON document; ValueError on anything else."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    return _decode(_scanner, s)


def loads_with(s, pairs_hook, parse_constant, parse_float):
    """loads() with the hooks json.JSONDecoder takes (duplicate keys, NaN, overflowing floats)."""
    return _decode(_json.make_scanner(_Ctx(pairs_hook, parse_constant, parse_float)), s)


def _decode(scanner, s):
    i, n = 0, len(s)
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = scanner(s, i)
    except (StopIteration, SystemError):
        # SystemError: CPython 3.11's _json reports errors through json.decoder, which we do not import
        raise ValueError(f"invalid JSON at offset {i}") from None
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"extra data at offset {end}")
    return obj


_GO_ESC = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
           '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def go_string(s):
    """A string as Go's encoding/json writes it: UTF-8 kept, <>& and U+2028/9 escaped (what runc prints)."""
    out = []
    for ch in s:
        e = _GO_ESC.get(ch)
        if e is not None:
            out.append(e)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dumps(obj, indent=None, _level=0, _str=None):
    """Encode dict/list/str/int/float/bool/None like json.dumps (ensure_ascii, separators compact
    without indent, ', '/': ' style of Go's MarshalIndent with an indent)."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return (_str or _encode_str)(obj)
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError("out of range float values are not JSON compliant")
        return float.__repr__(obj)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        enc = _str or _encode_str
        items = [f"{enc(str(k))}:{' ' if indent is not None else ''}{dumps(v, indent, _level + 1, _str)}"
                 for k, v in obj.items()]
        return _join("{", "}", items, indent, _level)
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        return _join("[", "]", [dumps(v, indent, _level + 1, _str) for v in obj], indent, _level)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def go_dumps(obj, indent=None):
    """Go's json.Marshal(Indent) output for runc-compatible command output."""
    return dumps(obj, indent, 0, go_string)


def _join(open_, close, items, indent, level):
    if indent is None:
        return open_ + ",".join(items) + close
    pad = indent if isinstance(indent, str) else " " * indent
    inner = "\n" + pad * (level + 1)
    return open_ + inner + ("," + inner).join(items) + "\n" + pad * level + close
