"""Tests for ociruntime.config: strict loading of config.json and process.json (security.md §3 #2-#5)."""

import json
import os
import re

import pytest

from ociruntime import config
from ociruntime.errors import ConfigError, OciError

VALID = b'{"ociVersion": "1.3.0", "root": {"path": "rootfs"}, "process": {"cwd": "/", "args": ["sh"]}}'


def write(tmp_path, data, name="config.json"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def reject(tmp_path, data, source="config.json"):
    path = write(tmp_path, data, source)
    loader = config.load if source == "config.json" else config.load_process
    with pytest.raises(ConfigError) as ei:
        loader(path)
    e = ei.value
    assert e.source == source
    assert "\n" not in str(e)
    assert str(e).startswith(f"{source}: ")
    return e


# ------------------------------------------------------------------------------------------------ accepted

def test_valid(tmp_path):
    assert config.load(write(tmp_path, VALID)) == json.loads(VALID)


def test_valid_process(tmp_path):
    p = write(tmp_path, b'{"cwd": "/", "args": ["ls"], "env": []}', "process.json")
    assert config.load_process(p) == {"cwd": "/", "args": ["ls"], "env": []}


def test_unicode_and_surrogate_pairs_are_fine(tmp_path):
    doc = config.load(write(tmp_path, '{"a": "h\u00e9llo \u20ac", "b": "\\ud83d\\ude00", "c": "\\\\u0000"}'
                                      .encode("utf-8")))
    assert doc == {"a": "h\u00e9llo \u20ac", "b": "\U0001F600", "c": "\\u0000"}


def test_numbers(tmp_path):
    doc = config.load(write(tmp_path, b'{"a": 18446744073709551615, "b": -1, "c": 1.5, "d": 1e-400, "e": 1e300}'))
    assert doc == {"a": 2**64 - 1, "b": -1, "c": 1.5, "d": 0.0, "e": 1e300}
    assert type(doc["a"]) is int


def test_whitespace_around_document(tmp_path):
    assert config.load(write(tmp_path, b"\n\t " + VALID + b"\r\n ")) == json.loads(VALID)


def test_exactly_max_size_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_SIZE", len(VALID))
    assert config.load(write(tmp_path, VALID)) == json.loads(VALID)


# ------------------------------------------------------------------------------------------------ missing / unreadable

def test_missing_config_has_runc_text(tmp_path):
    with pytest.raises(OciError) as ei:
        config.load(str(tmp_path / "config.json"))
    assert type(ei.value) is OciError
    assert str(ei.value) == "JSON specification file config.json not found"


def test_missing_process_file(tmp_path):
    with pytest.raises(ConfigError) as ei:
        config.load_process(str(tmp_path / "nope.json"))
    assert ei.value.source == "process.json"
    assert "nope.json" in str(ei.value)


def test_directory_is_rejected(tmp_path):
    d = tmp_path / "config.json"
    d.mkdir()
    with pytest.raises(ConfigError) as ei:
        config.load(str(d))
    assert "not a regular file" in ei.value.reason


def test_fifo_is_rejected_without_blocking(tmp_path):
    p = tmp_path / "config.json"
    os.mkfifo(p)
    with pytest.raises(ConfigError) as ei:
        config.load(str(p))
    assert "not a regular file" in ei.value.reason


def test_not_a_directory_component(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError) as ei:
        config.load(str(f / "config.json"))
    assert "Not a directory" in ei.value.reason
    assert str(f / "config.json") in ei.value.reason


def test_symlink_to_config_is_followed(tmp_path):
    real = write(tmp_path, VALID, "real.json")
    os.symlink(real, tmp_path / "config.json")
    assert config.load(str(tmp_path / "config.json")) == json.loads(VALID)


# ------------------------------------------------------------------------------------------------ size

def test_oversized_file_is_rejected_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "config.json"
    with open(p, "wb") as f:
        f.truncate(config.MAX_SIZE + 1)       # sparse: costs nothing
    reads = []
    real_read = os.read
    monkeypatch.setattr(config.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(ConfigError) as ei:
        config.load(str(p))
    assert "larger than 16777216 bytes" in ei.value.reason
    assert reads == []


def test_file_that_grows_past_the_cap_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_SIZE", 64)
    real_fstat = os.fstat

    class Small:
        def __init__(self, st):
            self.st_mode, self.st_size = st.st_mode, 10

    monkeypatch.setattr(config.os, "fstat", lambda fd: Small(real_fstat(fd)))
    e = reject(tmp_path, b'{"a": "' + b"x" * 200 + b'"}')
    assert "larger than 64 bytes" in e.reason


def test_loads_size_cap(monkeypatch):
    monkeypatch.setattr(config, "MAX_SIZE", 8)
    with pytest.raises(ConfigError):
        config.loads(b'{"a": 12345}')


# ------------------------------------------------------------------------------------------------ encoding and syntax

@pytest.mark.parametrize("data,pointer,reason", [
    (b'{"a": "\xff"}', "", "invalid UTF-8 at line 1 column 8 (byte offset 7)"),
    (b'{\n  "a": "\xc3\x28"\n}', "", "invalid UTF-8 at line 2 column 9 (byte offset 10)"),
    (b'{"a": "\xed\xa0\x80"}', "", "invalid UTF-8 at line 1 column 8 (byte offset 7)"),   # encoded surrogate
    (b'\xef\xbb\xbf{}', "", "invalid JSON: a UTF-8 byte order mark (BOM) is not allowed"),
    (b'', "", "invalid JSON: Expecting value at line 1 column 1"),
    (b'   ', "", "invalid JSON: Expecting value at line 1 column 4"),
    (b'{"a": 1,\n "b": }', "", "invalid JSON: Expecting value at line 2 column 7"),
    (b'{"a": 1', "", "invalid JSON: Expecting ',' delimiter at line 1 column 8"),
    (b"{'a': 1}", "", "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    (b'{"a": "x\ny"}', "", "invalid JSON: Invalid control character at line 1 column 9"),
    (b'{"a": "\\x"}', "", "invalid JSON: Invalid \\escape at line 1 column 8"),
    (b'{"a": 1} {"b": 2}', "", "invalid JSON: Extra data at line 1 column 10"),
    (b'{"a": 1}\n]', "", "invalid JSON: Extra data at line 2 column 1"),
    (b'{"a": 1}\x00', "", "invalid JSON: Extra data at line 1 column 9"),
    (b'{"a": 01}', "", "invalid JSON: Expecting ',' delimiter at line 1 column 8"),
    (b'{"a": 1' + b"0" * 5000 + b"}", "", "invalid JSON: an integer has too many digits"),
])
def test_syntax_and_encoding_errors(tmp_path, data, pointer, reason):
    e = reject(tmp_path, data)
    assert (e.pointer, e.reason) == (pointer, reason)
    assert str(e) == f"config.json: /: {reason}"


def test_trailing_comma(tmp_path):
    # The decoder's wording differs between Python versions; the position is always given.
    e = reject(tmp_path, b'{"a": 1,}')
    assert re.fullmatch(r"invalid JSON: .+ at line 1 column [89]", e.reason), e.reason


@pytest.mark.parametrize("data,what", [
    (b"[]", "an array"), (b'"x"', "a string"), (b"1", "a number"), (b"1.5", "a number"),
    (b"null", "null"), (b"true", "a boolean"),
])
def test_top_level_must_be_object(tmp_path, data, what):
    e = reject(tmp_path, data)
    assert e.reason == f"the top-level value must be a JSON object, not {what}"


# ------------------------------------------------------------------------------------------------ values Python accepts

@pytest.mark.parametrize("data,pointer,reason", [
    (b'{"a": 1, "a": 2}', "/a", "duplicate key 'a'"),
    (b'{"ociVersion": "1.0.0", "process": {"cwd": "/", "cwd": "/x"}}', "/process/cwd", "duplicate key 'cwd'"),
    (b'{"m": [{"x": 1}, {"y": 1, "y": 1}]}', "/m/1/y", "duplicate key 'y'"),
    (b'{"a/b": {"~k": 1, "~k": 1}}', "/a~1b/~0k", "duplicate key '~k'"),
    (b'{"a": NaN}', "/a", "NaN is not a valid JSON number"),
    (b'{"a": [1, Infinity]}', "/a/1", "Infinity is not a valid JSON number"),
    (b'{"a": {"b": -Infinity}}', "/a/b", "-Infinity is not a valid JSON number"),
    (b'{"a": 1e400}', "/a", "number 1e400 is out of range"),
    (b'{"a": -1E400}', "/a", "number -1E400 is out of range"),
    (b'{"a": 1' + b"0" * 400 + b'.0}', "/a", "number 1" + "0" * 36 + "... is out of range"),
    # an object with a duplicate key that also holds a NaN: the NaN is reported (it is the worse problem)
    (b'{"a": {"b": 1, "b": NaN}}', "/a/b", "NaN is not a valid JSON number"),
    (b'{"a": {"b": NaN, "b": 1}}', "/a/b", "duplicate key 'b'"),
])
def test_values_python_would_accept(tmp_path, data, pointer, reason):
    e = reject(tmp_path, data)
    assert (e.pointer, e.reason) == (pointer, reason)


@pytest.mark.parametrize("data,pointer,reason", [
    (b'{"a": "x\\u0000y"}', "/a", "string contains a NUL character"),
    (b'{"a": ["ok", "\\u0000"]}', "/a/1", "string contains a NUL character"),
    (b'{"k\\u0000": 1}', "/k\x00", "key contains a NUL character"),
    (b'{"a": "\\ud800"}', "/a", "string contains a lone UTF-16 surrogate"),
    (b'{"a": "\\uDC00x"}', "/a", "string contains a lone UTF-16 surrogate"),
    (b'{"a": {"b": "\\ude00\\ud83d"}}', "/a/b", "string contains a lone UTF-16 surrogate"),
])
def test_strings_that_cannot_reach_c(tmp_path, data, pointer, reason):
    e = reject(tmp_path, data)
    assert (e.pointer, e.reason) == (pointer, reason)


# ------------------------------------------------------------------------------------------------ depth

@pytest.mark.parametrize("data", [
    b"[" * 100000 + b"]" * 100000,
    b'{"a": ' * 50000 + b"1" + b"}" * 50000,
    b'{"a": ' + b"[" * 200000,
])
def test_deep_nesting(tmp_path, data):
    e = reject(tmp_path, data)
    assert e.reason.startswith("invalid JSON: ")
    assert e.reason == "invalid JSON: nesting is too deep" or "line" in e.reason


def test_moderate_nesting_is_fine_and_walks_do_not_recurse(tmp_path):
    # 500 levels parse fine; a NUL at the bottom is still found (the walk is iterative).
    data = b'{"a": ' + b"[" * 500 + b'"\\u0000"' + b"]" * 500 + b"}"
    e = reject(tmp_path, data)
    assert e.pointer == "/a" + "/0" * 500
    assert e.reason == "string contains a NUL character"


# ------------------------------------------------------------------------------------------------ process.json

@pytest.mark.parametrize("data,reason", [
    (b'{"cwd": "/", "cwd": "/"}', "duplicate key 'cwd'"),
    (b'{"cwd": NaN}', "NaN is not a valid JSON number"),
    (b"[]", "the top-level value must be a JSON object, not an array"),
    (b'{"cwd": "/"} x', "invalid JSON: Extra data at line 1 column 14"),
])
def test_process_file_is_as_strict(tmp_path, data, reason):
    e = reject(tmp_path, data, source="process.json")
    assert e.reason == reason


def test_loads_with_source():
    with pytest.raises(ConfigError) as ei:
        config.loads(b'{"a": NaN}', source="process.json")
    assert str(ei.value) == "process.json: /a: NaN is not a valid JSON number"


def test_loads_rejects_non_utf8():
    with pytest.raises(ConfigError):
        config.loads(b'{"a": "\x80"}')
