"""The guest stages run beside the host tests.

A guest stage (the pure cgroup v2 guest, the two systemd guests) is minutes of one qemu (TCG) that
the host tests do not depend on, while the host tests mostly wait on processes; run one after the
other they made ``make test`` ≈ 32 min on 2 cores. tests/conftest.py asks every collected module
that has ``stages_for(items)`` for its stages when collection ends, starts them here in threads
(wave by wave: the stages of a wave together, the next wave when it has ended) and moves those
modules' tests to the end of the run; a stage's fixture then calls ``result()``, which waits for it.
Without that start (``--collect-only``; a stage module imported some other way) ``result()`` runs
the stage itself, in the caller's thread, as before.

A stage is a plain function returning an object with ``notes`` (lines for the terminal); it never
calls pytest (it runs outside any test). Its guest is started and stopped in its own thread, which
matters: qemu runs with PR_SET_PDEATHSIG, which fires when the *thread* that forked it ends.
"""
import sys
import threading
import time
import traceback

_JOBS = {}


class StageCrashed(Exception):
    pass


class _Job:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn
        self.done = threading.Event()
        self.value = self.error = None
        self.queued = time.monotonic()  # when start() took it: the session's collection end
        self.started = self.ended = None

    def run(self):
        self.started = time.monotonic()
        try:
            self.value = self.fn()
        except BaseException:  # noqa: B902 — reported by result(), in the test that waits for it
            self.error = traceback.format_exc()
        finally:
            self.ended = time.monotonic()
            self.done.set()


def start(waves):
    """``waves``: a list of lists of (name, function); the stages of one wave run at once, the
    next wave starts when every stage of the previous one has ended."""
    for wave in waves:
        for name, fn in wave:
            _JOBS[name] = _Job(name, fn)

    def runner():
        for wave in waves:
            threads = [threading.Thread(target=_JOBS[name].run, name=f"stage-{name}", daemon=True)
                       for name, _ in wave]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    threading.Thread(target=runner, name="stages", daemon=True).start()


def started():
    return sorted(_JOBS)


def result(name, fn):
    """The value of stage ``name``: waits for its background run, or runs ``fn`` here when it was
    not started in the background. A stage that raised raises StageCrashed with its traceback."""
    job = _JOBS.get(name)
    if job is None:
        return fn()
    t0 = time.monotonic()
    job.done.wait()
    if job.error:
        raise StageCrashed(f"the {name} stage crashed:\n{job.error}")
    value = job.value
    waited = time.monotonic() - t0
    notes = getattr(value, "notes", None)
    if isinstance(notes, list):
        notes.append(f"{name} ran beside the host tests from +{job.started - job.queued:.0f}s to "
                     f"+{job.ended - job.queued:.0f}s after collection; its tests waited {waited:.0f}s for it")
    return value


def say(request, tag, lines):
    """Print ``lines`` to the terminal now, past pytest's capture."""
    text = "".join(f"\n[{tag}] {line}" for line in lines)
    if not text:
        return
    cap = request.config.pluginmanager.getplugin("capturemanager")
    if cap:
        with cap.global_and_fixture_disabled():
            print(text, file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)
