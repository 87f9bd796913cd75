"""Free energies: alchemical hydration free energies with MBAR.

``hydration_free_energy("CCO")`` runs the whole calculation; the parts compose on their own:
:func:`hydration_legs` builds the alchemical systems, :func:`equilibrate` and :func:`sample_window` sample them,
:func:`mbar_from_windows` estimates each leg's free energy. Importing this package loads no OpenMM, openmmtools or
pymbar.
"""

from molsamp.free_energy.alchemy import LambdaSchedule, alchemical_system, set_lambdas
from molsamp.free_energy.hydration import METHODS, hydration_free_energies, hydration_free_energy
from molsamp.free_energy.legs import Leg, hydration_legs
from molsamp.free_energy.mbar import FreeEnergyDifference, PoorOverlapWarning, mbar, mbar_from_windows
from molsamp.free_energy.windows import Protocol, WindowSamples, equilibrate, sample_window

__all__ = ["LambdaSchedule", "alchemical_system", "set_lambdas", "METHODS", "hydration_free_energies",
           "hydration_free_energy", "Leg", "hydration_legs", "FreeEnergyDifference", "PoorOverlapWarning", "mbar",
           "mbar_from_windows", "Protocol", "WindowSamples", "equilibrate", "sample_window"]
