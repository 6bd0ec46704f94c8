"""The schema validator matches our schemas' patterns without `re` (start-up time). Each native
matcher must agree with re on a corpus, and every pattern in schemas/ must have one."""
import glob
import json
import os
import random
import re

from ociruntime.schema import NATIVE_PATTERNS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _patterns():
    pats = set()

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "pattern":
                    pats.add(v)
                if k == "patternProperties":
                    pats.update(v)
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    for f in glob.glob(os.path.join(ROOT, "schemas", "*.json")):
        with open(f) as fh:
            walk(json.load(fh))
    return pats


def test_every_schema_pattern_is_native():
    assert _patterns() - set(NATIVE_PATTERNS) == set()


CORPUS = ["", "1.0.0", "1.3.0", "01.0.0", "1.0", "1.0.0-rc.1", "1.0.0-rc.01", "1.0.0+build.1", "1.0.0-", "1.0.0+",
          "1.0.0\n", "0-3", "0-3,5", "1,2,3", "1-", ",1", "a", "MB:0=1", "RLIMIT_NOFILE", "RLIMIT_", "RLIMIT_nofile",
          "2MB", "1GB", "10KB", "0MB", "MB", "rwm", "rx", "/x", "x", "CAP_SYS_ADMIN", "CAP_", "CAP_x", "a\nb", "\r",
          "1.0.0-alpha.beta", "1.0.0-0A", "1.0.0-x-y-z.--", "\u0663.0.0", "1-\u0663", "1.2.3-rc.1+sha.5114f85",
          "3PB", "1EB", " ", "\n"]


def test_native_matchers_agree_with_re():
    rnd = random.Random(1)
    alpha = "0123456789.-+abcRLIMIT_CAPMBKGrwm/,\n \u0663"
    corpus = CORPUS + ["".join(rnd.choice(alpha) for _ in range(rnd.randint(0, 12))) for _ in range(20000)]
    for pat, fn in NATIVE_PATTERNS.items():
        rx = re.compile(pat)
        wrong = [x for x in corpus if bool(rx.search(x)) != bool(fn(x))]
        assert not wrong, (pat, wrong[:5])
