import os
from importlib import metadata


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
