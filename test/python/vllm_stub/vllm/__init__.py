"""A stand-in for vLLM, for moelora's plugin tests: see ../README.md."""

from .version import __version__, __version_tuple__  # noqa: F401

MOELORA_STUB = True
