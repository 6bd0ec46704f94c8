"""cli.py: Go `flag` + urfave/cli v1 syntax, usage errors, help/version, exit codes (cli-contract §1, §2).

Everything here runs in-process through cli.parse_flags / cli.main and needs neither root nor a
container.
"""

import json
import os
import re

import pytest

from ociruntime import cli
from ociruntime.cli import (ALIASES, COMMANDS, GLOBAL_FLAGS, LIST_ALIASES, FlagError, main,
                            parse_flags)
from ociruntime.log import log

CREATE = COMMANDS["create"][2]
RUN = COMMANDS["run"][2]
KILL = COMMANDS["kill"][2]
DELETE = COMMANDS["delete"][2]
LIST = COMMANDS["list"][2]
TEXT_ERR = re.compile(r'^time="[^"]+" level=error msg="(.*)"$')


@pytest.fixture(autouse=True)
def reset_logger():
    """main() configures the process-wide logger; put it back after every test."""
    saved = dict(log.__dict__)
    yield
    if log.fd != saved["fd"]:
        try:
            os.close(log.fd)
        except OSError:
            pass
    log.__dict__.clear()
    log.__dict__.update(saved)


@pytest.fixture
def run(capfd):
    """run("state", "x") -> (rc, stdout, stderr) of cli.main(["ociruntime", ...])."""
    def _run(*args, argv0="ociruntime"):
        capfd.readouterr()
        rc = main([argv0, *args])
        out, err = capfd.readouterr()
        return rc, out, err
    return _run


def logged_errors(err):
    """The msg of every text-format error line on stderr."""
    out = []
    for line in err.splitlines():
        m = TEXT_ERR.match(line)
        assert m, f"not a log line: {line!r}"
        out.append(m.group(1).replace('\\"', '"'))
    return out


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir(mode=0o700)
    return str(r)


# --- parse_flags: Go flag syntax -------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["-bundle", "/b", "id"], ["--bundle", "/b", "id"], ["--bundle=/b", "id"], ["-bundle=/b", "id"],
    ["-b", "/b", "id"], ["--b", "/b", "id"], ["-b=/b", "id"], ["--b=/b", "id"],
    ["id", "--bundle", "/b"], ["id", "-b=/b"],
])
def test_string_flag_spellings(args):
    vals, pos = parse_flags(args, CREATE, True)
    assert vals == {"bundle": "/b"}
    assert pos == ["id"]


def test_value_may_contain_equals_and_start_with_dash():
    vals, _ = parse_flags(["--pid-file=/a=b", "id"], CREATE, True)
    assert vals["pid-file"] == "/a=b"
    vals, _ = parse_flags(["--bundle", "-weird", "id"], CREATE, True)
    assert vals["bundle"] == "-weird"
    vals, _ = parse_flags(["--bundle=", "id"], CREATE, True)
    assert vals["bundle"] == ""


@pytest.mark.parametrize("arg, want", [
    ("--detach", True), ("-detach", True), ("-d", True), ("--d", True),
    ("--detach=true", True), ("--detach=false", False), ("-d=false", False), ("--detach=1", True),
    ("--detach=0", False), ("--detach=t", True), ("--detach=F", False), ("--detach=TRUE", True),
    ("--detach=False", False),
])
def test_bool_forms(arg, want):
    vals, pos = parse_flags([arg, "id"], RUN, True)
    assert vals == {"detach": want}
    assert pos == ["id"]


def test_bool_never_takes_a_separate_value():
    vals, pos = parse_flags(["--detach", "true", "id"], RUN, True)
    assert vals == {"detach": True}
    assert pos == ["true", "id"]     # `true` is a positional: then "requires exactly 1 argument(s)"


def test_bad_bool_value():
    with pytest.raises(FlagError) as ei:
        parse_flags(["--detach=maybe", "id"], RUN, True)
    assert 'invalid boolean value "maybe" for -detach' in str(ei.value)


def test_last_occurrence_wins():
    vals, _ = parse_flags(["-b", "/x", "--bundle=/y", "id"], CREATE, True)
    assert vals["bundle"] == "/y"
    vals, _ = parse_flags(["-d", "--detach=false", "id"], RUN, True)
    assert vals["detach"] is False


def test_flags_after_positionals_are_reordered():
    vals, pos = parse_flags(["myid", "--bundle", "/b", "--pid-file=/p", "--no-pivot"], CREATE, True)
    assert vals == {"bundle": "/b", "pid-file": "/p", "no-pivot": True}
    assert pos == ["myid"]
    vals, pos = parse_flags(["myid", "--force"], DELETE, True)
    assert vals == {"force": True} and pos == ["myid"]
    vals, pos = parse_flags(["myid", "KILL", "--all"], KILL, True)
    assert vals == {"all": True} and pos == ["myid", "KILL"]


def test_no_reordering_for_exec_style_commands():
    vals, pos = parse_flags(["--detach", "myid", "ls", "-l", "--detach"], RUN, False)
    assert vals == {"detach": True}
    assert pos == ["myid", "ls", "-l", "--detach"]


def test_double_dash_ends_options():
    vals, pos = parse_flags(["--force", "--", "-f", "--force"], DELETE, True)
    assert vals == {"force": True}
    assert pos == ["-f", "--force"]
    vals, pos = parse_flags(["--", "id"], DELETE, True)
    assert vals == {} and pos == ["id"]


def test_single_dash_is_a_positional():
    vals, pos = parse_flags(["-", "id"], DELETE, True)
    assert pos == ["-", "id"]


@pytest.mark.parametrize("args, name", [
    (["--foo", "id"], "foo"), (["-foo", "id"], "foo"), (["--foo=bar", "id"], "foo"),
    (["id", "--foo"], "foo"), (["-dt", "id"], "dt"),          # no bundling of short flags
    (["--root", "/x", "id"], "root"),                         # global flags only before the command
    (["--Bundle", "/x", "id"], "Bundle"),                     # case-sensitive
])
def test_unknown_flag(args, name):
    spec = RUN if "-dt" in args else CREATE
    with pytest.raises(FlagError) as ei:
        parse_flags(args, spec, True)
    assert str(ei.value) == f"flag provided but not defined: -{name}"


@pytest.mark.parametrize("args, name", [
    (["id", "--bundle"], "bundle"), (["id", "-b"], "b"), (["--pid-file"], "pid-file"),
    (["id", "--console-socket"], "console-socket"),
])
def test_flag_needs_an_argument(args, name):
    with pytest.raises(FlagError) as ei:
        parse_flags(args, CREATE, True)
    assert str(ei.value) == f"flag needs an argument: -{name}"


@pytest.mark.parametrize("s, want", [
    ("0", 0), ("3", 3), ("0x10", 16), ("0X10", 16), ("0o10", 8), ("0b101", 5), ("+7", 7), ("-1", -1),
    ("1_000", 1000),
])
def test_int_flag_go_parseint_forms(s, want):
    vals, _ = parse_flags(["--preserve-fds", s, "id"], CREATE, True)
    assert vals["preserve-fds"] == want
    vals, _ = parse_flags([f"--preserve-fds={s}", "id"], CREATE, True)
    assert vals["preserve-fds"] == want


@pytest.mark.parametrize("s, want", [("010", 8), ("0755", 493), ("-010", -8)])
def test_int_flag_go_octal(s, want):
    vals, _ = parse_flags(["--preserve-fds", s, "id"], CREATE, True)
    assert vals["preserve-fds"] == want


@pytest.mark.parametrize("s", ["abc", "", "1.5", "0x", "5s", "08", "1__0"])
def test_bad_int_value(s):
    with pytest.raises(FlagError) as ei:
        parse_flags([f"--preserve-fds={s}", "id"], CREATE, True)
    assert f'invalid value "{s}" for flag' in str(ei.value)


def test_bad_int_value_message_names_the_flag():
    with pytest.raises(FlagError) as ei:
        parse_flags(["--preserve-fds", "abc", "id"], CREATE, True)
    assert str(ei.value) == 'invalid value "abc" for flag -preserve-fds: parse error'


def test_list_f_is_format_but_delete_f_is_force():
    vals, _ = parse_flags(["-f", "json"], LIST, True, aliases={**ALIASES, **LIST_ALIASES})
    assert vals == {"format": "json"}
    vals, _ = parse_flags(["--f=json", "-q"], LIST, True, aliases={**ALIASES, **LIST_ALIASES})
    assert vals == {"format": "json", "quiet": True}
    vals, pos = parse_flags(["-f", "json"], DELETE, True)
    assert vals == {"force": True} and pos == ["json"]


@pytest.mark.parametrize("short, long, spec", [
    ("b", "bundle", CREATE), ("d", "detach", RUN), ("f", "force", DELETE), ("a", "all", KILL),
    ("q", "quiet", LIST),
])
def test_short_aliases_map_to_the_long_name(short, long, spec):
    kind = spec[short][0]
    arg = [f"-{short}"] + (["v"] if kind != cli.B else [])
    aliases = {**ALIASES, **LIST_ALIASES} if spec is LIST else ALIASES
    vals, _ = parse_flags(arg, spec, True, aliases=aliases)
    assert list(vals) == [long]


def test_go_runc_spellings():
    """What go-runc literally sends (cli-contract §0.5)."""
    g, rest = parse_flags(["--root", "/r", "--log", "/l", "--log-format", "json", "--rootless=true",
                           "--systemd-cgroup", "create", "--bundle", "/b", "id"], GLOBAL_FLAGS, False)
    assert g == {"root": "/r", "log": "/l", "log-format": "json", "rootless": "true", "systemd-cgroup": True}
    assert rest == ["create", "--bundle", "/b", "id"]
    vals, pos = parse_flags(["--format=json"], LIST, True, aliases={**ALIASES, **LIST_ALIASES})
    assert vals == {"format": "json"}
    vals, pos = parse_flags(["-no-subreaper", "--detach", "id"], RUN, True)
    assert vals == {"no-subreaper": True, "detach": True}
    g, rest = parse_flags(["--root=/run/runc", "--criu", "/usr/sbin/criu", "state", "x"], GLOBAL_FLAGS, False)
    assert g == {"root": "/run/runc", "criu": "/usr/sbin/criu"} and rest == ["state", "x"]


# --- main(): usage errors, help, version -----------------------------------------------------

@pytest.mark.parametrize("args, cmd, what", [
    (["state"], "state", "exactly 1"),
    (["state", "a", "b"], "state", "exactly 1"),
    (["start"], "start", "exactly 1"),
    (["delete"], "delete", "exactly 1"),
    (["delete", "--force"], "delete", "exactly 1"),
    (["create", "--bundle", "/b"], "create", "exactly 1"),
    (["run", "a", "b"], "run", "exactly 1"),
    (["kill"], "kill", "a minimum of 1"),
    (["kill", "a", "9", "x"], "kill", "a maximum of 2"),
    (["list", "x"], "list", "exactly 0"),
    (["spec", "x"], "spec", "exactly 0"),
    (["features", "x"], "features", "exactly 0"),
    (["run", "--detach", "true", "id"], "run", "exactly 1"),
])
def test_arity_errors(run, args, cmd, what):
    rc, out, err = run(*args)
    assert rc == 1
    assert out.startswith("Incorrect Usage.\n\n")
    assert f"ociruntime {cmd}" in out          # followed by the command's help
    assert logged_errors(err) == [f'ociruntime: "{cmd}" requires {what} argument(s)']


def test_unknown_command_exit_3(run):
    rc, out, err = run("foo")
    assert rc == 3
    assert out == ""
    assert logged_errors(err) == ["No help topic for 'foo'"]
    rc, out, err = run("help", "foo")
    assert rc == 3
    assert logged_errors(err) == ["No help topic for 'foo'"]


def test_unknown_command_with_log_file(run, tmp_path):
    path = tmp_path / "log.json"
    rc, out, err = run("--log", str(path), "--log-format", "json", "foo")
    assert rc == 3
    assert err == "No help topic for 'foo'\n"
    (line,) = path.read_text().splitlines()
    obj = json.loads(line)
    assert obj["level"] == "error" and obj["msg"] == "No help topic for 'foo'"


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"], [], ["--h"], ["-help"]])
def test_global_help(run, args):
    rc, out, err = run(*args)
    assert rc == 0
    assert err == ""
    assert "USAGE:" in out and "COMMANDS:" in out
    for name in COMMANDS:
        assert re.search(rf"^   {re.escape(name)}\s", out, re.M), name


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
@pytest.mark.parametrize("how", ["--help", "-h", "help"])
def test_command_help(run, cmd, how):
    args = ["help", cmd] if how == "help" else [cmd, how]
    rc, out, err = run(*args)
    assert rc == 0, err
    assert err == ""
    assert out.startswith("NAME:\n") and f"ociruntime {cmd} - " in out


def test_help_wins_over_missing_arguments(run):
    rc, out, err = run("state", "--help")
    assert rc == 0 and err == ""
    rc, out, err = run("create", "-h", "--bundle", "/nonexistent")
    assert rc == 0 and err == ""


@pytest.mark.parametrize("flag", ["--version", "-v", "-version", "--v"])
def test_version(run, flag):
    rc, out, err = run(flag)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert out.endswith("\n")
    assert re.match(r"^ociruntime version \S+$", lines[0]), lines[0]
    assert "spec: 1.3.0" in lines


def test_unknown_global_flag(run):
    rc, out, err = run("--foo", "state", "x")
    assert rc == 1
    assert out.startswith("Incorrect Usage. flag provided but not defined: -foo\n")
    assert logged_errors(err) == ["flag provided but not defined: -foo"]


def test_unknown_command_flag(run):
    rc, out, err = run("state", "--foo", "x")
    assert rc == 1
    assert out.startswith("Incorrect Usage: flag provided but not defined: -foo\n\n")
    assert "ociruntime state" in out
    assert logged_errors(err) == ["flag provided but not defined: -foo"]


def test_global_flag_after_the_command_is_unknown(run, root):
    rc, out, err = run("state", "--root", root, "x")
    assert rc == 1
    assert logged_errors(err) == ["flag provided but not defined: -root"]


def test_flag_needs_an_argument_message(run):
    rc, out, err = run("create", "x", "--bundle")
    assert rc == 1
    assert "flag needs an argument: -bundle" in out
    assert logged_errors(err) == ["flag needs an argument: -bundle"]
    rc, out, err = run("--root")
    assert rc == 1
    assert logged_errors(err) == ["flag needs an argument: -root"]


def test_invalid_log_format(run):
    rc, out, err = run("--log-format", "xml", "list")
    assert rc == 1
    assert logged_errors(err) == ["invalid log-format: xml"]


def test_log_file_that_cannot_be_opened(run, tmp_path):
    rc, out, err = run("--log", str(tmp_path / "no" / "such" / "dir" / "log"), "list")
    assert rc == 1
    assert "no such file or directory" in err.lower()


def test_log_file_opened_even_for_state(run, tmp_path, root):
    path = tmp_path / "log.json"
    rc, out, err = run("--root", root, "--log", str(path), "--log-format=json", "state", "nosuch")
    assert rc == 1
    assert out == ""
    assert err == "container does not exist\n"
    (line,) = path.read_text().splitlines()
    assert json.loads(line) == {"level": "error", "msg": "container does not exist",
                                "time": json.loads(line)["time"]}


def test_invalid_id_on_every_command(run, root):
    for args in (["state", "a/b"], ["kill", "a/b"], ["delete", "a/b"], ["start", "a/b"]):
        rc, out, err = run("--root", root, *args)
        assert rc == 1, args
        assert logged_errors(err) == ["invalid container ID format"], args
    rc, out, err = run("--root", root, "delete", "--force", "..")
    assert rc == 1
    assert logged_errors(err) == ["invalid container ID format"]


def test_root_double_slash_refused(run):
    rc, out, err = run("--root", "//", "state", "etc")     # read-only: would look for /etc/state.json
    assert rc == 1
    assert logged_errors(err) == ["Option --root argument should not be set to /"]


def test_root_slash_refused(run):
    rc, out, err = run("--root", "/", "state", "etc")
    assert rc == 1
    assert logged_errors(err) == ["Option --root argument should not be set to /"]


def test_state_of_unknown_container(run, root):
    rc, out, err = run("--root", root, "state", "nosuch")
    assert rc == 1 and out == ""
    assert logged_errors(err) == ["container does not exist"]


def test_state_with_missing_root(run, tmp_path):
    rc, out, err = run("--root", str(tmp_path / "missing"), "state", "x")
    assert rc == 1
    assert logged_errors(err) == ["container does not exist"]


def test_delete_force_missing_is_silent(run, root, tmp_path):
    for r in (root, str(tmp_path / "missing-root")):
        rc, out, err = run("--root", r, "delete", "--force", "nosuch")
        assert (rc, out, err) == (0, "", "")
        rc, out, err = run("--root", r, "delete", "nosuch", "-f")
        assert (rc, out, err) == (0, "", "")
    rc, out, err = run("--root", root, "delete", "nosuch")
    assert rc == 1 and logged_errors(err) == ["container does not exist"]


def test_delete_removes_a_dir_without_state(run, root):
    os.mkdir(os.path.join(root, "aborted"), 0o711)
    rc, out, err = run("--root", root, "delete", "aborted")
    assert rc == 1 and logged_errors(err) == ["container does not exist"]
    assert not os.path.exists(os.path.join(root, "aborted"))
    os.mkdir(os.path.join(root, "aborted2"), 0o711)
    rc, out, err = run("--root", root, "delete", "--force", "aborted2")
    assert (rc, out, err) == (0, "", "")
    assert os.listdir(root) == []


def test_kill_unknown_and_bad_signal(run, root):
    rc, out, err = run("--root", root, "kill", "nosuch", "KILL")
    assert rc == 1 and logged_errors(err) == ["container does not exist"]
    rc, out, err = run("--root", root, "kill", "nosuch", "SIGFOO")
    assert rc == 1 and logged_errors(err) == ['unknown signal "SIGFOO"']


def test_list_empty(run, root, tmp_path):
    rc, out, err = run("--root", root, "list", "--format", "json")
    assert (rc, out, err) == (0, "null\n", "")
    rc, out, err = run("--root", root, "list", "-f", "json")
    assert (rc, out, err) == (0, "null\n", "")
    rc, out, err = run("--root", root, "list", "-q")
    assert (rc, out, err) == (0, "", "")
    rc, out, err = run("--root", root, "list")
    assert rc == 0 and err == ""
    assert out.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rc, out, err = run("--root", str(tmp_path / "missing"), "list", "--format=json")
    assert (rc, out, err) == (0, "null\n", "")


def test_list_invalid_format(run, root):
    rc, out, err = run("--root", root, "list", "--format", "yaml")
    assert rc == 1 and logged_errors(err) == ["invalid format option"]
    rc, out, err = run("--root", root, "list", "--format", "yaml", "-q")
    assert rc == 0   # -q takes precedence over --format


def test_start_unknown(run, root):
    rc, out, err = run("--root", root, "start", "nosuch")
    assert rc == 1 and logged_errors(err) == ["container does not exist"]


def test_global_root_equals_form(run, root):
    rc, out, err = run(f"--root={root}", "list", "-q")
    assert (rc, out, err) == (0, "", "")
    rc, out, err = run("-root", root, "list", "-q")
    assert (rc, out, err) == (0, "", "")


def test_spec_writes_config_and_refuses_to_overwrite(run, tmp_path):
    rc, out, err = run("spec", "--bundle", str(tmp_path))
    assert (rc, out, err) == (0, "", "")
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["ociVersion"] == "1.3.0"
    rc, out, err = run("spec", "-b", str(tmp_path))
    assert rc == 1 and logged_errors(err) == ["File config.json exists. Remove it first"]


def test_features_is_4_space_json(run):
    rc, out, err = run("features")
    assert rc == 0 and err == ""
    assert out.endswith("}\n")
    doc = json.loads(out)
    assert doc["ociVersionMax"] == "1.3.0"
    assert out == json.dumps(doc, indent=4) + "\n"


def test_features_memory_policy(run):
    """features-linux.md memoryPolicy: every mode and flag config-linux.md lists is recognised (and
    implemented: tests/integration/test_process_attrs.py), and the document matches the schema."""
    from ociruntime import schema
    rc, out, err = run("features")
    doc = json.loads(out)
    schema.validate_features(doc)
    assert doc["linux"]["memoryPolicy"] == {
        "modes": ["MPOL_BIND", "MPOL_DEFAULT", "MPOL_INTERLEAVE", "MPOL_LOCAL", "MPOL_PREFERRED",
                  "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE"],
        "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]}
