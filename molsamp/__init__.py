"""molsamp: sample molecular Boltzmann distributions.

Kept light on purpose: ``import molsamp`` loads no torch or OpenMM; import the submodules you need
(``molsamp.systems``, ``molsamp.targets``, ``molsamp.md``, ``molsamp.analysis``).
"""

__version__ = "0.1.0"
