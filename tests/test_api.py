"""The public API documents itself: every exported name has a docstring, and docstring examples run."""

import doctest
import importlib
import pkgutil

import pytest

import molsamp

MODULES = sorted(m.name for m in pkgutil.walk_packages(molsamp.__path__, "molsamp.") if not m.name.endswith("cli"))


@pytest.mark.parametrize("name", MODULES)
def test_public_names_have_docstrings(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    for public in getattr(module, "__all__", []):
        obj = getattr(module, public)
        if callable(obj):
            assert _written_docstring(obj), f"{name}.{public} has no docstring"


def _written_docstring(obj) -> bool:
    """True if ``obj`` has a docstring someone wrote: a dataclass or NamedTuple without one gets its signature,
    "Name(field, ...)", as ``__doc__``."""
    doc = (obj.__doc__ or "").strip()
    return bool(doc) and not doc.startswith(f"{getattr(obj, '__name__', '')}(")


def test_a_generated_dataclass_docstring_does_not_count():
    import dataclasses

    from molsamp.systems import System

    @dataclasses.dataclass
    class Undocumented:
        x: int

    assert not _written_docstring(Undocumented) and _written_docstring(System)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
