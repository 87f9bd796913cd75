"""Trajectory files: mdtraj HDF5 (energies inside) or DCD (energies in a CSV beside it), written atomically."""

from __future__ import annotations

__all__ = ["FORMATS", "write_trajectory", "load_trajectory"]

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from molsamp.errors import InputError
from molsamp.files import atomic_path

if TYPE_CHECKING:
    import mdtraj

    from molsamp.systems import System

FORMATS = (".h5", ".dcd")
"""Trajectory formats by suffix: mdtraj HDF5 (energies inside) or DCD (energies in ``<stem>.energies.csv``)."""


def write_trajectory(output: Path, topology: mdtraj.Topology, xyz: np.ndarray, times: np.ndarray,
                  energies: np.ndarray) -> None:
    """Write positions ``xyz [F, N, 3]`` (nm), times ``[F]`` (ps) and potential energies ``[F]`` (kJ/mol) to
    ``output`` (.h5, or .dcd with ``<stem>.energies.csv``) through temporary files renamed into place."""
    import mdtraj

    if output.suffix == ".h5":
        with atomic_path(output) as temporary, mdtraj.formats.HDF5TrajectoryFile(str(temporary), "w") as file:
            file.topology = topology
            file.write(coordinates=xyz, time=times, potentialEnergy=energies)
    else:
        with atomic_path(output.with_suffix(".energies.csv")) as temporary:
            np.savetxt(temporary, np.column_stack([times, energies]), fmt=("%.6f", "%.10g"), delimiter=",",
                       header="time_ps,potential_energy_kJ_mol", comments="")
        with atomic_path(output) as temporary:
            mdtraj.Trajectory(xyz, topology, time=times).save_dcd(str(temporary))


def _topology(top: System | str | os.PathLike | mdtraj.Topology) -> mdtraj.Topology:
    import mdtraj

    if isinstance(top, mdtraj.Topology):
        return top
    return top.topology if hasattr(top, "topology") else mdtraj.load_topology(str(top))


def load_trajectory(path: str | os.PathLike, top: System | str | os.PathLike | mdtraj.Topology | None = None,
                    ) -> tuple[mdtraj.Trajectory, np.ndarray | None]:
    """A trajectory written by :func:`run_md` and its potential energies ``[n_frames]`` (kJ/mol), None if absent.

    ``top`` (a System, a PDB path or an mdtraj Topology) is required for DCD files; HDF5 files carry their own.
    """
    import mdtraj

    path = Path(path)
    if not path.is_file():
        raise InputError(f"trajectory {str(path)!r} does not exist")
    if path.suffix not in FORMATS:
        raise InputError(f"trajectory {str(path)!r}: unsupported suffix {path.suffix!r}; use one of {FORMATS}")
    if path.suffix == ".dcd" and top is None:
        raise InputError(f"trajectory {str(path)!r}: a DCD file needs a topology (system or PDB file)")
    try:
        topology = None if top is None else _topology(top)
    except (OSError, ValueError) as error:
        raise InputError(f"topology {str(top)!r} cannot be read ({error})".splitlines()[0]) from None
    try:  # a damaged or foreign file makes the HDF5 and DCD readers raise any of these
        if path.suffix == ".h5":
            with mdtraj.formats.HDF5TrajectoryFile(str(path)) as file:
                frames, topology = file.read(), file.topology if topology is None else topology
            xyz, time, energies = frames.coordinates, frames.time, frames.potentialEnergy
            cell_lengths, cell_angles = frames.cell_lengths, frames.cell_angles
        else:
            with mdtraj.formats.DCDTrajectoryFile(str(path)) as file:
                xyz, cell_lengths, cell_angles = file.read()
            xyz, time, energies = xyz / 10.0, None, None  # DCD lengths are in Å
            cell_lengths = None if cell_lengths is None else cell_lengths / 10.0
            if (csv := path.with_suffix(".energies.csv")).is_file():
                table = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
                time, energies = table[:, 0], table[:, 1]
    except (OSError, ValueError, RuntimeError, LookupError, AttributeError) as error:
        detail = (str(error).strip() or type(error).__name__).splitlines()[-1]  # HDF5 errors end in their summary
        raise InputError(f"trajectory {str(path)!r} is not a readable {path.suffix} trajectory "
                         f"({detail})") from None
    if topology is None:
        raise InputError(f"trajectory {str(path)!r} holds no topology; give one (a system or PDB file)")
    if xyz.shape[1] != topology.n_atoms:
        raise InputError(f"trajectory {str(path)!r} has {xyz.shape[1]} atoms but its topology has "
                         f"{topology.n_atoms}")
    trajectory = mdtraj.Trajectory(xyz, topology, time=time, unitcell_lengths=cell_lengths,
                                   unitcell_angles=cell_angles)
    return trajectory, None if energies is None else np.asarray(energies, dtype=np.float64)
