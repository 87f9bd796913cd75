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
            assert obj.__doc__, f"{name}.{public} has no docstring"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
