"""Conformers from SMILES: rotatable torsions, a von Mises torsion-mixture model, reweighting and MH sampling."""

from molsamp.conformers.torsions import Torsions, rotatable_torsions, set_torsions

__all__ = ["Torsions", "rotatable_torsions", "set_torsions"]
