"""The ``molsamp`` command: parses arguments, calls the library, prints. Heavy imports stay inside commands."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import click

from molsamp.errors import MolsampError
from molsamp.free_energy.legs import PADDING
from molsamp.free_energy.neural_hydration import NeuralTISettings
from molsamp.free_energy.windows import Protocol


PARTIAL_FAILURE = 3
"""Exit status of a batch in which some molecules failed (their errors are printed; the others are written)."""


_POSITIVE_INT = click.IntRange(min=1)
_POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)


class _TorchDevice(click.ParamType):
    """A torch device this machine has: cpu, cuda, cuda:1..."""

    name = "device"

    def convert(self, value, param, ctx) -> str:
        import torch

        try:
            device = torch.device(value)
        except RuntimeError:
            self.fail(f"{value!r} is not a torch device (cpu, cuda, cuda:1...)", param, ctx)
        if device.type == "cuda" and not torch.cuda.is_available():
            self.fail(f"{value!r}: this machine has no CUDA GPU", param, ctx)
        return str(value)


class _UserError(click.ClickException):
    """A user mistake: one line on stderr, exit status 2."""

    exit_code = 2


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MolsampError as error:
            raise _UserError(str(error)) from None
        except click.BadParameter as error:  # a value out of range or of the wrong type: one line too
            if isinstance(error, click.MissingParameter):
                raise  # with the usage, which says what is missing
            raise _UserError(error.format_message()) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="molsamp")
def cli() -> None:
    """Sample molecular Boltzmann distributions: reference MD, learned samplers, analysis."""


@cli.command()
def systems() -> None:
    """List the built-in systems."""
    from molsamp.systems import available

    for name, description in available().items():
        click.echo(f"{name:<14} {description}")


INTERRUPTED = 130
"""Exit status of a run stopped by Ctrl-C after it saved a checkpoint (128 + SIGINT, as a shell reports it)."""


@contextlib.contextmanager
def _resumable_run():
    """Turn a run stopped by Ctrl-C (:class:`~molsamp.resumable.RunInterrupted`, raised after its checkpoint) into its
    one-line message on stderr and exit status :data:`INTERRUPTED`."""
    from molsamp.resumable import RunInterrupted

    try:
        yield
    except RunInterrupted as stop:
        click.echo(str(stop), err=True)
        raise SystemExit(INTERRUPTED) from None


@cli.command()
@click.argument("system")
@click.option("--ns", type=float, help="Simulated time in ns.")
@click.option("--ps", type=float, help="Simulated time in ps (default 100 when --ns is not given).")
@click.option("--save-every", type=float, default=1.0, show_default=True, help="Interval between frames (ps).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (velocities and thermostat).")
@click.option("--platform", type=click.Choice(["CPU", "CUDA", "OpenCL", "Reference"]), help="OpenMM platform.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output and discard an unfinished run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Trajectory file: .h5 (default format, with energies) or .dcd (energies in a .csv beside it).")
def md(system: str, ns: float | None, ps: float | None, save_every: float, seed: int, platform: str | None,
       overwrite: bool, quiet: bool, output: Path) -> None:
    """Langevin MD of SYSTEM (a built-in name or a YAML file); an interrupted run resumes when run again.

    Ctrl-C finishes the frame in progress, saves a checkpoint and exits with status 130; run the same command again
    to resume."""
    if ns is not None and ps is not None:
        raise _UserError("give either --ns or --ps, not both")
    duration = ns * 1000.0 if ns is not None else (ps if ps is not None else 100.0)
    from molsamp.md import run_md
    from molsamp.systems import load

    with _resumable_run():
        path = run_md(load(system), output, duration=duration, save_every=save_every, seed=seed, platform=platform,
                      progress=False if quiet else None, overwrite=overwrite)
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("trajectory", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--ramachandran", is_flag=True, help="Plot the phi/psi free-energy surface.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference trajectory: report the Jensen-Shannon divergence against it.")
@click.option("--top", help="Topology for DCD input: a system name, YAML or PDB file.")
@click.option("--bins", type=_POSITIVE_INT, default=36, show_default=True, help="Histogram bins per angle.")
@click.option("--overwrite", is_flag=True, help="Replace an existing plot.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="PNG plot to write.")
def analyze(trajectory: Path, ramachandran: bool, reference: Path | None, top: str | None, bins: int,
            overwrite: bool, output: Path | None) -> None:
    """Summarise TRAJECTORY: frames, energies, phi/psi statistics; prints one JSON line."""
    from molsamp.files import check_output
    from molsamp.trajectories import load_trajectory

    if output is not None and not ramachandran:
        raise _UserError("-o/--output needs a plot to write: add --ramachandran")
    if output is not None:
        check_output(output, overwrite)
    topology = _topology(top)
    with _c_stdout_discarded():
        traj, energies = load_trajectory(trajectory, top=topology)
    summary: dict = {"trajectory": str(trajectory), "frames": traj.n_frames}
    if energies is not None:
        summary["mean_potential_energy_kJ_mol"] = float(energies.mean())
    if ramachandran:
        from molsamp.analysis import plot_ramachandran, ramachandran_js, ramachandran_populations, torsion_ess

        angles = _phi_psi(traj, trajectory)
        phi, psi = angles.T
        summary["populations"] = {k: round(v, 4) for k, v in ramachandran_populations(phi, psi).items()}
        summary["ess_phi"], summary["ess_psi"] = (float(e) for e in torsion_ess(angles))
        reference_angles = None
        if reference is not None:
            with _c_stdout_discarded():
                ref_traj, _ = load_trajectory(reference, top=topology)
            reference_angles = tuple(_phi_psi(ref_traj, reference).T)
            summary["ramachandran_js"] = float(ramachandran_js(phi, psi, *reference_angles, bins=bins))
        if output is not None:
            summary["plot"] = str(plot_ramachandran(phi, psi, output, reference=reference_angles,
                                                    title=trajectory.name))
    click.echo(json.dumps(summary))


@cli.command()
@click.argument("molecules")
@click.option("-n", "--n", "n", type=int, default=300, show_default=True, help="Conformers per molecule.")
@click.option("--md-jumps", "mode", flag_value="md-jumps", default=True,
              help="Langevin MD of all coordinates with model torsion jumps (MH; default, most accurate).")
@click.option("--smc", "mode", flag_value="smc",
              help="Model draws on one rigid geometry annealed to the torsional Boltzmann density by SMC, weighted.")
@click.option("--weighted", "mode", flag_value="weighted", help="Plain importance weights of model draws (fastest).")
@click.option("--mh", "mode", flag_value="mh", help="Independence Metropolis-Hastings chain (equal weights).")
@click.option("--unweighted", "mode", flag_value="unweighted", help="Importance samples resampled to equal weights.")
@click.option("--temperature", type=float, default=300.0, show_default=True, help="K.")
@click.option("--solvent", type=click.Choice(["obc2", "vacuum"]), default="obc2", show_default=True)
@click.option("--forcefield", type=click.Choice(["gaff2", "gaff"]), default="gaff2", show_default=True)
@click.option("--relax-steps", type=int, default=0, show_default=True,
              help="Minimiser steps per conformer with the torsions restrained (relaxed energies and geometries).")
@click.option("--stereo", type=click.Choice(["first", "all"]), default="first", show_default=True,
              help="Unassigned stereocentres: sample the first stereoisomer (said on stderr), or every isomer, each "
                   "its own ensemble named 'NAME [isomer i/k]'.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), help="Torsion model checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output and discard an unfinished run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG of each heavy-atom rotatable torsion's distribution against as many RDKit ETKDG conformers; "
                   "for a batch, one PNG per molecule, PLOT's name with '-<k>' (k = 1, 2, ...) added.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="SDF to write; a JSON summary (one record per molecule) is written beside it as OUTPUT.json.")
def conformers(molecules: str, n: int, mode: str, temperature: float, solvent: str, forcefield: str,
               relax_steps: int, stereo: str, model: Path | None, seed: int, overwrite: bool, quiet: bool,
               plot: Path | None, output: Path) -> None:
    """Boltzmann conformer ensembles of MOLECULES (a SMILES, or a .smi/.csv file) as SDF.

    Every record carries the input SMILES and the isomeric SMILES sampled. Each molecule is written as soon as it
    is done (to OUTPUT.partial); an interrupted run resumes after its last finished molecule when the same command
    is run again. Exit status: 0 when every molecule was sampled; 3 when some failed (the others are written, the
    failures listed on stderr); 2 when none could be sampled, or on a usage error; 130 when interrupted.
    """
    import hashlib

    from tqdm import tqdm

    from molsamp.conformers import generate, read_smiles
    from molsamp.conformers.generate import DEFAULT_MODEL, check_options
    from molsamp.conformers.etkdg import plot_torsions_against_etkdg
    from molsamp.conformers.io import ResumableSDF, sdf_text
    from molsamp.conformers.model import load_model
    from molsamp.files import check_output
    from molsamp.stereo import expand_stereo

    if relax_steps and mode == "md-jumps":
        raise _UserError("--relax-steps applies to the rigid torsion modes (--smc, --weighted, --mh, --unweighted)")
    check_options(n, mode, temperature, relax_steps)
    writer = ResumableSDF(output, overwrite)
    batch = expand_stereo(read_smiles(molecules), stereo)
    plots = [_numbered(plot, k, len(batch)) for k in range(len(batch))] if plot is not None else []
    model = model or DEFAULT_MODEL
    network = load_model(model)
    settings = {"n": n, "mode": mode, "temperature": temperature, "solvent": solvent, "forcefield": forcefield,
                "relax_steps": relax_steps, "seed": seed, "stereo": stereo, "molecules": batch,
                "model_sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest()}
    finished = len(writer.start(settings))
    for path in plots[finished:]:
        check_output(path, overwrite)
    bar = tqdm(batch[finished:], initial=finished, total=len(batch), unit="molecule",
               disable=quiet or len(batch) == 1 or not sys.stderr.isatty())
    try:
        for index, (name, input_smiles, isomeric_smiles) in enumerate(bar, start=finished):
            record = {"name": name, "smiles": input_smiles, "isomeric_smiles": isomeric_smiles, "mode": mode}
            try:
                ensemble = generate(isomeric_smiles, n=n, mode=mode, model=network, temperature=temperature,
                                    solvent=solvent, forcefield=forcefield, seed=seed, name=name,
                                    relax_steps=relax_steps)
            except MolsampError as error:
                writer.add({**record, "n": 0, "error": str(error)})
                if len(batch) > 1:
                    click.echo(f"failed {name}: {error}", err=True)
                continue
            ensemble.SetProp("molsamp_input_smiles", input_smiles)
            properties = ensemble.GetPropsAsDict()
            record.update(isomeric_smiles=properties["molsamp_isomeric_smiles"], n=n, ess=properties["molsamp_ess"],
                          acceptance=properties.get("molsamp_acceptance"), torsions=properties["molsamp_torsions"])
            writer.add(record, sdf_text(ensemble))
            _report_ensemble(record)
            _report_stereo(name, input_smiles, record["isomeric_smiles"], stereo, "sampled")
            if plots:
                try:
                    click.echo(f"wrote {plot_torsions_against_etkdg(ensemble, plots[index], seed=seed)}")
                except MolsampError as error:
                    click.echo(f"no plot for {name}: {error}", err=True)
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"interrupted: {writer.saved()} of {len(batch)} molecules are kept in {writer.partial}; "
                   "run the same command again to resume", err=True)
        click.get_current_context().exit(INTERRUPTED)
    failures = sum("error" in record for record in writer.records)
    if failures == len(batch):
        writer.discard()
        raise _UserError(writer.records[0]["error"] if len(batch) == 1
                         else f"none of the {len(batch)} molecules of {molecules!r} could be sampled")
    writer.finish()
    click.echo(f"wrote {output} and {writer.summary}"
               + (f" ({failures} of {len(batch)} molecules failed)" if failures else ""))
    if failures:
        click.get_current_context().exit(PARTIAL_FAILURE)


def _numbered(path: Path, index: int, count: int) -> Path:
    """``path`` itself for a single molecule, else ``<stem>-<index + 1><suffix>``."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def _report_stereo(name: str, smiles: str, isomeric_smiles: str, stereo: str, verb: str) -> None:
    """On stderr, which stereoisomer is ``verb`` (sampled, computed) where ``smiles`` leaves stereo unassigned and
    ``--stereo first`` chose it. An unreadable SMILES comes back from ``expand_stereo`` as it was: nothing to say."""
    from molsamp.stereo import stereoisomers

    if stereo == "first" and isomeric_smiles != smiles and (isomers := len(stereoisomers(smiles, "all"))) > 1:
        click.echo(f"stereo {name}: {smiles} leaves stereo unassigned; {verb} {isomeric_smiles}, the first of its "
                   f"{isomers} stereoisomers (--stereo all enumerates them)", err=True)


def _report_ensemble(record: dict) -> None:
    """The one-line summary of a conformer ensemble on stdout; on stderr, what a molecule without rotatable torsions
    gets."""
    name, mode = record["name"], record["mode"]
    click.echo(f"{name}: {record['n']} conformers, {record['torsions']} torsions, ESS {record['ess']:.1f}"
               + (f", MH acceptance {record['acceptance']:.2f}" if record["acceptance"] is not None else "")
               + (" (MD alone)" if record["torsions"] == 0 and mode == "md-jumps" else ""))
    if record["torsions"] == 0 and mode != "md-jumps":
        click.echo(f"note {name}: no rotatable torsion, so --{mode} keeps one rigid geometry: its {record['n']} "
                   "conformers are identical (the default --md-jumps samples bonds, angles and rings by MD)", err=True)


@cli.command()
@click.argument("molecules")
@click.option("--method", type=click.Choice(["mbar", "neural-ti"]), default="mbar", show_default=True,
              help="Free-energy estimator: alchemical MBAR, or neural thermodynamic integration for small rigid "
                   "solutes (every atom within three bonds of every other: methane, water, ammonia, methanol...).")
@click.option("--forcefield", type=click.Choice(["gaff2", "gaff"]), default="gaff2", show_default=True,
              help="Solute force field (gaff is GAFF 1.81, as in FreeSolv).")
@click.option("--charges", type=click.Choice(["am1bcc", "am1bcc-fast"]), default="am1bcc", show_default=True,
              help="am1bcc: standard AM1-BCC (AM1-optimised geometry); am1bcc-fast: at the MMFF94 geometry, no AM1 "
                   "optimisation.")
@click.option("--scheduler", help="Address of a running Dask scheduler (tcp://host:8786); default: a local pool.")
@click.option("--workers", type=int, help="Local worker processes, at least 1 (default: one per core).")
@click.option("--temperature", type=float, default=Protocol.temperature, show_default=True, help="K.")
@click.option("--padding", type=float, default=PADDING, show_default=True, help="Water around the solute (nm).")
@click.option("--equilibration-ps", type=float, default=Protocol.equilibration, show_default=True,
              help="Constant-pressure equilibration of the water box.")
@click.option("--window-equilibration-ps", type=float, default=Protocol.window_equilibration, show_default=True,
              help="Discarded start of each lambda window.")
@click.option("--production-ps", type=float, default=Protocol.production, show_default=True,
              help="Sampling per lambda window.")
@click.option("--stereo", type=click.Choice(["first", "all"]), default="first", show_default=True,
              help="Unassigned stereocentres: compute the first stereoisomer (said on stderr), or every isomer, each "
                   "its own record named 'NAME [isomer i/k]'.")
@click.option("--box", type=_POSITIVE_FLOAT, help=f"neural-ti: edge of the cube filled with water (nm), before MD at "
              f"1 bar sets its volume [default: {NeuralTISettings.box}].")
@click.option("--training-steps", type=_POSITIVE_INT,
              help=f"neural-ti: score-matching steps [default: {NeuralTISettings.steps}].")
@click.option("--end-frames", type=_POSITIVE_INT,
              help=f"neural-ti: MD frames of each end state [default: {NeuralTISettings.end_frames}].")
@click.option("--windows", type=_POSITIVE_INT, help=f"neural-ti: MD windows along the learned path, an even number "
              f"[default: {NeuralTISettings.windows}], of --window-frames frames "
              f"[default: {NeuralTISettings.window_frames}].")
@click.option("--window-frames", type=_POSITIVE_INT, hidden=True)
@click.option("--device", type=_TorchDevice(),
              help="neural-ti: torch device for training and energies (default: cuda when available, else cpu).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--platform", type=click.Choice(["CPU", "CUDA", "OpenCL", "Reference"]), help="OpenMM platform.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where finished windows are kept for resuming (default: the molsamp cache).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file: one record (or a list of records for a batch).")
def solvation(molecules: str, method: str, forcefield: str, charges: str, scheduler: str | None,
              workers: int | None, temperature: float, padding: float, equilibration_ps: float,
              window_equilibration_ps: float, production_ps: float, stereo: str, box: float | None,
              training_steps: int | None, end_frames: int | None, windows: int | None, window_frames: int | None,
              device: str | None, seed: int, platform: str | None, workdir: Path | None, overwrite: bool, quiet: bool,
              output: Path | None) -> None:
    """Hydration free energies of MOLECULES (a SMILES, or a .smi/.csv file), in kcal/mol, in TIP3P water: by
    alchemical decoupling and MBAR, or by neural TI (a learned coupling path, then TI along it from MD at its
    windows); an interrupted run resumes where it stopped when run again.

    Every record carries the input SMILES and the isomeric SMILES computed. Exit status: 0 when every molecule was
    computed; 3 when some failed (the others are written, the failures listed on stderr); 2 when none could be
    computed, or on a usage error.
    """
    from molsamp.files import atomic_write, check_output
    from molsamp.free_energy import PoorOverlapWarning, hydration_free_energies
    from molsamp.io import read_smiles
    from molsamp.stereo import expand_stereo

    if output is not None:
        check_output(output, overwrite)
    protocol = Protocol(temperature=temperature, equilibration=equilibration_ps,
                        window_equilibration=window_equilibration_ps, production=production_ps)
    neural = {"box": box, "steps": training_steps, "end_frames": end_frames, "windows": windows,
              "window_frames": window_frames}
    if method == "mbar" and (device is not None or any(value is not None for value in neural.values())):
        raise _UserError("--box, --training-steps, --end-frames, --windows, --window-frames and --device are for "
                         "--method neural-ti")
    if method == "neural-ti" and (scheduler is not None or workers is not None):
        raise _UserError("--scheduler and --workers are for --method mbar (neural TI runs in this process)")
    batch = expand_stereo(read_smiles(molecules), stereo)
    for name, smiles, isomeric_smiles in batch:
        _report_stereo(name, smiles, isomeric_smiles, stereo, "computing")
    if method == "neural-ti":
        settings = NeuralTISettings(temperature=temperature, seed=seed,
                                    **{key: value for key, value in neural.items() if value is not None})
        records = [_neural_ti_record(isomeric, settings, forcefield, charges, workdir, platform, device, quiet)
                   for _, _, isomeric in batch]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PoorOverlapWarning)  # each record lists its own; printed below
            records = hydration_free_energies([isomeric for _, _, isomeric in batch], method=method,
                                              forcefield=forcefield, charges=charges, protocol=protocol,
                                              padding=padding, seed=seed, workdir=workdir, scheduler=scheduler,
                                              n_workers=workers, platform=platform, progress=False if quiet else None)
    for (name, smiles, _), record in zip(batch, records):
        record.update(name=name, smiles=smiles)  # the library's record holds the isomeric SMILES it computed
        if "error" in record:
            if len(records) > 1:
                click.echo(f"failed {name}: {record['error']}", err=True)
        else:
            for note in record.get("warnings", []):
                click.echo(f"warning {name}: {note}", err=True)
            click.echo(f"{name}: dG_hyd = {record['dG_kcal_mol']:.2f} +- {record['dG_err_kcal_mol']:.2f} kcal/mol "
                       f"({method}, {forcefield.upper()}/AM1-BCC, TIP3P, {temperature:g} K)")
    if output is not None:
        atomic_write(output, json.dumps(records[0] if len(records) == 1 else records, indent=1) + "\n")
        click.echo(f"wrote {output}")
    failures = sum("error" in record for record in records)
    if failures == len(records):
        raise _UserError(records[0]["error"] if len(records) == 1
                         else f"no hydration free energy of {molecules!r} could be computed")
    if failures:
        click.get_current_context().exit(PARTIAL_FAILURE)


def _neural_ti_record(smiles: str, settings, forcefield: str, charges: str, workdir: Path | None,
                      platform: str | None, device: str | None, quiet: bool) -> dict:
    """The neural-TI record of one molecule, or ``{"smiles", "error"}`` when it cannot be computed."""
    from molsamp.errors import MolsampError
    from molsamp.free_energy.neural_hydration import neural_ti_hydration

    try:
        return neural_ti_hydration(smiles, settings, forcefield=forcefield, charges=charges, workdir=workdir,
                                   platform=platform, device=device, progress=False if quiet else None)
    except MolsampError as error:
        return {"smiles": smiles, "error": str(error)}


@cli.command()
@click.argument("system")
@click.option("--sampler", type=click.Choice(["torsion-jumps", "timewarp"]),
              help="MD with uniform phi/psi/chi jumps, or learned Timewarp proposals; both exact through "
                   "Metropolis-Hastings (default: timewarp with --model, else torsion-jumps).")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path),
              help="Timewarp checkpoint (default: the shipped models/timewarp-peptides.pt).")
@click.option("--steps", type=int, default=1000, show_default=True,
              help="Steps of every chain (torsion-jumps: rounds of MD and jumps).")
@click.option("--chains", type=int, default=16, show_default=True, help="Parallel chains.")
@click.option("--md-steps", type=int, default=50, show_default=True, help="torsion-jumps: MD steps per round.")
@click.option("--explore", type=float, metavar="KT",
              help="timewarp: BIASED exploration, accepting every proposal whose energy rises by less than KT.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, help="timewarp: OpenMM energy worker processes (default: one per core).")
@click.option("--platform", type=click.Choice(["CPU", "CUDA", "OpenCL", "Reference"]), help="OpenMM platform.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output and discard an unfinished run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Chain trajectory (.h5): one frame per step holding every chain; a .json summary and a "
                   "Ramachandran plot are written beside it.")
def accelerate(system: str, sampler: str | None, model: Path | None, steps: int, chains: int, md_steps: int,
               explore: float | None, seed: int, workers: int | None, platform: str | None, overwrite: bool,
               quiet: bool, output: Path) -> None:
    """Sample the peptide SYSTEM with parallel chains that stay exact through Metropolis-Hastings: MD with torsion
    jumps, or learned Timewarp proposals. An interrupted run resumes when run again.

    Ctrl-C finishes the step in progress, saves a checkpoint and exits with status 130; run the same command again
    to resume. The summary's ess_per_s counts the wall time of every session of a resumed run."""
    from molsamp.systems import load, load_flexible
    from molsamp.timewarp.chains import DEFAULT_MODEL, run_chains

    if output.suffix != ".h5":
        raise _UserError(f"output {str(output)!r}: chains are written as HDF5; use a .h5 name")
    progress = False if quiet else None
    if (sampler or ("timewarp" if model else "torsion-jumps")) == "timewarp":
        from molsamp.timewarp.model import load_model

        flow = load_model(model or DEFAULT_MODEL)
        peptide = load(system, constraints=None)
        with _resumable_run():
            summary = run_chains(peptide, flow, output, n_steps=steps, n_chains=chains, seed=seed,
                                 exploration=explore, n_workers=workers, platform=platform, progress=progress,
                                 overwrite=overwrite, plot=True)
    else:
        from molsamp.peptide_jumps import run_jump_chains

        if model is not None or explore is not None or workers is not None:
            raise _UserError("--model, --explore and --workers belong to --sampler timewarp")
        peptide = load_flexible(system)  # a jump then needs no constraint projection
        with _resumable_run():
            summary = run_jump_chains(peptide, output, steps, n_chains=chains, md_steps=md_steps, seed=seed,
                                      platform=platform, progress=progress, overwrite=overwrite, plot=True)
    click.echo(json.dumps({k: v for k, v in summary.items() if k != "acceptance_per_chain"}))


@cli.command()
@click.argument("system")
@click.option("-n", "--n", "n", type=_POSITIVE_INT, default=10000, show_default=True, help="Flow samples.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Flow checkpoint (default: the shipped models/<system>-flow.pt).")
@click.option("--refine", type=click.Choice(["smc"]),
              help="Anneal the flow's samples to the target by SMC with random-walk MH moves (weighted, exact; "
                   "each move costs an evaluation of the flow's density per sample: an ODE solve for an equivariant "
                   "flow, so molecules only with a flow in internal coordinates).")
@click.option("--smc-betas", type=_POSITIVE_INT, default=5, show_default=True,
              help="With --refine smc: equal steps in beta from the flow to the target.")
@click.option("--smc-moves", type=_POSITIVE_INT, default=2, show_default=True,
              help="With --refine smc: MH moves of every sample per beta.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=_POSITIVE_INT, default=500, show_default=True,
              help="Samples per ODE solve (memory).")
@click.option("--precision", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Arithmetic of the flow's ODE solves (float32's rounding is far below the solver's error).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG of energy and interatomic-distance histograms (with --reference samples if given); for a "
                   "peptide also <plot>-ramachandran.png.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference samples (.npz with x and energy_kT, e.g. data/flows/<system>.npz) for --plot "
                   "and the energy W1.")
@click.option("--temperature", type=_POSITIVE_FLOAT,
              help="K, for a crystal (ice-xi-16, ice-xi-128): the flow trained at this temperature.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Samples (.npz): x, log_q, energy_kT, log_w and log_Z (a crystal's also box and temperature).")
def sample(system: str, n: int, model: Path | None, refine: str | None, smc_betas: int, smc_moves: int, seed: int,
           batch_size: int, precision: str, plot: Path | None, reference: Path | None, temperature: float | None,
           overwrite: bool, quiet: bool, output: Path) -> None:
    """Draw independent samples of SYSTEM (dw4, lj13, lj55, ala2-vacuum; ice-xi-16, ice-xi-128 with
    --temperature) from its Boltzmann generator, with exact log-densities and importance weights; prints the
    reweighting ESS (and a crystal's free energy)."""
    import torch

    from molsamp.files import check_output
    from molsamp.flows.crystals import crystal_samples, is_crystal
    from molsamp.flows.diagnostics import energy_w1, plot_flow_samples, plot_flow_ramachandran
    from molsamp.flows.generator import sample as draw
    from molsamp.samples import Samples
    from molsamp.systems import load

    if output.suffix != ".npz":
        raise _UserError(f"output {str(output)!r}: samples are written as .npz; use a .npz name")
    check_output(output, overwrite)
    if plot is not None:
        check_output(plot, overwrite)
    target_system = load(system)
    if is_crystal(target_system):
        if temperature is None or refine or plot or reference:
            raise _UserError(f"{system} is a crystal: give --temperature; --refine, --plot and --reference are "
                             "for equivariant flows")
        samples = crystal_samples(target_system, temperature, n, model=model, seed=seed, batch_size=batch_size,
                                  progress=False if quiet else None)
        samples.to_npz(output)
        click.echo(f"ESS {samples.info['ess_percent']:.1f}% ({samples.info['ess']:.0f} of {len(samples)} samples); "
                   f"free energy {samples.info['free_energy_kT']:.3f} +- {samples.info['free_energy_error_kT']:.3f} "
                   f"kT ({samples.info['free_energy_per_molecule_kT']:.4f} kT per molecule); wrote {output}")
        click.echo(json.dumps({k: v for k, v in samples.info.items() if isinstance(v, (int, float, str))}))
        return
    if temperature is not None:
        raise _UserError("--temperature is for crystals (ice-xi-16, ice-xi-128)")
    references = Samples.from_npz(reference) if reference is not None else None
    samples = draw(target_system, n, model=model, refine=refine, seed=seed, batch_size=batch_size,
                   progress=False if quiet else None, smc_betas=smc_betas, smc_moves=smc_moves,
                   dtype=getattr(torch, precision))
    if references is not None:
        samples.info["energy_w1"] = energy_w1(samples, references.u)
    samples.to_npz(output)
    if plot is not None:
        title = f"{system}: ESS {samples.info['ess_percent']:.1f}%"
        plot_flow_samples(samples, plot, references, title=title)
        if target_system.analytic is None:
            ramachandran = plot.with_name(f"{plot.stem}-ramachandran.png")
            plot_flow_ramachandran(samples, target_system.topology, ramachandran, references, title=title)
            plot = f"{plot} and {ramachandran}"
    click.echo(f"ESS {samples.info['ess_percent']:.1f}% ({samples.info['ess']:.0f} of {len(samples)} samples, "
               f"{samples.info['dropped']} dropped); wrote {output}" + (f" and {plot}" if plot else ""))
    click.echo(json.dumps({k: v for k, v in samples.info.items() if isinstance(v, (int, float, str))}))


@cli.group()
def train() -> None:
    """Train the learned samplers."""


@train.command("conformers")
@click.option("--smiles", "smiles_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Training molecules: a .smi or .csv file.")
@click.option("--steps", type=_POSITIVE_INT, default=3000, show_default=True, help="Optimisation steps.")
@click.option("--molecules-per-step", type=_POSITIVE_INT, default=8, show_default=True)
@click.option("--samples", type=_POSITIVE_INT, default=64, show_default=True,
              help="Torsion samples per molecule and step.")
@click.option("--learning-rate", type=_POSITIVE_FLOAT, default=1e-3, show_default=True)
@click.option("--hidden", type=_POSITIVE_INT, default=64, show_default=True, help="Width of the graph network.")
@click.option("--components", type=_POSITIVE_INT, default=6, show_default=True,
              help="Von Mises components per torsion.")
@click.option("--temperature", type=_POSITIVE_FLOAT, default=300.0, show_default=True, help="K.")
@click.option("--solvent", type=click.Choice(["obc2", "vacuum"]), default="obc2", show_default=True)
@click.option("--forcefield", type=click.Choice(["gaff2", "gaff"]), default="gaff2", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.pt); a training log (.log.jsonl) is written beside it.")
def train_conformers(smiles_file: Path, steps: int, molecules_per_step: int, samples: int, learning_rate: float,
                     hidden: int, components: int, temperature: float, solvent: str, forcefield: str, seed: int,
                     overwrite: bool, output: Path) -> None:
    """Train the von Mises torsion model by reverse KL against GAFF/AM1-BCC torsional Boltzmann densities."""
    import torch
    from tqdm import tqdm

    from molsamp.files import check_output
    from molsamp.io import read_smiles
    from molsamp.conformers.model import TorsionMixtureNet
    from molsamp.conformers.target import TorsionalTarget
    from molsamp.conformers.training import train_reverse_kl
    from molsamp.systems import from_smiles

    check_output(output, overwrite)
    torch.manual_seed(seed)
    targets = []
    for name, smiles in tqdm(read_smiles(smiles_file), desc="parametrising", disable=not sys.stderr.isatty()):
        try:
            system = from_smiles(smiles, forcefield=forcefield, solvent=solvent, temperature=temperature, name=name)
            targets.append(TorsionalTarget(system, n_workers=0))
        except MolsampError as error:
            click.echo(f"skipped {name}: {error}", err=True)
    model = TorsionMixtureNet(hidden=hidden, components=components)
    log_path = output.with_suffix(".log.jsonl")
    with open(log_path, "w", buffering=1) as log:  # line-buffered: the log can be followed while training runs
        train_reverse_kl(model, targets, steps=steps, molecules_per_step=molecules_per_step,
                         samples_per_molecule=samples, learning_rate=learning_rate, seed=seed, checkpoint=output,
                         log=lambda record: log.write(json.dumps(record) + "\n"))
    click.echo(f"wrote {output} ({len(targets)} molecules) and {log_path}")


@train.command("timewarp")
@click.option("--systems", required=True,
              help="Comma-separated training systems (ala2, peptide:G, ...), each with an MD trajectory "
                   "<md-folder>/<name>.h5 ('peptide:G' is looked up as peptide-G.h5).")
@click.option("--validation", default="", help="Comma-separated held-out systems, likewise.")
@click.option("--md-folder", type=click.Path(file_okay=False, path_type=Path), default=Path("data/peptides/md"),
              show_default=True, help="Folder of the MD trajectories (made by data/peptides/make_md.py).")
@click.option("--tau", default="100ps", show_default=True, help="Time between the paired frames (ps or ns).")
@click.option("--steps", type=_POSITIVE_INT, default=5000, show_default=True, help="Optimisation steps.")
@click.option("--batch-size", type=_POSITIVE_INT, default=32, show_default=True)
@click.option("--learning-rate", type=_POSITIVE_FLOAT, default=5e-4, show_default=True)
@click.option("--hidden", type=_POSITIVE_INT, default=64, show_default=True, help="Transformer width.")
@click.option("--couplings", type=_POSITIVE_INT, default=6, show_default=True, help="Affine coupling layers.")
@click.option("--acceptance-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of Timewarp's acceptance loss (Metropolis-Hastings acceptance under each peptide's "
                   "OpenMM energy, no constraints) added to the likelihood; 0 trains by likelihood alone.")
@click.option("--init", "initial", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from this checkpoint (its --hidden and --couplings) instead of a new model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.pt); a training log (.log.jsonl) is written beside it.")
def train_timewarp(systems: str, validation: str, md_folder: Path, tau: str, steps: int, batch_size: int,
                   learning_rate: float, hidden: int, couplings: int, acceptance_weight: float,
                   initial: Path | None, seed: int, overwrite: bool, output: Path) -> None:
    """Train a Timewarp proposal p(x(t + tau) | x(t)) on MD pairs of several peptides: by maximum likelihood, and
    with --acceptance-weight also for Metropolis-Hastings acceptance (Timewarp's second stage)."""
    import torch

    from molsamp.systems import load
    from molsamp.timewarp.data import pairs_from_md
    from molsamp.timewarp.model import TimewarpFlow, load_model
    from molsamp.files import check_output
    from molsamp.timewarp.training import train_timewarp as fit

    check_output(output, overwrite)
    tau_ps = _picoseconds(tau)

    def pairs(names: str) -> list:
        found = []
        for name in filter(None, (n.strip() for n in names.split(","))):
            path = md_folder / f"{name.replace('peptide:', 'peptide-')}.h5"
            if not path.is_file():
                raise _UserError(f"no MD trajectory for {name!r} at {str(path)!r}; run data/peptides/make_md.py")
            found.append(pairs_from_md(name, path, tau_ps))
        return found

    training, held_out = pairs(systems), pairs(validation)
    if not training:
        raise _UserError("--systems names no system")
    torch.manual_seed(seed)
    model = load_model(initial) if initial is not None else TimewarpFlow(hidden=hidden, couplings=couplings)
    energies = {}
    if acceptance_weight > 0:
        energies = {pairs.name: load(pairs.name, constraints=None).target(n_workers=0) for pairs in training}
    log_path = output.with_suffix(".log.jsonl")
    with open(log_path, "w", buffering=1) as log:  # line-buffered: the log can be followed while training runs
        fit(model, training, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
            validation=held_out, checkpoint=output, log=lambda record: log.write(json.dumps(record) + "\n"),
            energies=energies, acceptance_weight=acceptance_weight)
    click.echo(f"wrote {output} ({sum(len(p) for p in training)} pairs of {len(training)} systems) and {log_path}")


@train.command("flow")
@click.argument("system")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Training data of a molecule: an MD trajectory (.h5) of the system, e.g. from "
                   "data/flows/make_md.py. Particle systems make their own by MCMC.")
@click.option("--chains", type=_POSITIVE_INT, default=1000, show_default=True,
              help="Parallel MCMC chains making the training data.")
@click.option("--samples-per-chain", type=_POSITIVE_INT, default=10, show_default=True)
@click.option("--burn-in", type=_POSITIVE_INT, default=5000, show_default=True, help="MCMC steps before sampling.")
@click.option("--steps", type=_POSITIVE_INT, default=4000, show_default=True, help="Optimisation steps.")
@click.option("--batch-size", type=_POSITIVE_INT,
              help="Samples per step [default: 256 for equivariant flows, 32 for crystals].")
@click.option("--hidden", type=_POSITIVE_INT,
              help="Width of the EGNN or of a coupling's conditioner [default: 64; internal coordinates 128; "
                   "crystals: MLP 256, attention 64].")
@click.option("--conditioner", type=click.Choice(["mlp", "attention"]),
              help="Crystals: a coupling's conditioner, an MLP over coordinates or attention over molecules "
                   "[default: mlp up to 32 molecules, attention above].")
@click.option("--conditioner-precision", type=click.Choice(["float32", "float64"]),
              help="Crystals: what the conditioners compute in (float32 is about 3 times faster on a CPU; the "
                   "splines and log-densities stay float64) [default: float32 for attention, float64 for mlp].")
@click.option("--split", type=click.Choice(["molecules", "coordinates"]),
              help="Crystals, attention conditioner: each coupling moves all coordinates of half of the molecules, "
                   "or a random half of all coordinates [default: coordinates].")
@click.option("--layers", type=_POSITIVE_INT,
              help="EGNN layers or couplings [default: 4; internal coordinates and crystals 8].")
@click.option("--architecture", type=click.Choice(["equivariant", "internal"]), default="equivariant",
              show_default=True,
              help="Molecules: an equivariant flow (flow matching) or a spline flow over bond lengths, angles and "
                   "torsions (maximum likelihood, then --energy-steps).")
@click.option("--energy-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="--architecture internal: steps of maximum likelihood plus the reverse KL to the force field "
                   "after the --steps of maximum likelihood.")
@click.option("--temperature", type=_POSITIVE_FLOAT,
              help="K, for a crystal (ice-xi-16, ice-xi-128): trained at this temperature, its prior fitted to "
                   "--md-ps of the project's MD there.")
@click.option("--md-ps", type=_POSITIVE_FLOAT, default=100.0, show_default=True,
              help="Crystals: ps of MD whose frames (one per 0.2 ps) fit the prior.")
@click.option("--prior", type=click.Choice(["harmonic", "md"]),
              help="Crystals: the prior's covariance, the harmonic one at the energy minimum mixed with the MD "
                   "frames' (harmonic), or the frames' alone (md) [default: harmonic].")
@click.option("--learning-rate", type=_POSITIVE_FLOAT, default=1e-3, show_default=True)
@click.option("--ema", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="Equivariant and internal-coordinate flows: save an exponential moving average of the weights "
                   "with this decay per step (e.g. 0.999) instead of the last weights.")
@click.option("--eval-samples", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Flow samples drawn after training to measure the ESS for the model card.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--init", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Continue training this checkpoint of the same system (its architecture and prior are kept; "
                   "the card adds up the training time).")
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.pt); a training log (.log.jsonl) is written beside it.")
def train_flow(system: str, data: Path | None, chains: int, samples_per_chain: int, burn_in: int, steps: int,
               batch_size: int | None, hidden: int | None, conditioner: str | None,
               conditioner_precision: str | None, split: str | None, layers: int | None, architecture: str,
               energy_steps: int, temperature: float | None, md_ps: float, prior: str | None, learning_rate: float,
               ema: float | None, eval_samples: int, seed: int, init: Path | None, overwrite: bool,
               output: Path) -> None:
    """Train a Boltzmann generator: an equivariant flow for a particle system (dw4, lj13, lj55; reference data from
    the project's own MCMC) or a small molecule (ala2-vacuum; --data from the project's MD), by equivariant flow
    matching, or for a molecule a flow in internal coordinates by maximum likelihood (--architecture internal); a
    crystal flow for ice (ice-xi-16, ice-xi-128, with --temperature), by reverse KL on the energy."""
    import time

    import torch

    from molsamp.files import check_output
    from molsamp.flows.crystals import is_crystal
    from molsamp.flows.generator import (
        check_architecture,
        flow_target,
        importance_samples,
        load_flow,
        mirror_fold,
        reference_samples,
        save_flow,
        trajectory_samples,
    )
    from molsamp.flows.generator import train_flow as fit
    from molsamp.systems import load

    check_output(output, overwrite)
    target_system = load(system)
    if is_crystal(target_system):
        if temperature is None or data is not None or ema is not None:
            raise _UserError(f"{system} is a crystal: give --temperature; --data and --ema are for equivariant "
                             "flows")
        if init is not None and any(option is not None for option in (hidden, conditioner, conditioner_precision,
                                                                      split, layers, prior)):
            raise _UserError("--init keeps the flow's architecture and prior: --hidden, --layers, --conditioner, "
                             "--conditioner-precision, --split and --prior cannot change them")
        float32 = None if conditioner_precision is None else conditioner_precision == "float32"
        _train_crystal(target_system, temperature, steps, batch_size or 32, hidden, conditioner, float32,
                       split or "coordinates", layers or 8, md_ps, prior or "harmonic", learning_rate, eval_samples,
                       seed, init, output)
        return
    if any(option is not None for option in (temperature, conditioner, conditioner_precision, split, prior)):
        raise _UserError("--temperature, --conditioner, --conditioner-precision, --split and --prior are for "
                         "crystals (ice-xi-16, ice-xi-128)")
    check_architecture(target_system, architecture, energy_steps)  # before any data are made
    batch_size = batch_size or 256
    start_flow = None if init is None else load_flow(init, target_system)
    earlier = {} if start_flow is None else start_flow.metadata
    log_path = output.with_suffix(".log.jsonl")
    with open(log_path, "w", buffering=1) as log:  # line-buffered: the log can be followed while training runs
        def record(entry: dict) -> None:
            log.write(json.dumps(entry) + "\n")

        start = time.perf_counter()
        if data is None:
            samples = reference_samples(target_system, chains, samples_per_chain, burn_in=burn_in, seed=seed)
            data_card = {key: samples.info[key] for key in ("sampler", "chains", "burn_in", "thin", "step",
                                                              "acceptance", "js_halves", "seed")}
        else:
            samples = trajectory_samples(target_system, data)
            data_card = samples.info
        record({"reference_data": len(samples), **data_card, "seconds": time.perf_counter() - start})
        start = time.perf_counter()
        flow = fit(target_system, samples, steps=steps, batch_size=batch_size, hidden=hidden, layers=layers,
                   learning_rate=learning_rate, seed=seed, log=record, init=start_flow, architecture=architecture,
                   energy_steps=energy_steps, average=ema)
        command = "molsamp train flow " + " ".join(sys.argv[3:])
        card = {"data": {"samples": len(samples), **data_card},
                "training_seconds": earlier.get("training_seconds", 0.0) + time.perf_counter() - start,
                "command": f"{earlier['command']}; then {command}" if "command" in earlier else command}
        if eval_samples:
            measured = importance_samples(flow, flow_target(target_system), eval_samples,
                                          torch.Generator().manual_seed(seed + 1),
                                          fold=mirror_fold(flow, target_system))
            card["ess_percent"] = measured.info["ess_percent"]
            card["ess_samples"] = eval_samples
            record({"ess_percent": card["ess_percent"], "samples": eval_samples})
        save_flow(flow.float(), output, target_system, **card)
    click.echo(f"wrote {output} and {log_path}" + (f"; ESS {card['ess_percent']:.1f}% of {eval_samples} samples"
                                                   if eval_samples else ""))


def _train_crystal(system, temperature: float, steps: int, batch_size: int, hidden: int | None,
                   conditioner: str | None, float32_conditioner: bool | None, split: str, layers: int,
                   md_ps: float, prior: str, learning_rate: float, eval_samples: int, seed: int,
                   init: Path | None, output: Path) -> None:
    from molsamp.flows.crystals import crystal_samples, load_crystal_flow, save_crystal_flow, train_crystal_system

    start_flow = None if init is None else load_crystal_flow(init, system, temperature)
    log_path = output.with_suffix(".log.jsonl")
    with open(log_path, "w", buffering=1) as log:  # line-buffered: the log can be followed while training runs
        flow, card = train_crystal_system(system, temperature, steps=steps, batch_size=batch_size, hidden=hidden,
                                          layers=layers, learning_rate=learning_rate, seed=seed,
                                          conditioner=conditioner, float32_conditioner=float32_conditioner,
                                          split=split, md_picoseconds=md_ps, prior=prior, init=start_flow,
                                          log=lambda entry: log.write(json.dumps(entry) + "\n"))
        command = "molsamp train flow " + " ".join(sys.argv[3:])
        earlier = {} if start_flow is None else start_flow.metadata
        card["command"] = f"{earlier['command']}; then {command}" if "command" in earlier else command
        save_crystal_flow(flow, output, system, temperature, **card)
        if eval_samples:
            measured = crystal_samples(system, temperature, eval_samples, model=output, seed=seed + 1).info
            card.update({key: measured[key] for key in ("ess_percent", "free_energy_kT", "free_energy_error_kT")},
                        ess_samples=eval_samples)
            log.write(json.dumps({"samples": eval_samples, **card}) + "\n")
            save_crystal_flow(flow, output, system, temperature, **card)
    click.echo(f"wrote {output} and {log_path}" + (f"; ESS {card['ess_percent']:.1f}% of {eval_samples} samples"
                                                   if eval_samples else ""))


@train.command("voxel")
@click.option("--data", default="qm9", show_default=True,
              help="Training molecules: a molecule set (.npz of molsamp.voxel.MoleculeSet), or qm9 for "
                   "data/qm9/train.npz (made by data/qm9/make_subset.py).")
@click.option("--steps", type=_POSITIVE_INT, default=3000, show_default=True, help="Optimisation steps.")
@click.option("--batch-size", type=_POSITIVE_INT, default=16, show_default=True)
@click.option("--learning-rate", type=_POSITIVE_FLOAT, default=1e-3, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0),
              help="Steps over which the learning rate rises linearly to --learning-rate (default: 100 with "
                   "--init, else 0).")
@click.option("--sigma", type=_POSITIVE_FLOAT, default=0.75, show_default=True,
              help="Noise level of the walk (VoxMol: 0.9 on its finer grid with narrower atoms).")
@click.option("--measurements", type=_POSITIVE_INT, default=4, show_default=True,
              help="Trained also at sigma / sqrt(j), j up to this, for multi-measurement sampling.")
@click.option("--widths", default="16,32,64,128", show_default=True, help="U-Net channels per level.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=_TorchDevice(), help="torch device (default: cuda when available, else cpu).")
@click.option("--init", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Continue from this denoiser's weights (same architecture and noise; fresh optimiser); its card's "
                   "steps and command are carried over.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint to write (.pt); a training log (.log.jsonl) is written beside it, and an interrupted "
                   "run resumes from <output>.state.pt.")
def train_voxel(data: str, steps: int, batch_size: int, learning_rate: float, warmup_steps: int | None,
                sigma: float, measurements: int, widths: str, seed: int, device: str | None, init: Path | None,
                output: Path) -> None:
    """Train the voxel denoiser of walk-jump generation on 3D molecules (random rotations and shifts)."""
    from molsamp.voxel import DenoiserTraining, MoleculeSet, load_denoiser, train_denoiser

    path = Path("data/qm9/train.npz") if data == "qm9" else Path(data)
    if data == "qm9" and not path.exists():
        raise _UserError("data/qm9/train.npz is missing: run python data/qm9/make_subset.py in the repository")
    molecules = MoleculeSet.load(path)
    try:
        levels = [int(w) for w in widths.split(",")]
    except ValueError:
        raise _UserError(f"--widths must be integers separated by commas, got {widths!r}") from None
    start = None if init is None else load_denoiser(init)
    earlier = {} if start is None else start.metadata
    command = "molsamp train voxel " + " ".join(sys.argv[3:])
    log_path = output.with_suffix(".log.jsonl")
    with open(log_path, "a", buffering=1) as log:
        train_denoiser(molecules, output, sigma=sigma, measurements=measurements, widths=levels,
                       settings=DenoiserTraining(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                                                 warmup_steps=(100 if init else 0) if warmup_steps is None
                                                 else warmup_steps),
                       seed=seed, device=device or _torch_device(), init=start,
                       log=lambda entry: log.write(json.dumps(entry) + "\n"), data=str(path),
                       training_smiles=sorted(set(molecules.smiles.tolist())),
                       total_steps=earlier.get("total_steps", earlier.get("steps", 0)) + steps,
                       command=f"{earlier['command']}; then {command}" if "command" in earlier else command)
    click.echo(f"wrote {output} and {log_path}")


@cli.command()
@click.option("-n", type=_POSITIVE_INT, default=200, show_default=True, help="Molecules to generate.")
@click.option("--measurements", type=_POSITIVE_INT, default=1, show_default=True,
              help="Measurements of the multi-measurement walk (1: VoxMol's walk-jump).")
@click.option("--walk-steps", type=_POSITIVE_INT, default=100, show_default=True,
              help="Langevin steps per measurement between jumps.")
@click.option("--chains", type=_POSITIVE_INT, default=25, show_default=True, help="Parallel chains.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Denoiser checkpoint (default: the shipped models/voxel-qm9.pt).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=_TorchDevice(), help="torch device (default: cuda when available, else cpu).")
@click.option("--relax", is_flag=True,
              help="Minimise each molecule in GAFF2/AM1-BCC with OBC2 water and report its energy (AmberTools "
                   "parametrises each new molecule: seconds each).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="SDF of the molecules read out (3D, Å, hydrogens explicit).")
def generate(n: int, measurements: int, walk_steps: int, chains: int, model: Path | None, seed: int,
             device: str | None, relax: bool, overwrite: bool, quiet: bool, output: Path) -> None:
    """Generate 3D molecules by voxel walk-jump sampling and print the batch's validity, uniqueness, novelty,
    atom and molecule stability."""
    from molsamp.files import check_output
    from molsamp.shipped import MODELS_DIR
    from molsamp.voxel import generate as walk_jump_molecules
    from molsamp.voxel import load_denoiser

    check_output(output, overwrite)
    device = device or _torch_device()
    denoiser = load_denoiser(model or MODELS_DIR / "voxel-qm9.pt", device=device)
    made = walk_jump_molecules(denoiser, n, measurements, walk_steps, chains, seed=seed, device=device,
                               progress=False if quiet else None)
    report = made.report(denoiser.metadata.get("training_smiles", ()))
    if relax:
        report |= made.relax(progress=False if quiet else None)
    written = made.write_sdf(output)
    click.echo(f"validity {report['validity']:.1%}, uniqueness {report['uniqueness']:.1%}, atom stability "
               f"{report['atom_stability']:.1%}, molecule stability {report['molecule_stability']:.1%}; "
               f"{report['unreadable']} of {n} grids held no molecule; wrote {written} molecules to {output}"
               + (f"; median energy after relaxation {report['median_energy_kj_mol']} kJ/mol" if relax else ""))
    click.echo(json.dumps(report))


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@cli.command("free-energy")
@click.argument("system")
@click.option("--from", "start", type=_POSITIVE_FLOAT, required=True, help="K: the temperature the states come from.")
@click.option("--to", "end", type=_POSITIVE_FLOAT, required=True, help="K: the temperature to reach.")
@click.option("--from-model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Crystal flow at --from (default: the shipped models/<system>-<T>K-flow.pt).")
@click.option("--to-model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Crystal flow at --to (default: the shipped one).")
@click.option("--reference", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The MD ladder of data/ice/make_md.py (data/ice/<system>/): its frames at --from are the "
                   "states, and MBAR over its energies is the comparison. Without it, 200 ps of MD at --from.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the MD made without --reference.")
def free_energy(system: str, start: float, end: float, from_model: Path | None, to_model: Path | None,
                reference: Path | None, seed: int) -> None:
    """Free-energy difference f(--to) - f(--from) (kT, f = -log Z) of a crystal (ice-xi-16, ice-xi-128) by learned
    free-energy perturbation: Boltzmann states at --from mapped to --to through the two temperatures' flows, with
    MBAR over the reference MD ladder beside it."""
    from molsamp.flows.crystals import crystal_md_states, learned_free_energy, load_md_ladder
    from molsamp.free_energy.mbar import temperature_mbar
    from molsamp.systems import load

    crystal = load(system)
    record = {"system": system}
    if reference is None:
        states = crystal_md_states(crystal, start, picoseconds=200.0, seed=seed)
    else:
        ladder = load_md_ladder(reference)
        states = ladder.states_at(start)
        try:
            estimate = temperature_mbar(ladder.temperatures, ladder.energies, start, end)
        except ValueError as error:
            raise _UserError(f"{reference}: {error}") from None
        record["mbar"] = {"delta_f_kT": estimate.delta_f, "error_kT": estimate.error,
                          "delta_f_per_molecule_kT": estimate.delta_f / states.shape[1],
                          "states": len(estimate.samples_per_state)}
    record["lfep"] = learned_free_energy(crystal, start, end, states, from_model, to_model)
    click.echo(json.dumps(record))


def _picoseconds(text: str) -> float:
    """``"0.5ns"``, ``"500ps"`` or ``"500"`` (ps) in ps."""
    value = text.strip().lower()
    scale = 1000.0 if value.endswith("ns") else 1.0
    try:
        result = float(value.removesuffix("ns").removesuffix("ps")) * scale
    except ValueError:
        raise _UserError(f"cannot read the time {text!r}; write e.g. 0.5ns or 500ps") from None
    if result <= 0:
        raise _UserError(f"time {text!r} must be positive")
    return result


def _topology(top: str | None):
    """A topology for DCD input from a PDB path (kept as a path) or a system name/YAML file."""
    if top is None or top.endswith(".pdb"):
        return top
    if Path(top).suffix not in ("", ".yaml", ".yml"):
        raise _UserError(f"--top {top!r}: give a system name, a system YAML file or a PDB file")
    from molsamp.systems import load

    return load(top).topology


@contextlib.contextmanager
def _c_stdout_discarded():
    """Discard what C code prints on file descriptor 1 meanwhile (mdtraj's DCD reader announces every file), so
    that stdout holds only the command's own output."""
    import ctypes

    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers what it printed into a pipe: out with it, still to devnull
        os.dup2(saved, 1)
        os.close(saved)


def _phi_psi(traj, path: Path):
    """phi and psi ``[frames, 2]`` (rad) of the first residue that has both."""
    from molsamp.analysis import backbone_dihedral_indices, compute_dihedrals

    indices = backbone_dihedral_indices(traj.topology)
    if len(indices["phi"]) == 0 or len(indices["psi"]) == 0:
        raise _UserError(f"{path}: no backbone phi/psi dihedrals in this topology")
    return compute_dihedrals(traj.xyz, [indices["phi"][0], indices["psi"][0]])


def main() -> None:
    cli(prog_name="molsamp")


if __name__ == "__main__":
    sys.exit(main())
