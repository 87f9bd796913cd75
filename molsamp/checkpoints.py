"""The one checkpoint format of every trained model: a torch file (weights only, no pickled code) holding a format
tag ``molsamp.<kind>/1``, the model's constructor arguments (``model.config``), its weights and a metadata card
(training data, command, metrics), written atomically and read back with one-line errors that name the file."""

from __future__ import annotations

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_kind", "save_training_state"]

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from molsamp.errors import InputError


def _format(kind: str) -> str:
    return f"molsamp.{kind}/1"


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, kind: str, **metadata: Any) -> Path:
    """Write ``model`` (its ``config`` and weights) and ``metadata`` to ``path`` atomically, tagged as ``kind``."""
    save_training_state({"format": _format(kind), "config": model.config, "state": model.state_dict(),
                         "metadata": metadata}, path)
    return Path(path)


def save_training_state(content: dict, path: str | os.PathLike) -> None:
    """``torch.save`` of ``content`` to ``path`` atomically: a resumed run reads the previous state or the new one,
    never half of one."""
    from molsamp.files import atomic_path

    with atomic_path(path) as temporary:
        torch.save(content, temporary)


def checkpoint_kind(path: str | os.PathLike) -> str | None:
    """The kind of model the checkpoint at ``path`` holds (``equivariant-flow``, ...), or None if it is not a
    readable molsamp checkpoint (:func:`load_checkpoint` then says why)."""
    try:
        tag = torch.load(path, map_location="cpu", weights_only=True).get("format", "")
    except Exception:  # any reason it cannot be read: load_checkpoint reports it
        return None
    return tag.removeprefix("molsamp.").rsplit("/", 1)[0] if isinstance(tag, str) and tag.startswith("molsamp.") \
        else None


def load_checkpoint(path: str | os.PathLike, kind: str, build: Callable[..., torch.nn.Module],
                    device: torch.device | str | None = None) -> torch.nn.Module:
    """The model ``build(**config)`` with the weights of the ``kind`` checkpoint at ``path``, on ``device`` (default
    CPU) and in the dtype it was saved in, in evaluation mode; ``.metadata`` holds its card. :class:`~molsamp.errors.InputError` if the file is
    missing, unreadable, of another kind, or its weights do not fit the configuration."""
    try:
        checkpoint = torch.load(path, map_location=device or "cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"model checkpoint {str(path)!r} does not exist") from None
    except Exception as error:  # torch's own message runs to many lines and advises weights_only=False: keep it out
        raise InputError(f"{path}: not a readable torch checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _format(kind) \
            or not isinstance(checkpoint.get("config"), dict) or not isinstance(checkpoint.get("state"), dict):
        raise InputError(f"{path}: not a molsamp {kind} checkpoint (expected format {_format(kind)!r} with "
                         "'config' and 'state')")
    floating = [value.dtype for value in checkpoint["state"].values() if value.is_floating_point()]
    try:
        model = build(**checkpoint["config"])
        if floating:  # built in the default dtype: take the saved one first, so float64 weights load unrounded
            model = model.to(floating[0])
        model.load_state_dict(checkpoint["state"])
    except (TypeError, RuntimeError) as error:
        raise InputError(f"{path}: weights do not match the architecture ({error})".splitlines()[0]) from None
    model.metadata = checkpoint.get("metadata", {})
    return model.to(device or "cpu").eval()
