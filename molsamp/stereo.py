"""Stereoisomers of a SMILES: which ones to sample when its stereocentres or stereo double bonds are unassigned.

A SMILES without stereo describes several molecules. Rather than let the conformer embedding pick one at random,
molsamp samples either the first of its stereoisomers in a fixed order (``"first"``, and says so) or each of them
(``"all"``). The order is that of the sorted canonical isomeric SMILES, so the choice is the same on every run.
"""

from __future__ import annotations

__all__ = ["STEREO_MODES", "StereoWarning", "unassigned_stereo", "stereoisomers", "expand_stereo", "resolve_stereo"]

import warnings

from molsamp.errors import InputError

STEREO_MODES = ("first", "all")
"""What to sample of a SMILES with unassigned stereo: its first stereoisomer, or every one."""


class StereoWarning(UserWarning):
    """A SMILES left stereo unassigned and molsamp chose the stereoisomer to sample."""


def unassigned_stereo(smiles: str) -> int:
    """The number of unassigned stereocentres and stereo double bonds of ``smiles`` (RDKit's potential stereo)."""
    from rdkit import Chem

    from molsamp.forcefields import parse_smiles

    return sum(element.specified == Chem.StereoSpecified.Unspecified
               for element in Chem.FindPotentialStereo(parse_smiles(smiles)))


def stereoisomers(smiles: str, mode: str = "first") -> list[str]:
    """The fully assigned canonical isomeric SMILES to sample for ``smiles``.

    A fully assigned input gives itself (canonical). Otherwise every assignment of the unassigned stereo elements
    (RDKit's ``EnumerateStereoisomers``, duplicates such as meso forms removed) in sorted order: all of them for
    ``mode="all"``, the first only for ``mode="first"``. Isomers are not embedded to test them, so an impossible one
    (a trans-fused small bridged ring) is listed and fails later, when it is embedded.
    """
    _check_mode(mode)
    from rdkit import Chem
    from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

    from molsamp.forcefields import parse_smiles

    options = StereoEnumerationOptions(onlyUnassigned=True, unique=True, tryEmbedding=False)
    isomers = sorted({Chem.MolToSmiles(isomer) for isomer in EnumerateStereoisomers(parse_smiles(smiles), options)})
    return isomers if mode == "all" else isomers[:1]


def resolve_stereo(smiles: str, mode: str = "first") -> str:
    """The one stereoisomer of ``smiles`` that a single system samples (canonical isomeric SMILES).

    With several stereoisomers, ``mode="first"`` takes the first of :func:`stereoisomers` and warns
    (:class:`StereoWarning`, naming the input and the isomer), and ``mode="all"`` raises :class:`InputError`: a
    system is one isomer; enumerate them with :func:`expand_stereo`.
    """
    _check_mode(mode)
    isomers = stereoisomers(smiles, "all")
    if len(isomers) > 1:
        if mode == "all":
            raise InputError(f"molecule {smiles!r} has {len(isomers)} stereoisomers and a system is one of them; "
                             f"give its stereo, use stereo='first', or enumerate them with expand_stereo")
        warnings.warn(f"molecule {smiles!r} leaves stereo unassigned; sampling {isomers[0]}, the first of its "
                      f"{len(isomers)} stereoisomers (stereo='all' enumerates them)", StereoWarning, stacklevel=3)
    return isomers[0]


def expand_stereo(pairs: list[tuple[str, str]], mode: str = "first") -> list[tuple[str, str, str]]:
    """``(name, input SMILES, isomeric SMILES)`` for each stereoisomer to sample of each ``(name, SMILES)`` pair.

    With ``mode="all"``, a molecule with ``k > 1`` stereoisomers gives ``k`` triples named ``"{name} [isomer i/k]"``.
    A SMILES RDKit cannot read is passed through as its own isomeric SMILES, so that the error is raised later, for
    that molecule only.
    """
    _check_mode(mode)
    expanded = []
    for name, smiles in pairs:
        try:
            isomers = stereoisomers(smiles, mode)
        except InputError:
            isomers = [smiles]
        if len(isomers) == 1:
            expanded.append((name, smiles, isomers[0]))
        else:
            expanded += [(f"{name} [isomer {i}/{len(isomers)}]", smiles, isomer)
                         for i, isomer in enumerate(isomers, 1)]
    return expanded


def _check_mode(mode: str) -> None:
    if mode not in STEREO_MODES:
        raise InputError(f"stereo must be one of {list(STEREO_MODES)}, got {mode!r}")
