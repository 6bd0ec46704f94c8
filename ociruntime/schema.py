"""JSON Schema validation of config.json, process.json, state and features output.

The schemas are the project's own, in ``schemas/`` (draft-04, written from the runtime-spec v1.3 text).

Validation runs in two stages so that the success path stays cheap:

1. A small built-in validator for the draft-04 subset our schemas use. The schema is compiled once per
   process into nested closures. It never imports jsonschema.
2. Only when stage 1 finds a violation do we import jsonschema (Draft4Validator + a local ``referencing``
   registry, no network access) and use ``best_match`` to explain the error and find its JSON pointer. If
   jsonschema is not installed, or it disagrees and finds nothing, we report stage 1's own error.

Tests run both validators over a corpus of valid and mutated documents and require identical verdicts.

Supported keywords: type, enum, properties, required, additionalProperties, patternProperties, dependencies,
items (schema or list form), additionalItems, minItems, maxItems, uniqueItems, minLength, maxLength, pattern,
minimum, maximum, exclusiveMinimum, exclusiveMaximum, allOf, anyOf, oneOf, not, and $ref within the same file.
An unsupported keyword in a schema raises an error when the schema is compiled. We do not silently ignore it.
"""

import os

from ociruntime.errors import ConfigError

# An installed package carries them as ociruntime/schemas (setup.py's build_py copies schemas/ there);
# a source tree (and make build's editable install) reads the project's schemas/ itself.
_PKG = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIRS = (os.path.join(_PKG, "schemas"), os.path.join(os.path.dirname(_PKG), "schemas"))

# schema name -> file in the first of SCHEMA_DIRS that has it
SCHEMA_FILES = {"config": "config.json", "state": "state.json", "features": "features.json"}

# The URI base our files are registered under in the jsonschema registry. Nothing is ever fetched from it.
_BASE_URI = "https://ociruntime.invalid/schemas/"

_MAX_MESSAGE = 300

_docs = {}        # schema name -> parsed schema document
_compiled = {}    # (schema name, fragment) -> compiled check function
_reference = {}   # (schema name, fragment) -> jsonschema validator


# --------------------------------------------------------------------------------------------- public API

def validate_config(doc):
    """Raise ConfigError(pointer, reason) if doc is not a valid config.json."""
    _validate("config", "", doc, "config.json")


def validate_process(doc):
    """Raise ConfigError(pointer, reason, source="process.json") if doc is not a valid process object."""
    _validate("config", "/definitions/Process", doc, "process.json")


def validate_state(doc):
    """Raise ConfigError(..., source="state.json") if doc does not match the state schema."""
    _validate("state", "", doc, "state.json")


def validate_features(doc):
    """Raise ConfigError(..., source="features.json") if doc does not match the features schema."""
    _validate("features", "", doc, "features.json")


def first_error(name, doc, fragment=""):
    """The built-in validator's verdict: None if doc is valid, else (json_pointer, message).

    ``name`` is a key of SCHEMA_FILES. ``fragment`` is a JSON pointer into that schema file, such as
    "/definitions/Process".
    This never imports jsonschema.
    """
    err = _compiled_check(name, fragment)(doc)
    if err is None:
        return None
    return _pointer(reversed(err.path)), err.message


def all_errors(name, doc, fragment=""):
    """Every schema violation of doc, not only the first (the `check` command): a list of
    (json_pointer, one-line message), sorted by pointer. Uses the reference validator (jsonschema);
    without it, the built-in validator's first error."""
    if _compiled_check(name, fragment)(doc) is None:
        return []
    try:
        validator = reference_validator(name, fragment)
        from jsonschema.exceptions import best_match
    except ImportError:
        return [first_error(name, doc, fragment)]
    out = []
    for err in validator.iter_errors(doc):
        if err.context:  # anyOf/oneOf: the sub-error that explains it best
            err = best_match(err.context) or err
        if err.validator == "pattern" and err.validator_value in _PATTERN_NAMES and isinstance(err.instance, str):
            msg = f"{_short(err.instance)} is not {_PATTERN_NAMES[err.validator_value]}"
        else:
            msg = err.message
        item = (_pointer(err.absolute_path), _one_line(msg))
        if item not in out:
            out.append(item)
    return sorted(out, key=lambda item: item[0]) or [first_error(name, doc, fragment)]


def reference_validator(name, fragment=""):
    """A jsonschema Draft4Validator over our schema files, with a local registry and no network access.

    Raises ImportError if jsonschema is not installed. Tests and error explanations use it.
    """
    key = (name, fragment)
    v = _reference.get(key)
    if v is None:
        from jsonschema import Draft4Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        registry = Registry().with_resources(
            (_BASE_URI + fname, Resource(contents=_schema(n), specification=DRAFT4))
            for n, fname in SCHEMA_FILES.items())
        v = Draft4Validator({"$ref": _BASE_URI + SCHEMA_FILES[name] + "#" + fragment}, registry=registry)
        _reference[key] = v
    return v


def schema_document(name):
    """The parsed schema document for a key of SCHEMA_FILES. It is loaded once per process."""
    return _schema(name)


# --------------------------------------------------------------------------------------------- internals

def _validate(name, fragment, doc, source):
    err = _compiled_check(name, fragment)(doc)
    if err is None:
        return
    explained = _explain(name, fragment, doc)
    if explained is None:
        pointer, reason = _pointer(reversed(err.path)), err.message
    else:
        pointer, reason = explained
    raise ConfigError(pointer, _one_line(reason), source=source)


def _explain(name, fragment, doc):
    try:
        validator = reference_validator(name, fragment)
        from jsonschema.exceptions import best_match
    except ImportError:
        return None
    try:
        err = best_match(validator.iter_errors(doc))
    except Exception:   # the explanation is best effort; the built-in validator's own error still stands
        return None
    if err is None:
        return None
    if err.validator == "pattern" and err.validator_value in _PATTERN_NAMES and isinstance(err.instance, str):
        return _pointer(err.absolute_path), f"{_short(err.instance)} is not {_PATTERN_NAMES[err.validator_value]}"
    return _pointer(err.absolute_path), err.message


def _schema(name):
    doc = _docs.get(name)
    if doc is None:
        from ociruntime import fastjson as json
        fname = SCHEMA_FILES[name]
        for d in SCHEMA_DIRS:
            try:
                with open(os.path.join(d, fname), "rb") as f:
                    doc = json.loads(f.read())
                break
            except FileNotFoundError:
                continue
        else:
            raise FileNotFoundError(f"schema {fname} not found in {' or '.join(SCHEMA_DIRS)}")
        _docs[name] = doc
    return doc


def _compiled_check(name, fragment):
    key = (name, fragment)
    fn = _compiled.get(key)
    if fn is None:
        fn = _Compiler(_schema(name)).ref("#" + fragment)
        _compiled[key] = fn
    return fn


def _pointer(parts):
    out = []
    for p in parts:
        out.append("/" + str(p).replace("~", "~0").replace("/", "~1"))
    return "".join(out)


def _one_line(msg):
    msg = " ".join(str(msg).splitlines())
    if len(msg) > _MAX_MESSAGE:
        msg = msg[:_MAX_MESSAGE - 3] + "..."
    return msg


def _short(x):
    r = repr(x)
    if len(r) > 80:
        r = r[:77] + "..."
    return r


class _Err:
    """A violation found by the built-in validator. The path is collected in reverse while unwinding."""
    __slots__ = ("path", "message")

    def __init__(self, message):
        self.path = []
        self.message = message


def _ok(_x):
    return None


def _is_integer(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


def _unbool(x, _t=object(), _f=object()):
    if x is True:
        return _t
    if x is False:
        return _f
    return x


def _equal(a, b):
    """JSON equality as jsonschema defines it: true and 1 differ, 1 and 1.0 are equal."""
    if a is b:
        return True
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return _unbool(a) == _unbool(b)


_ANNOTATIONS = frozenset(("$schema", "title", "description", "definitions", "default", "id"))


class _Compiler:
    def __init__(self, root):
        self.root = root
        self.refs = {}

    # $ref within the same document ("#/definitions/X"). A referenced schema is compiled the first time a document
    # reaches it, so the parts of a schema a config does not use cost nothing. This also makes recursion safe.
    def ref(self, ref):
        fn = self.refs.get(ref)
        if fn is not None:
            return fn
        if not ref.startswith("#"):
            raise ValueError(f"schema $ref {ref!r}: only references within the same file are supported")
        target = self.root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target[part]
        cell = []

        def lazy(x):
            if not cell:
                cell.append(self.compile(target))
            return cell[0](x)
        self.refs[ref] = lazy
        return lazy

    def compile(self, s):
        if not isinstance(s, dict):
            raise ValueError(f"schema must be an object, got {s!r}")
        if "$ref" in s:
            # draft-04: keywords next to $ref are ignored.
            return self.ref(s["$ref"])
        checks = []
        for kw in s:
            if kw in _ANNOTATIONS or kw in _HANDLED_ELSEWHERE:
                continue
            handler = _KEYWORDS.get(kw)
            if handler is None:
                raise ValueError(f"schema keyword {kw!r} is not supported by the built-in validator")
            fn = handler(self, s[kw], s)
            if fn is not None:
                checks.append((_ORDER.get(kw, 50), fn))
        checks.sort(key=lambda c: c[0])
        fns = tuple(c[1] for c in checks)
        if not fns:
            return _ok
        if len(fns) == 1:
            return fns[0]

        def all_checks(x):
            for f in fns:
                e = f(x)
                if e is not None:
                    return e
            return None
        return all_checks


# ---- keyword handlers: (compiler, value, whole schema) -> check function or None

def _kw_type(c, types, s):
    if isinstance(types, str):
        types = [types]
    preds = tuple(_TYPES[t] for t in types)
    names = ", ".join(repr(t) for t in types)

    if len(preds) == 1:
        pred = preds[0]

        def check(x):
            if not pred(x):
                return _Err(f"{_short(x)} is not of type {names}")
            return None
    else:
        def check(x):
            for p in preds:
                if p(x):
                    return None
            return _Err(f"{_short(x)} is not of type {names}")
    return check


def _kw_enum(c, values, s):
    if all(isinstance(v, str) for v in values):
        allowed = frozenset(values)

        def check(x):
            if isinstance(x, str) and x in allowed:
                return None
            return _Err(f"{_short(x)} is not one of {values!r}")
        return check

    def check_any(x):
        for v in values:
            if _equal(x, v):
                return None
        return _Err(f"{_short(x)} is not one of {values!r}")
    return check_any


def _kw_properties(c, props, s):
    # each property's schema is compiled the first time a document has that property: a config
    # reaches a fraction of the schema, and compiling all of it cost more than checking (≈0.5 ms of
    # every create). tests/unit/test_schema.py compiles every subschema to refuse unknown keywords.
    keys = tuple(props)
    compiled = {}

    def check(x):
        if not isinstance(x, dict):
            return None
        for k in keys:
            if k in x:
                fn = compiled.get(k)
                if fn is None:
                    fn = compiled[k] = c.compile(props[k])
                e = fn(x[k])
                if e is not None:
                    e.path.append(k)
                    return e
        return None
    return check


def _searcher(pattern):
    fn = NATIVE_PATTERNS.get(pattern)
    if fn is None:
        import re
        fn = re.compile(pattern).search
    return fn


def _kw_pattern_properties(c, pats, s):
    compiled = tuple((_searcher(p), c.compile(sub)) for p, sub in pats.items())

    def check(x):
        if not isinstance(x, dict):
            return None
        for search, fn in compiled:
            for k, v in x.items():
                if search(k):
                    e = fn(v)
                    if e is not None:
                        e.path.append(k)
                        return e
        return None
    return check


def _kw_additional_properties(c, extra, s):
    known = frozenset(s.get("properties", ()))
    pats = tuple(_searcher(p) for p in s.get("patternProperties", ()))

    def extras(x):
        return [k for k in x if k not in known and not any(search(k) for search in pats)]

    if extra is True or extra == {}:
        return None
    if extra is False:
        def check(x):
            if not isinstance(x, dict):
                return None
            bad = extras(x)
            if bad:
                listed = ", ".join(repr(k) for k in sorted(bad))
                verb = "was" if len(bad) == 1 else "were"
                return _Err(f"Additional properties are not allowed ({listed} {verb} unexpected)")
            return None
        return check
    fn = c.compile(extra)

    def check_schema(x):
        if not isinstance(x, dict):
            return None
        for k in (extras(x) if (known or pats) else x):
            e = fn(x[k])
            if e is not None:
                e.path.append(k)
                return e
        return None
    return check_schema


def _kw_required(c, names, s):
    names = tuple(names)

    def check(x):
        if not isinstance(x, dict):
            return None
        for n in names:
            if n not in x:
                return _Err(f"{n!r} is a required property")
        return None
    return check


def _kw_dependencies(c, deps, s):
    compiled = []
    for prop, dep in deps.items():
        if isinstance(dep, list):
            compiled.append((prop, tuple(dep), None))
        else:
            compiled.append((prop, None, c.compile(dep)))

    def check(x):
        if not isinstance(x, dict):
            return None
        for prop, names, fn in compiled:
            if prop not in x:
                continue
            if fn is not None:
                e = fn(x)
                if e is not None:
                    return e
            else:
                for n in names:
                    if n not in x:
                        return _Err(f"{n!r} is a dependency of {prop!r}")
        return None
    return check


def _kw_items(c, items, s):
    if isinstance(items, list):
        fns = tuple(c.compile(i) for i in items)
        add = s.get("additionalItems", True)
        add_fn = None if add is True or add is False else c.compile(add)

        def check_tuple(x):
            if not isinstance(x, list):
                return None
            for i, (fn, v) in enumerate(zip(fns, x)):
                e = fn(v)
                if e is not None:
                    e.path.append(i)
                    return e
            if len(x) > len(fns):
                if add is False:
                    return _Err(f"Additional items are not allowed ({_short(x[len(fns):])} were unexpected)")
                if add_fn is not None:
                    for i in range(len(fns), len(x)):
                        e = add_fn(x[i])
                        if e is not None:
                            e.path.append(i)
                            return e
            return None
        return check_tuple
    fn = c.compile(items)

    def check(x):
        if not isinstance(x, list):
            return None
        for i, v in enumerate(x):
            e = fn(v)
            if e is not None:
                e.path.append(i)
                return e
        return None
    return check


def _kw_min_items(c, n, s):
    def check(x):
        if isinstance(x, list) and len(x) < n:
            return _Err(f"{_short(x)} should be non-empty" if n == 1 else f"{_short(x)} is too short")
        return None
    return check


def _kw_max_items(c, n, s):
    def check(x):
        if isinstance(x, list) and len(x) > n:
            return _Err(f"{_short(x)} is too long")
        return None
    return check


def _kw_unique_items(c, flag, s):
    if not flag:
        return None

    def check(x):
        if not isinstance(x, list):
            return None
        for i in range(len(x)):
            for j in range(i + 1, len(x)):
                if _equal(x[i], x[j]):
                    return _Err(f"{_short(x)} has non-unique elements")
        return None
    return check


def _kw_min_length(c, n, s):
    def check(x):
        if isinstance(x, str) and len(x) < n:
            return _Err(f"{_short(x)} should be non-empty" if n == 1 else f"{_short(x)} is too short")
        return None
    return check


def _kw_max_length(c, n, s):
    def check(x):
        if isinstance(x, str) and len(x) > n:
            return _Err(f"{_short(x)} is too long")
        return None
    return check


def _digits(x, i):
    j = i
    while j < len(x) and "0" <= x[j] <= "9":
        j += 1
    return j


def _semver(x):
    """^MAJOR.MINOR.PATCH(-pre)?(+build)?$ with SemVer 2.0's rules (no leading zeros in numbers)."""
    i = 0
    for k in range(3):
        j = _digits(x, i)
        if j == i or (x[i] == "0" and j - i > 1):
            return False
        i = j
        if k < 2:
            if i >= len(x) or x[i] != ".":
                return False
            i += 1
    rest, build = x[i:], None
    if "+" in rest:
        rest, build = rest.split("+", 1)
        if not build or not all(p and _ALNUM_DASH.issuperset(p) for p in build.split(".")):
            return False
    if rest:
        if rest[0] != "-" or len(rest) == 1:
            return False
        for p in rest[1:].split("."):
            if not p or not _ALNUM_DASH.issuperset(p):
                return False
            if p.isdigit() and p[0] == "0" and len(p) > 1:
                return False
    return True


def _cpuset(x):
    if not x:
        return True
    for part in x.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or not lo.isascii() or ("-" in part and not (hi.isdigit() and hi.isascii())):
            return False
    return True


_ALNUM_DASH = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SEMVER = ("^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
           "(\\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(?![\\s\\S])")
# The patterns of our own schemas, matched without `re` (≈5-10 ms of import on every create).
# tests/unit/test_schema.py checks each against re on a corpus, so they cannot drift.
NATIVE_PATTERNS = {
    "[\\n\\r]": lambda x: "\n" in x or "\r" in x,
    _SEMVER: _semver,
    "^([0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)?(?![\\s\\S])": _cpuset,
    "^MB:": lambda x: x.startswith("MB:"),
    "^RLIMIT_[A-Z]+(?![\\s\\S])": lambda x: x.startswith("RLIMIT_") and len(x) > 7 and _UPPER.issuperset(x[7:]),
    "^[1-9][0-9]*[KMGTPE]B(?![\\s\\S])": lambda x: (len(x) >= 3 and x[-1] == "B" and x[-2] in "KMGTPE" and
                                               "1" <= x[0] <= "9" and x[1:-2].isdigit() or
                                               (len(x) == 3 and x[-1] == "B" and x[-2] in "KMGTPE" and
                                                "1" <= x[0] <= "9")) and x.isascii(),
    "^[rwm]*(?![\\s\\S])": lambda x: set(x) <= {"r", "w", "m"},
    "^/": lambda x: x.startswith("/"),
    "^[\\s\\S]": lambda x: len(x) > 0,
    "^CAP_[A-Z_]+(?![\\s\\S])": lambda x: x.startswith("CAP_") and len(x) > 4 and (_UPPER | {"_"}).issuperset(x[4:]),
}


# patterns whose regex says less than a few words: the error names what was expected
_PATTERN_NAMES = {
    "^([0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)?(?![\\s\\S])":
        "a list of numbers and ranges such as \"0-3,7\" (no spaces or empty elements)",
}


def _kw_pattern(c, pattern, s):
    search = _searcher(pattern)
    name = _PATTERN_NAMES.get(pattern)

    def check(x):
        if isinstance(x, str) and not search(x):
            if name:
                return _Err(f"{_short(x)} is not {name}")
            return _Err(f"{_short(x)} does not match {pattern!r}")
        return None
    return check


def _kw_minimum(c, m, s):
    if s.get("exclusiveMinimum"):
        def check_excl(x):
            if _is_number(x) and x <= m:
                return _Err(f"{_short(x)} is less than or equal to the minimum of {m}")
            return None
        return check_excl

    def check(x):
        if _is_number(x) and x < m:
            return _Err(f"{_short(x)} is less than the minimum of {m}")
        return None
    return check


def _kw_maximum(c, m, s):
    if s.get("exclusiveMaximum"):
        def check_excl(x):
            if _is_number(x) and x >= m:
                return _Err(f"{_short(x)} is greater than or equal to the maximum of {m}")
            return None
        return check_excl

    def check(x):
        if _is_number(x) and x > m:
            return _Err(f"{_short(x)} is greater than the maximum of {m}")
        return None
    return check


def _kw_all_of(c, subs, s):
    fns = tuple(c.compile(sub) for sub in subs)

    def check(x):
        for fn in fns:
            e = fn(x)
            if e is not None:
                return e
        return None
    return check


def _kw_any_of(c, subs, s):
    fns = tuple(c.compile(sub) for sub in subs)

    def check(x):
        first = None
        for fn in fns:
            e = fn(x)
            if e is None:
                return None
            if first is None:
                first = e
        return _Err(f"{_short(x)} is not valid under any of the given schemas")
    return check


def _kw_one_of(c, subs, s):
    fns = tuple(c.compile(sub) for sub in subs)

    def check(x):
        n = 0
        for fn in fns:
            if fn(x) is None:
                n += 1
        if n == 1:
            return None
        if n == 0:
            return _Err(f"{_short(x)} is not valid under any of the given schemas")
        return _Err(f"{_short(x)} is valid under each of more than one of the given schemas")
    return check


def _kw_not(c, sub, s):
    fn = c.compile(sub)

    def check(x):
        if fn(x) is None:
            return _Err(f"{_short(x)} should not be valid under {sub!r}")
        return None
    return check


_KEYWORDS = {
    "type": _kw_type,
    "enum": _kw_enum,
    "properties": _kw_properties,
    "patternProperties": _kw_pattern_properties,
    "additionalProperties": _kw_additional_properties,
    "required": _kw_required,
    "dependencies": _kw_dependencies,
    "items": _kw_items,
    "minItems": _kw_min_items,
    "maxItems": _kw_max_items,
    "uniqueItems": _kw_unique_items,
    "minLength": _kw_min_length,
    "maxLength": _kw_max_length,
    "pattern": _kw_pattern,
    "minimum": _kw_minimum,
    "maximum": _kw_maximum,
    "allOf": _kw_all_of,
    "anyOf": _kw_any_of,
    "oneOf": _kw_one_of,
    "not": _kw_not,
}

# Keywords read by another keyword's handler.
_HANDLED_ELSEWHERE = frozenset(("additionalItems", "exclusiveMinimum", "exclusiveMaximum"))

# Check order, so that the first violation reported is the most basic one (wrong type before a missing member).
_ORDER = {"type": 0, "enum": 1, "required": 2, "dependencies": 3, "properties": 10}
