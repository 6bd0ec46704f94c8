"""Render an `ociruntime --trace FILE` timeline to a PNG, the way a trace viewer (Perfetto,
chrome://tracing) lays it out: one lane per process (the runtime, stage-1 of the init, the container
init), nested steps stacked below their parent, time in milliseconds.

    .venv/bin/python bench/trace_png.py TRACE.json OUT.png [--title TEXT]

matplotlib (installed by `make bench`). Used for the picture in README.md ("Tracing a lifecycle call").
"""
import argparse
import json


def lanes(doc):
    evs = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
    names = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e.get("ph") == "M"}
    order = []
    for e in sorted(evs, key=lambda e: e["ts"]):
        if e["pid"] not in order:
            order.append(e["pid"])
    out = []
    for pid in order:
        mine = sorted((e for e in evs if e["pid"] == pid), key=lambda e: (e["ts"], -e["dur"]))
        stack, rows = [], []
        for e in mine:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"] + 1e-3:
                stack.pop()
            rows.append((len(stack), e))
            stack.append(e)
        out.append((names.get(pid, str(pid)), rows))
    return out, min(e["ts"] for e in evs)


def _draw(ax, ls, t0, x0, x1, colors, min_label_chars):
    heights = [max(d for d, _ in rows) + 1 for _, rows in ls]
    total = sum(heights) + len(ls)
    y, ticks = 0, []
    for (name, rows), h in zip(ls, heights):
        ticks.append((y + h / 2, name))
        for depth, e in rows:
            x, w = (e["ts"] - t0) / 1000, e["dur"] / 1000
            if x + w < x0 or x > x1:
                continue
            args = e.get("args") or {}
            failed = bool(args.get("errno") or args.get("error"))
            c = "#c44e52" if failed else ("#9a9a9a" if e["name"].startswith(("wait", "exec fifo")) else colors[e["cat"]])
            ax.broken_barh([(x, max(w, (x1 - x0) / 3000))], (y + depth + 0.08, 0.84), facecolors=c,
                           edgecolors="white", linewidth=0.3)
            label = e["name"]
            if label in ("mount", "device", "masked path", "readonly path", "rlimit", "sysctl"):
                label = args.get("detail", label)
            if w > (x1 - x0) * len(label) / min_label_chars:
                ax.text(x + w / 2, y + depth + 0.5, label, ha="center", va="center", fontsize=6.5, color="white",
                        clip_on=True)
        y += h + 1
    ax.set_ylim(total, -0.5)
    ax.set_yticks([t for t, _ in ticks], [n for _, n in ticks])
    ax.set_xlim(x0, x1)
    ax.grid(axis="x", alpha=0.3)


def render(doc, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    ls, t0 = lanes(doc)
    colors = {"runtime": "#4c72b0", "init": "#dd8452"}
    end = max(e["ts"] + e["dur"] for _, rows in ls for _, e in rows)
    init = [e for _, rows in ls for _, e in rows if e["cat"] == "init"]
    total = sum(max(d for d, _ in rows) + 2 for _, rows in ls)
    fig, (top, zoom) = plt.subplots(2, 1, figsize=(16, 0.5 * total * 2 + 2), dpi=110)
    _draw(top, ls, t0, 0, (end - t0) / 1000, colors, 230)
    top.set_title(title)
    top.set_xlabel("milliseconds since the launcher's first line (CLOCK_MONOTONIC)")
    if init:
        z0 = (min(e["ts"] for e in init) - t0) / 1000
        z1 = (max(e["ts"] + e["dur"] for e in init) - t0) / 1000
        pad = (z1 - z0) * 0.02
        _draw(zoom, [(n, rows) for n, rows in ls if any(e["cat"] == "init" for _, e in rows) or True],
              t0, z0 - pad, z1 + pad, colors, 330)
        zoom.set_title("zoom: the init's steps (stage-1 and the container init), each mount and path by name")
        zoom.set_xlabel("milliseconds")
    top.legend(handles=[Patch(color=colors["runtime"], label='runtime steps (cat "runtime", Python)'),
                        Patch(color=colors["init"], label='init steps (cat "init", C, over the sync socket)'),
                        Patch(color="#9a9a9a", label="waiting on the other process")],
               loc="upper right", fontsize=8, bbox_to_anchor=(1, -0.12), ncol=3)
    fig.tight_layout()
    fig.savefig(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("png")
    ap.add_argument("--title", default="ociruntime --trace: run (create + start + wait + delete)")
    a = ap.parse_args()
    with open(a.trace) as f:
        render(json.load(f), a.png, a.title)


if __name__ == "__main__":
    main()
