#!/usr/bin/env python3
"""Screenshot a real traced `ociruntime run` in a real trace viewer: the Performance panel of Chromium's
DevTools (its "Load trace…" button), in headless Chromium driven by playwright-core. Writes
bench/results/trace-run.json (the trace) and bench/results/trace-viewer.png (the whole run) and
trace-viewer-init.png (zoomed on the init). Used for the pictures in README.md ("Tracing a lifecycle call").

    sudo .venv/bin/python bench/trace_screenshot.py [--runs 10] [--trace FILE.json]

As root: runs `ociruntime --trace FILE run` of `true` in a busybox bundle --runs times (each with its own id,
one temporary --root, deleted afterwards) and keeps the fastest (shortest root span), or takes an existing
trace with --trace. Installs what it lacks at run time, outside the repository: Debian's `chromium` and `npm`
(apt), playwright-core into a temporary directory (npm). Chromium gets a fresh profile, no sandbox (root),
and a host resolver that resolves nothing: the viewer is built into the browser and loads nothing.
chrome://tracing is not used: Debian 12's Chromium 156 does not load it (ERR_FAILED, even with its internal
debugging pages enabled and --allow-chrome-scheme-url).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PLAYWRIGHT = "playwright-core@1.65.2"
APT_GET = ["apt-get", "-o", "DPkg::Lock::Timeout=900"]

# Drives the DevTools frontend bundled in Chromium (devtools://devtools/bundled/trace_app.html: the
# Performance panel without a page to inspect). The flame chart is a canvas, so tracks are expanded and the
# time range chosen with the mouse at fixed positions of this viewport.
SHOT_JS = r"""
const { chromium } = require('playwright-core');
const [chromePath, tracePath, userDir, outDir, zoomFrom, zoomTo, mountX] = process.argv.slice(2);
const W = 1600, H = 900;
(async () => {
  const ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: chromePath, headless: true, viewport: { width: W, height: H }, deviceScaleFactor: 1,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND'] });
  try {
    const p = ctx.pages()[0] || await ctx.newPage();
    await p.goto('devtools://devtools/bundled/trace_app.html');
    // without a page to inspect it says "Debugging connection was closed": dismiss that
    await p.getByText('Debugging connection was closed').waitFor({ timeout: 10000 }).catch(() => {});
    await p.keyboard.press('Escape');
    await p.locator('.dimmed-pane').waitFor({ state: 'detached', timeout: 5000 }).catch(() => {});
    await p.getByText('Performance', { exact: true }).first().click();
    const load = p.getByRole('button', { name: 'Load trace…', exact: true });
    await load.waitFor();
    const chooser = p.waitForEvent('filechooser');
    await load.click();
    await (await chooser).setFiles(tracePath);
    const close = p.getByRole('button', { name: 'Close', exact: true });   // the shortcuts pop-up
    await close.waitFor();
    await close.click();
    await p.getByRole('button', { name: 'Hide sidebar', exact: true }).click();
    await p.getByRole('checkbox', { name: 'Screenshots' }).uncheck().catch(() => {});
    await p.waitForTimeout(500);
    // expand the three processes, then their threads (bottom first: a click moves the rows below it)
    for (const y of [170, 149, 128]) { await p.mouse.click(60, y); await p.waitForTimeout(300); }
    for (const y of [222, 183, 145]) { await p.mouse.click(80, y); await p.waitForTimeout(300); }
    // the details pane up to just below the tracks: drag the splitter above its tabs
    await p.mouse.move(800, 702); await p.mouse.down();
    await p.mouse.move(800, 500, { steps: 5 }); await p.mouse.move(800, 372, { steps: 5 }); await p.mouse.up();
    // the time range: drag across the overview strip (its full width is the whole trace)
    const range = async (a, b) => {
      await p.mouse.move(a, 75); await p.mouse.down();
      await p.mouse.move((a + b) / 2, 75, { steps: 5 }); await p.mouse.move(b, 75, { steps: 5 });
      await p.mouse.up(); await p.waitForTimeout(800);
    };
    await range(1, W - 1);
    await p.mouse.move(W - 5, H - 5);
    await p.screenshot({ path: outDir + '/trace-viewer.png', clip: { x: 0, y: 0, width: W, height: 470 } });
    await range(Number(zoomFrom), Number(zoomTo));
    await p.mouse.click(Number(mountX), 163);   // the container init's row: select that mount step
    await p.mouse.move(W - 5, H - 5);
    await p.waitForTimeout(800);
    if (!(await p.getByText('"pointer"').count())) console.error('warning: no mount step selected (look at the PNG)');
    await p.screenshot({ path: outDir + '/trace-viewer-init.png', clip: { x: 0, y: 0, width: W, height: 730 } });
  } finally {
    await ctx.close();
  }
})().catch(e => { console.error(e); process.exit(1); });
"""


def ensure_apt(binary, package):
    if shutil.which(binary):
        return shutil.which(binary)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(APT_GET + ["update", "-qq"], check=True, env=env)
    subprocess.run(APT_GET + ["install", "-y", "-qq", "--no-install-recommends", package], check=True, env=env)
    return shutil.which(binary)


def traced_runs(runtime, work, runs):
    """Run `true` `runs` times with --trace; return the fastest trace's path (the runtime's file as written)."""
    from _bundle import write_bundle
    bundle = write_bundle(os.path.join(work, "bundle"), ["true"])
    root = os.path.join(work, "root")
    ids, best = [], None
    try:
        for i in range(runs):
            cid = f"trace-shot-{os.getpid()}-{i}"
            ids.append(cid)
            out = os.path.join(work, f"trace-{i}.json")
            r = subprocess.run([runtime, "--root", root, "--trace", out, "run", "--bundle", bundle, cid],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise SystemExit(f"trace_screenshot: run failed ({r.returncode}): {r.stderr.strip()}")
            with open(out) as f:
                doc = json.load(f)
            span = next(e["dur"] for e in doc["traceEvents"] if e.get("name") == "ociruntime run")
            print(f"run {i}: {span / 1000:.2f} ms")
            if best is None or span < best[0]:
                best = (span, out)
    finally:
        for cid in ids:
            if os.path.exists(os.path.join(root, cid)):
                subprocess.run([runtime, "--root", root, "delete", "--force", cid], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"kept the fastest: {best[0] / 1000:.2f} ms")
    return best[1]


def init_zoom(doc, width=1600):
    """The init's part of the trace, from the runtime's `sync: the init sets up` step (stage 1 is let go)
    to the end of `start` (the user's process has exec'd), as a range
    of the overview strip (pixels: the strip spans the whole trace over the page's width), and where the
    container init's longest `mount` step is once zoomed there (x of the flame chart, which then spans the
    range over the page's width): it is selected, so the Summary shows its arguments."""
    evs = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
    t0 = min(e["ts"] for e in evs)
    t1 = max(e["ts"] + e["dur"] for e in evs)
    sync = next(e for e in evs if e["name"] == "sync: the init sets up")
    start = next(e for e in evs if e["name"] == "start" and e["cat"] == "runtime")
    pad = 0.02 * (start["ts"] + start["dur"] - sync["ts"])
    ta, tb = sync["ts"] - pad, start["ts"] + start["dur"] + pad
    px = lambda t: 1 + (t - t0) / (t1 - t0) * (width - 2)  # noqa: E731
    a, b = round(px(ta)), round(px(tb))
    ta, tb = t0 + (a - 1) / (width - 2) * (t1 - t0), t0 + (b - 1) / (width - 2) * (t1 - t0)
    mount = max((e for e in evs if e["name"] == "mount"), key=lambda e: e["dur"])
    x = round((mount["ts"] + mount["dur"] / 2 - ta) / (tb - ta) * width)
    return a, b, x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--trace", help="an existing trace to show instead of making one")
    ap.add_argument("--runtime", default=os.path.join(REPO, ".venv", "bin", "ociruntime"))
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ocitrace-shot-")
    try:
        if a.trace:
            trace = os.path.abspath(a.trace)
        else:
            if os.geteuid() != 0:
                raise SystemExit("trace_screenshot: run as root (it runs containers), or pass --trace FILE")
            trace = traced_runs(a.runtime, work, a.runs)
            shutil.copyfile(trace, os.path.join(a.out, "trace-run.json"))
        with open(trace) as f:
            doc = json.load(f)
        chromium = ensure_apt("chromium", "chromium")
        ensure_apt("npm", "npm")
        npm_dir = os.path.join(work, "npm")
        subprocess.run(["npm", "install", "--prefix", npm_dir, "--no-audit", "--no-fund", "--no-save",
                        "--loglevel=error", PLAYWRIGHT], check=True)
        script = os.path.join(npm_dir, "shot.js")
        with open(script, "w") as f:
            f.write(SHOT_JS)
        a0, b0, x = init_zoom(doc)
        profile = os.path.join(work, "profile")
        os.mkdir(profile)
        subprocess.run(["node", script, chromium, trace, profile, os.path.abspath(a.out),
                        str(a0), str(b0), str(x)], check=True, timeout=300)
        print(f"wrote {a.out}/trace-viewer.png and trace-viewer-init.png")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
