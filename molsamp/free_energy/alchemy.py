"""Alchemical decoupling of a solute: the openmmtools factory and the lambda schedule."""

from __future__ import annotations

__all__ = ["LambdaSchedule", "alchemical_system", "set_lambdas"]

import dataclasses
from typing import TYPE_CHECKING

from molsamp.errors import InputError
from molsamp.free_energy._quiet import quiet_import

if TYPE_CHECKING:
    import openmm


@dataclasses.dataclass(frozen=True)
class LambdaSchedule:
    """Alchemical states, from the fully coupled solute (state 0) to the decoupled one (last state).

    ``electrostatics[k]`` scales the solute's charges and ``sterics[k]`` its soft-core Lennard-Jones coupling to
    the environment in state ``k``. The default turns electrostatics off first (5 states), then sterics (12 more,
    denser where the cavity closes).
    """

    electrostatics: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25) + (0.0,) * 13
    sterics: tuple[float, ...] = (1.0,) * 5 + (0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.2, 0.1, 0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "electrostatics", tuple(float(x) for x in self.electrostatics))
        object.__setattr__(self, "sterics", tuple(float(x) for x in self.sterics))
        if len(self.electrostatics) != len(self.sterics) or len(self.sterics) < 2:
            raise InputError("a lambda schedule needs at least 2 states and as many electrostatics as sterics values")
        if any(not 0.0 <= x <= 1.0 for x in self.electrostatics + self.sterics):
            raise InputError("lambda values must lie in [0, 1]")
        if (self.electrostatics[0], self.sterics[0], self.electrostatics[-1], self.sterics[-1]) != (1, 1, 0, 0):
            raise InputError("a lambda schedule runs from the coupled state (1, 1) to the decoupled state (0, 0)")
        if any(e > 0 and s < 1 for e, s in zip(self.electrostatics, self.sterics)):
            raise InputError("charges must be off before sterics are scaled (a charged, soft-cored solute collapses "
                             "onto its neighbours)")

    def __len__(self) -> int:
        return len(self.sterics)

    def to_dict(self) -> dict[str, list[float]]:
        return {"lambda_electrostatics": list(self.electrostatics), "lambda_sterics": list(self.sterics)}


def alchemical_system(system: openmm.System, solute_atoms: list[int]) -> openmm.System:
    """A copy of ``system`` whose ``solute_atoms`` couple to the rest through ``lambda_electrostatics`` and
    ``lambda_sterics`` (openmmtools ``AbsoluteAlchemicalFactory``).

    Electrostatics are annihilated (the solute's charges, intramolecular ones included, scale with lambda; exact PME
    where the system is periodic); Lennard-Jones is decoupled with a soft core (solute-environment only), so the
    solute keeps its internal sterics. Both legs of a hydration cycle use this, so the intramolecular change cancels.
    """
    alchemy = quiet_import("openmmtools.alchemy")
    factory = alchemy.AbsoluteAlchemicalFactory(alchemical_pme_treatment="exact")
    region = alchemy.AlchemicalRegion(alchemical_atoms=list(solute_atoms), annihilate_electrostatics=True,
                                      annihilate_sterics=False)
    return factory.create_alchemical_system(system, region)


def set_lambdas(context: openmm.Context, electrostatics: float, sterics: float) -> None:
    """Put ``context`` (of an :func:`alchemical_system`) in the alchemical state (electrostatics, sterics)."""
    names = set(context.getParameters().keys())
    for name, value in (("lambda_electrostatics", electrostatics), ("lambda_sterics", sterics)):
        if name in names:
            context.setParameter(name, value)
