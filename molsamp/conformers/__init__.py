"""Conformers from SMILES: rotatable torsions, a von Mises torsion-mixture model, reweighting and MH sampling.

Approximations, stated once: in the torsion modes (:data:`TORSION_MODES`), bond lengths, bond angles and ring
conformations are those of one RDKit ETKDG geometry minimised in the molecule's force field; only the rotatable
torsions vary. Within that space the samples are exact: importance weights exp(-u)/q, SMC, or an independence
Metropolis-Hastings chain, against the OpenMM energy. The ``md-jumps`` mode samples every coordinate (Langevin MD
with model torsion jumps), exact up to the MD time-step error.
"""

from molsamp.conformers.generate import MODES, TORSION_MODES, generate, sample_torsions
from molsamp.conformers.md_jumps import sample_md_jumps
from molsamp.conformers.io import read_smiles, write_sdf
from molsamp.conformers.target import TorsionalTarget
from molsamp.conformers.torsions import Torsions, rotatable_torsions, set_torsions

__all__ = ["generate", "sample_torsions", "sample_md_jumps", "MODES", "TORSION_MODES",
           "TorsionalTarget", "Torsions", "rotatable_torsions", "set_torsions", "read_smiles", "write_sdf"]
