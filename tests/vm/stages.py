"""The guest stages run beside the host tests.

A guest stage (the pure cgroup v2 guest, the two systemd guests) is minutes of one qemu (TCG) that
the host tests do not depend on, while the host tests mostly wait on processes; run one after the
other they made ``make test`` ≈ 32 min on 2 cores. tests/conftest.py asks every collected module
that has ``stages_for(items)`` for its stages when collection ends, starts them here (wave by wave:
the stages of a wave together, the next wave when it has ended) and moves those modules' tests to the
end of the run; a stage's fixture then calls ``result()``, which waits for it. Without that start
(``--collect-only``; a stage module imported some other way) ``result()`` runs the stage itself, in
the caller, as before.

The stages run in a **process of their own**, forked from pytest when collection ends: a host test that
closes a file descriptor twice (harmless on its own) could otherwise close a guest's control socket
that took the same number in a stage thread (seen: the v2 guest "closed its port" while booting, and
the test's own temporary file was gone). In that process each stage has a thread that starts and stops
its guest (qemu's PR_SET_PDEATHSIG fires when the *thread* that forked it ends); the process dies with
pytest (PR_SET_PDEATHSIG too), and sends each stage's value back pickled as soon as it ends.

A stage is a plain function returning a picklable object with ``notes`` (lines for the terminal); it
never calls pytest (it runs outside any test).
"""
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback

_JOBS = {}


class StageCrashed(Exception):
    pass


class _Job:
    def __init__(self, name):
        self.name = name
        self.done = threading.Event()
        self.value = self.error = None
        self.queued = time.monotonic()  # when start() took it: the session's collection end
        self.started = self.ended = None


def _run(name, fn):
    """(name, value, error, started, ended) of one stage, in the stage process."""
    started = time.monotonic()
    value = error = None
    try:
        value = fn()
    except BaseException:  # noqa: B902 — reported by result(), in the test that waits for it
        error = traceback.format_exc()
    return name, value, error, started, time.monotonic()


def _stage_process(waves, w):
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: go with pytest
    lock = threading.Lock()

    def send(rec):
        try:
            data = pickle.dumps(rec)
        except Exception:  # noqa: BLE001 — an unpicklable value is the stage's bug: say so
            data = pickle.dumps((rec[0], None, "the stage's value cannot be sent back:\n" + traceback.format_exc(),
                                 rec[3], rec[4]))
        with lock:
            os.write(w, struct.pack("!I", len(data)))
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]

    for wave in waves:
        threads = [threading.Thread(target=lambda n=name, f=fn: send(_run(n, f)), name=f"stage-{name}")
                   for name, fn in wave]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _read_exact(r, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(r, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _receiver(r, pid, names):
    while True:
        head = _read_exact(r, 4)
        if head is None:
            break
        data = _read_exact(r, struct.unpack("!I", head)[0])
        if data is None:
            break
        name, value, error, started, ended = pickle.loads(data)
        job = _JOBS[name]
        job.value, job.error, job.started, job.ended = value, error, started, ended
        job.done.set()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    for job in (_JOBS[n] for n in names):  # the process ended without sending these
        if not job.done.is_set():
            job.error = f"the stage process ended ({status:#x}) before the {job.name} stage did"
            job.done.set()


def start(waves):
    """``waves``: a list of lists of (name, function); the stages of one wave run at once, the
    next wave starts when every stage of the previous one has ended."""
    for wave in waves:
        for name, _ in wave:
            _JOBS[name] = _Job(name)
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            _stage_process(waves, w)
        except BaseException:  # noqa: B902
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)  # never pytest's teardown or atexit handlers in this copy of it
    os.close(w)
    names = [name for wave in waves for name, _ in wave]
    threading.Thread(target=_receiver, args=(r, pid, names), name="stages", daemon=True).start()


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
