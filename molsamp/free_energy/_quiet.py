"""Import pymbar and openmmtools without the banners they print on import."""

from __future__ import annotations

import contextlib
import importlib
import io
import types


def quiet_import(name: str) -> types.ModuleType:
    """``importlib.import_module(name)`` with stdout and stderr silenced (pymbar prints a JAX banner)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return importlib.import_module(name)
