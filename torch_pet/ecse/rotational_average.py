"""Approximate rotational symmetrization by averaging over a grid of rotations.

The alternative to ECSE that PET users meet in practice (the universal PET models train with
random rotations and, at inference, average over a Lebedev grid on the sphere times in-plane
angles). For a fixed set of rotations {Q_r} with weights c_r (sum 1),

.. math::
    \\bar y(X) = \\sum_r c_r\\, B_r[\\, y_0(X Q_r) \\,]

with the row-vector convention of :mod:`torch_pet.ecse.rotate` (``B_r``: scalars unchanged,
vectors ``v·Q_rᵀ``, rank-2 tensors ``Q_r·T·Q_rᵀ``). It is exactly invariant only for a
backbone that already is; otherwise the error is a quadrature error of the integral over
SO(3), which shrinks with the grid size at a rate set by how fast y_0 varies with the
orientation. Cost: one backbone evaluation per rotation.

Grids (all equal-weight):

* :func:`random_rotation_grid`: Haar-random rotations (Monte Carlo, error ~ R^-1/2);
* :func:`gauss_grid_rotations`: a Lebedev-type grid, exact (to round-off) for every
  function of the orientation whose Wigner expansion stops at degree L: Gauss-Legendre
  nodes in cos(beta) times equally spaced alpha on the sphere, times equally spaced in-plane
  angles gamma ((L//2 + 1)(L + 1)^2 rotations; Lebedev's tabulated sphere grids reach the same
  degree with ~2/3 of the sphere points);
* :func:`sphere_grid_rotations`: a Fibonacci (golden-spiral) grid of directions on the
  sphere times equally spaced in-plane angles, as ZYZ Euler angles. The Fibonacci grid is a
  near-uniform equal-area design for any number of points, used here instead of Lebedev's
  tabulated nodes and weights (same structure "sphere grid x in-plane angles", no tables).

Shapes: N atoms, B structures, R rotations.
"""
import math
from typing import Callable, Optional

import torch
from torch_geometric.data import Batch, Data

from torch_pet.outputs import KindLike, OutputKind

__all__ = ["RotationalAverage", "fibonacci_sphere", "sphere_grid_rotations",
           "gauss_grid_rotations", "random_rotation_grid"]

_GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))
# Never copied into the backbone input: rebuilt, rotated separately, or labels.
_NOT_CARRIED = {"pos", "batch", "ptr", "cell", "pbc", "energy", "forces", "stress", "virial",
                "num_nodes", "y"}


def fibonacci_sphere(num_points: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Unit vectors of the Fibonacci (golden-spiral) grid: z_k = 1 - (2k + 1)/n, azimuth
    k·golden angle; every point represents an equal area 4π/n.

    Shapes:
        -> [num_points, 3]
    """
    if not (isinstance(num_points, int) and num_points >= 1):
        raise ValueError(f"fibonacci_sphere: num_points must be an int >= 1, got {num_points!r}")
    k = torch.arange(num_points, dtype=torch.float64)
    z = 1 - (2 * k + 1) / num_points
    rho = (1 - z * z).clamp(min=0).sqrt()
    phi = k * _GOLDEN_ANGLE
    return torch.stack([rho * phi.cos(), rho * phi.sin(), z], dim=1).to(dtype)


def _euler_zyz(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """R = Rz(alpha) Ry(beta) Rz(gamma), elementwise over the angle tensors.

    Shapes:
        alpha, beta, gamma [R] -> [R, 3, 3]
    """

    def rz(t):
        c, s, o, i = t.cos(), t.sin(), torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([c, -s, o, s, c, o, o, o, i], dim=-1).reshape(-1, 3, 3)

    def ry(t):
        c, s, o, i = t.cos(), t.sin(), torch.zeros_like(t), torch.ones_like(t)
        return torch.stack([c, o, s, o, i, o, -s, o, c], dim=-1).reshape(-1, 3, 3)

    return rz(alpha) @ ry(beta) @ rz(gamma)


def sphere_grid_rotations(num_directions: int, num_inplane: int,
                          dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Rotations taking z to each Fibonacci direction (polar angle beta, azimuth alpha),
    composed with ``num_inplane`` rotations gamma_m = 2πm/num_inplane about z: Rz(alpha)
    Ry(beta) Rz(gamma). Uniform directions times uniform gamma sample SO(3) uniformly
    (Haar measure dalpha sin(beta) dbeta dgamma), so equal weights are right.

    Shapes:
        -> [num_directions * num_inplane, 3, 3] (direction-major)
    """
    if not (isinstance(num_inplane, int) and num_inplane >= 1):
        raise ValueError(f"sphere_grid_rotations: num_inplane must be an int >= 1, got {num_inplane!r}")
    n = fibonacci_sphere(num_directions)
    alpha = torch.atan2(n[:, 1], n[:, 0]).repeat_interleave(num_inplane)
    beta = torch.acos(n[:, 2].clamp(-1, 1)).repeat_interleave(num_inplane)
    gamma = (2 * math.pi / num_inplane * torch.arange(num_inplane, dtype=torch.float64)
             ).repeat(num_directions)
    return _euler_zyz(alpha, beta, gamma).to(dtype)


def gauss_grid_rotations(degree: int, dtype: torch.dtype = torch.float64):
    """Product quadrature on SO(3), exact for Wigner D-functions up to ``degree`` L:
    L//2 + 1 Gauss-Legendre nodes in cos(beta), L + 1 azimuths alpha and L + 1 in-plane
    angles gamma (both equally spaced), as Rz(alpha) Ry(beta) Rz(gamma).

    Shapes:
        -> rotations [R, 3, 3], weights [R] (sum 1), R = (L//2 + 1)(L + 1)^2
    """
    if not (isinstance(degree, int) and degree >= 0):
        raise ValueError(f"gauss_grid_rotations: degree must be an int >= 0, got {degree!r}")
    import numpy as np

    nodes, gauss_weights = np.polynomial.legendre.leggauss(degree // 2 + 1)
    beta = torch.acos(torch.as_tensor(nodes, dtype=torch.float64))
    angles = 2 * math.pi / (degree + 1) * torch.arange(degree + 1, dtype=torch.float64)
    b, a, g = torch.meshgrid(beta, angles, angles, indexing="ij")
    weights = (torch.as_tensor(gauss_weights, dtype=torch.float64)[:, None, None]
               .expand(b.shape).reshape(-1))
    return (_euler_zyz(a.reshape(-1), b.reshape(-1), g.reshape(-1)).to(dtype),
            (weights / weights.sum()).to(dtype))


def random_rotation_grid(num_rotations: int, seed: int = 0,
                         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``num_rotations`` Haar-random rotations from a seeded generator.

    Shapes:
        -> [num_rotations, 3, 3]
    """
    if not (isinstance(num_rotations, int) and num_rotations >= 1):
        raise ValueError(f"random_rotation_grid: num_rotations must be an int >= 1, got {num_rotations!r}")
    from torch_pet.rotations import random_rotation

    generator = torch.Generator().manual_seed(seed)
    return torch.stack([random_rotation(generator) for _ in range(num_rotations)]).to(dtype)


class RotationalAverage(torch.nn.Module):
    """Average a backbone over a fixed set of rotated copies of every input structure.

    Args:
        model: the backbone; ``adapter(model, batch)`` (default ``model(batch)``) on a Batch
            of rotated copies returns one row per copy (or per copied atom with ``per_atom``).
        rotations: the grid {Q_r}, [R, 3, 3] proper rotations (buffer ``rotations``).
        weights: quadrature weights [R] summing to 1 (default equal).
        output: an :class:`~torch_pet.outputs.OutputKind` or its string, "scalar",
            "vector" (last dim 3) or "tensor" (last dims 3, 3).
        per_atom: the backbone and the average return per-atom rows.
        chunk_size: at most this many atoms per backbone call (whole copies).
        adapter: ``adapter(model, batch) -> Tensor`` for other call signatures.

    The copies carry ``pos`` (rotated about the origin; rotate about any point: averaging is
    translation-covariant only if the backbone is translation invariant), ``batch``, ``ptr``
    and every per-atom attribute of the input; periodic cells are rotated with them.

    Shapes:
        data.pos [N, 3] -> [B, ...] or [N, ...] (per atom)
    """

    def __init__(self, model: torch.nn.Module, rotations: torch.Tensor, *,
                 weights: Optional[torch.Tensor] = None, output: KindLike = "scalar",
                 per_atom: bool = False, chunk_size: int = 16384,
                 adapter: Optional[Callable] = None):
        super().__init__()
        output = OutputKind.parse(output, "RotationalAverage: output")
        per_atom = bool(per_atom) or output.per_atom
        output = output.with_per_atom(per_atom)
        if not isinstance(rotations, torch.Tensor) or rotations.dim() != 3 \
                or rotations.shape[1:] != (3, 3) or rotations.shape[0] == 0:
            raise ValueError("RotationalAverage: rotations must be a tensor of shape [R, 3, 3] with "
                             f"R >= 1, got {getattr(rotations, 'shape', type(rotations).__name__)}")
        r64 = rotations.double()
        eye = torch.eye(3, dtype=torch.float64)
        if not (torch.allclose(r64 @ r64.transpose(1, 2), eye.expand_as(r64), atol=1e-6)
                and bool((torch.linalg.det(r64) > 0).all())):
            raise ValueError("RotationalAverage: rotations must be proper rotations (R Rᵀ = 1, "
                             "det R = +1); build them with sphere_grid_rotations or "
                             "random_rotation_grid")
        if weights is None:
            weights = torch.full((rotations.shape[0],), 1.0 / rotations.shape[0], dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (rotations.shape[0],) or abs(float(weights.sum()) - 1) > 1e-5:
            raise ValueError(f"RotationalAverage: weights must have shape [R] = [{rotations.shape[0]}] "
                             f"and sum to 1, got shape {tuple(weights.shape)}, sum {float(weights.sum()):.6g}")
        weights = weights / weights.sum()  # exact in float64 (float32 weights sum to 1 +- 1e-7)
        if not (isinstance(chunk_size, int) and chunk_size > 0):
            raise ValueError(f"RotationalAverage: chunk_size must be a positive int (atoms per "
                             f"backbone call), got {chunk_size!r}")
        self.model, self.output, self.per_atom = model, output, bool(per_atom)
        self.chunk_size = chunk_size
        self.adapter = adapter if adapter is not None else (lambda m, batch: m(batch))
        self.register_buffer("rotations", r64)
        self.register_buffer("weights", weights)

    @property
    def num_rotations(self) -> int:
        return self.rotations.shape[0]

    def forward(self, data: Data) -> torch.Tensor:
        pos = getattr(data, "pos", None)
        if not isinstance(pos, torch.Tensor) or pos.dim() != 2 or pos.shape[1] != 3 or pos.shape[0] == 0:
            raise ValueError("RotationalAverage: data.pos must be a non-empty tensor of shape [N, 3], "
                             f"got {getattr(pos, 'shape', type(pos).__name__)}")
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        ptr = getattr(data, "ptr", None)
        num_structures = ptr.numel() - 1 if isinstance(ptr, torch.Tensor) else int(batch.max()) + 1
        counts = torch.bincount(batch, minlength=num_structures)
        group_ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        cell = getattr(data, "cell", None)
        if cell is not None:
            cell = cell.reshape(num_structures, 3, 3)
        pbc = getattr(data, "pbc", None)
        if pbc is not None:
            pbc = pbc.reshape(num_structures, 3)
        rotations = self.rotations.to(device=pos.device, dtype=pos.dtype)
        weights = self.weights.to(device=pos.device, dtype=pos.dtype)
        keys = [key for key in data.keys() if key not in _NOT_CARRIED and "edge" not in key
                and isinstance(data[key], torch.Tensor) and data[key].dim() > 0
                and data[key].shape[0] == pos.shape[0]]  # per-atom attributes (z, x, ...)
        # copies: structure-major (copy = structure * R + r); chunks of whole copies
        structure = torch.arange(num_structures, device=pos.device).repeat_interleave(self.num_rotations)
        which = torch.arange(self.num_rotations, device=pos.device).repeat(num_structures)
        per_copy = max(1, self.chunk_size // max(1, int(counts.max())))
        total = None
        for a in range(0, structure.numel(), per_copy):
            s, r = structure[a:a + per_copy], which[a:a + per_copy]
            sizes = counts[s]
            copy = torch.repeat_interleave(torch.arange(s.numel(), device=pos.device), sizes)
            copy_ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
            atom = torch.arange(copy.numel(), device=pos.device) - copy_ptr[copy] + group_ptr[s][copy]
            inputs = Batch(pos=torch.bmm(pos[atom].unsqueeze(1), rotations[r][copy]).squeeze(1),
                           batch=copy, ptr=copy_ptr, **{key: data[key][atom] for key in keys})
            if cell is not None:
                inputs.cell = cell[s] @ rotations[r]
            if pbc is not None:
                inputs.pbc = pbc[s]
            y = self.adapter(self.model, inputs)
            rows = atom.numel() if self.per_atom else s.numel()
            if not isinstance(y, torch.Tensor) or y.dim() == 0 or y.shape[0] != rows:
                raise ValueError(f"RotationalAverage: the model returned "
                                 f"{getattr(y, 'shape', type(y).__name__)} for {s.numel()} copies "
                                 f"of {atom.numel()} atoms, expected {rows} rows; set per_atom to "
                                 "match the model")
            if self.per_atom:
                y = self.output.rotate(y, rotations[r][copy])
                y = y * weights[r][copy].reshape(-1, *([1] * (y.dim() - 1)))
                index, size = atom, pos.shape[0]
            else:
                y = self.output.rotate(y, rotations[r])
                y = y * weights[r].reshape(-1, *([1] * (y.dim() - 1)))
                index, size = s, num_structures
            if total is None:
                total = y.new_zeros(size, *y.shape[1:])
            total = total.index_add(0, index, y)
        return total
