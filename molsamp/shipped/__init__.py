"""Files shipped inside the package: the built-in ``systems/`` and the trained ``models/``.

In the repository these are links to the top-level folders; a wheel holds copies, so an installed molsamp finds
them wherever it runs."""

from pathlib import Path

__all__ = ["SYSTEMS_DIR", "MODELS_DIR"]

SYSTEMS_DIR = Path(__file__).resolve().parent / "systems"
"""Built-in system files (YAML, with the structures they name)."""
MODELS_DIR = Path(__file__).resolve().parent / "models"
"""Shipped checkpoints, each with its model card."""
