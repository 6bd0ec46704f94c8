"""lifecycle.parse_signal: runc kill's signal argument (cli-contract §6.6).

A number is used as is (0 is the liveness probe); a name is matched with or without the SIG prefix,
in any case, against the 31 classic Linux names; real-time signals by number or (our extension)
RTMIN+n / RTMAX-n. Anything else is `unknown signal "X"`, an OciError (exit 1), never a traceback.
"""

import signal

import pytest

from ociruntime.errors import OciError
from ociruntime.lifecycle.control import SIGNALS, parse_signal

CLASSIC = ["HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
           "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
           "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS"]


def test_table_is_the_31_classic_linux_names_with_kernel_numbers():
    assert sorted(SIGNALS) == sorted(CLASSIC)
    for name, num in SIGNALS.items():
        assert num == int(getattr(signal, "SIG" + name)), name
    assert sorted(SIGNALS.values()) == list(range(1, 32))


@pytest.mark.parametrize("name", CLASSIC)
def test_every_name_in_every_spelling(name):
    want = int(getattr(signal, "SIG" + name))
    for s in (name, "SIG" + name, name.lower(), "sig" + name.lower(), "Sig" + name.capitalize(),
              name.capitalize()):
        assert parse_signal(s) == want, s


@pytest.mark.parametrize("s, want", [
    ("KILL", 9), ("kill", 9), ("SIGKILL", 9), ("sigkill", 9), ("SiGkIlL", 9),
    ("TERM", 15), ("sigterm", 15), ("HUP", 1), ("usr1", 10), ("SIGUSR2", 12), ("winch", 28),
    ("0", 0), ("9", 9), ("15", 15), ("34", 34), ("64", 64), ("00", 0), ("09", 9),
    ("RTMIN", 34), ("rtmin", 34), ("SIGRTMIN", 34), ("RTMIN+1", 35), ("sigrtmin+3", 37),
    ("RTMIN+30", 64), ("RTMAX", 64), ("SIGRTMAX-1", 63), ("rtmax-30", 34),
])
def test_valid(s, want):
    assert parse_signal(s) == want


@pytest.mark.parametrize("s", [
    "SIGFOO", "FOO", "", "SIG", "sig", "-1", "65", "100", "999999999999", "+9", " 9", "9 ", "9x",
    "KILL9", "SIGKILL ", "SIG KILL", "IOT", "SIGIOT", "CLD", "POLL", "RTMIN+31", "RTMAX-31",
    "RTMIN-1", "RTMAX+1", "RTMIN+", "RTMIN+x", "RTMIN+-1", "0x9", "SIGSIGKILL",
])
def test_invalid(s):
    with pytest.raises(OciError) as ei:
        parse_signal(s)
    assert str(ei.value) == f'unknown signal "{s}"'
    assert ei.value.exit_code == 1


@pytest.mark.parametrize("s", ["\u00b2", "\u0661", "\uff19"])
def test_non_ascii_digits_are_unknown_signals(s):
    with pytest.raises(OciError) as ei:
        parse_signal(s)
    assert str(ei.value) == f'unknown signal "{s}"'
