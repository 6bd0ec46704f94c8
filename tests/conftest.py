import os
from importlib import metadata

import pytest


def _plugin_autoloaded():
    # An installed ociruntime registers the plugin through its pytest11 entry point; listing it
    # here as well would register the same module twice (pluggy refuses that).
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    try:
        return any(ep.name == "ociruntime" and ep.value.startswith("ociruntime.testing.plugin")
                   for ep in metadata.entry_points(group="pytest11"))
    except Exception:
        return False


pytest_plugins = [] if _plugin_autoloaded() else ["ociruntime.testing.plugin"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The guest stages (tests/vm/stages.py) run beside the host tests: a module with
    ``stages_for(items)`` has its tests moved to the end of the run and its stages started now,
    in the background, wave by wave (``STAGE_WAVE``). ``--collect-only`` starts nothing."""
    staged = {}
    for it in items:
        mod = getattr(it, "module", None)
        if mod is not None and hasattr(mod, "stages_for"):
            staged.setdefault(mod, []).append(it)
    if not staged:
        return
    moved = {id(it) for its in staged.values() for it in its}
    items[:] = [it for it in items if id(it) not in moved] + [it for its in staged.values() for it in its]
    if config.option.collectonly:
        return
    waves = {}
    for mod, its in staged.items():
        waves.setdefault(mod.STAGE_WAVE, []).extend(mod.stages_for(its))
    waves = [waves[k] for k in sorted(waves) if waves[k]]
    if waves:
        next(iter(staged)).stages.start(waves)
