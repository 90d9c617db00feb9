"""Generate the bundled randomly-distorted methane dataset (GFN2-xTB energies and forces).

Structures follow the paper's recipe (Pozdnyakov & Ceriotti, arXiv:2305.19302): the carbon
sits at the origin, the four hydrogens are drawn uniformly in a 3 A ball around it, and a
configuration is kept only if every interatomic distance is at least 0.5 A (rejection
sampling). Energies and forces come from GFN2-xTB through ``tblite`` (``pip install tblite``,
the ``xtb`` extra of torch_pet); tblite works in Hartree and Bohr, the file stores eV and A.
Calculations that fail (SCF not converged, non-finite results) are dropped and counted.

The result is a compressed ``.npz`` with

* ``positions``  [S, 5, 3] float64, A (atom 0 is C, atoms 1-4 are H)
* ``numbers``    [5] int64 (6, 1, 1, 1, 1)
* ``energy``     [S] float64, eV (total GFN2-xTB energy)
* ``forces``     [S, 5, 3] float64, eV/A
* ``seed``, ``num_requested``, ``num_failed``, ``method``, ``min_distance``, ``ball_radius``

Usage::

    python scripts/generate_methane.py --num 10000 --seed 0 \
        --out torch_pet/datasets/data/methane_gfn2.npz
"""
import argparse
import time

import numpy as np
from ase.units import Bohr, Hartree

NUMBERS = np.array([6, 1, 1, 1, 1], dtype=np.int64)


def sample_methane(rng: np.random.Generator, ball_radius: float = 3.0,
                   min_distance: float = 0.5) -> tuple:
    """One distorted CH4 geometry [5, 3] in A and the number of rejected draws."""
    rejected = 0
    while True:
        direction = rng.normal(size=(4, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = ball_radius * rng.uniform(size=(4, 1)) ** (1.0 / 3.0)
        pos = np.concatenate([np.zeros((1, 3)), radius * direction], axis=0)
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        if dist[np.triu_indices(5, 1)].min() >= min_distance:
            return pos, rejected
        rejected += 1


def gfn2_energy_forces(pos: np.ndarray) -> tuple:
    """GFN2-xTB energy (eV) and forces (eV/A) of CH4 at ``pos`` (A); raises on failure."""
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", NUMBERS, pos / Bohr, charge=0.0, uhf=0)
    calc.set("verbosity", 0)
    result = calc.singlepoint()
    energy = float(result.get("energy")) * Hartree
    forces = -np.asarray(result.get("gradient")) * (Hartree / Bohr)
    if not np.isfinite(energy) or not np.isfinite(forces).all():
        raise FloatingPointError("non-finite GFN2-xTB result")
    return energy, forces


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=10000, help="structures to request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ball-radius", type=float, default=3.0)
    parser.add_argument("--min-distance", type=float, default=0.5)
    parser.add_argument("--out", default="torch_pet/datasets/data/methane_gfn2.npz")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    positions, energies, forces = [], [], []
    failures, rejected = {}, 0
    start = time.perf_counter()
    for index in range(args.num):
        pos, rej = sample_methane(rng, args.ball_radius, args.min_distance)
        rejected += rej
        try:
            energy, force = gfn2_energy_forces(pos)
        except Exception as err:  # tblite raises its own error type on SCF failure
            key = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            failures[key] = failures.get(key, 0) + 1
            continue
        positions.append(pos)
        energies.append(energy)
        forces.append(force)
        if (index + 1) % 1000 == 0:
            print(f"{index + 1}/{args.num} done, {sum(failures.values())} failed, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)

    num_failed = sum(failures.values())
    np.savez_compressed(
        args.out,
        positions=np.asarray(positions, dtype=np.float64),
        numbers=NUMBERS,
        energy=np.asarray(energies, dtype=np.float64),
        forces=np.asarray(forces, dtype=np.float64),
        seed=np.int64(args.seed),
        num_requested=np.int64(args.num),
        num_failed=np.int64(num_failed),
        method=np.str_("GFN2-xTB (tblite)"),
        min_distance=np.float64(args.min_distance),
        ball_radius=np.float64(args.ball_radius),
    )
    print(f"wrote {len(energies)} structures to {args.out} "
          f"({num_failed} failed and dropped, {rejected} geometries rejected by the "
          f"{args.min_distance} A distance rule) in {time.perf_counter() - start:.1f} s")
    for key, count in failures.items():
        print(f"  failure: {count} x {key}")


if __name__ == "__main__":
    main()
