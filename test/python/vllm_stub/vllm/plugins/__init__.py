"""vllm/plugins/__init__.py's general-plugin loading: every entry point of
the group vllm.general_plugins (only those named in VLLM_PLUGINS, a
comma-separated list, when it is set) is loaded and called, once per
process."""

import logging
import os

logger = logging.getLogger(__name__)

DEFAULT_PLUGINS_GROUP = "vllm.general_plugins"

plugins_loaded = False


def _allowed_plugins():
    value = os.environ.get("VLLM_PLUGINS")
    return None if value is None else value.split(",")


def load_plugins_by_group(group):
    from importlib.metadata import entry_points

    allowed = _allowed_plugins()
    plugins = {}
    for plugin in entry_points(group=group):
        if allowed is None or plugin.name in allowed:
            try:
                plugins[plugin.name] = plugin.load()
            except Exception:
                logger.exception("Failed to load plugin %s", plugin.name)
    return plugins


def load_general_plugins():
    global plugins_loaded
    if plugins_loaded:
        return
    plugins_loaded = True
    for func in load_plugins_by_group(DEFAULT_PLUGINS_GROUP).values():
        func()
