"""Radius graph with periodic boundaries: every pair of atoms closer than a cutoff.

For atoms i (centre) and j (neighbour) of the same structure and an integer cell shift S,

.. math::
    \\mathbf{r}_{ij} = \\mathbf{x}_j - \\mathbf{x}_i + S\\,\\mathbf{C}_{b(i)},
    \\qquad j \\to i \\in \\mathcal{E} \\iff |\\mathbf{r}_{ij}| < r,

with the rows of the cell C the lattice vectors and S = 0 on non-periodic axes. The list is
full (both j -> i and i -> j), includes periodic self-images (i -> i with S != 0), and
i -> i with S = 0 only when ``loop=True``. The compiled op uses a cell list (linear in the
number of atoms, any triclinic cell, cutoffs larger than the cell); the edge test itself is
evaluated in the dtype of ``pos`` exactly as :func:`torch_pet.ops.reference.radius_graph_reference`
does, so kernel, reference, CPU and CUDA agree bitwise, also at the cutoff.

Every finite input gives the exact list or a ValueError, never a wrong one: near-flat or
subnormal extents, huge cutoffs and coordinates are binned without overflow. Documented
limits (ValueError, identical on CPU, CUDA and the reference): more than ``max_edges``
edges (default and at most 2**31 - 1; refused before the output is allocated, from a lower
bound when one proves it, otherwise from a count), float64 coordinates or periodic cell
entries beyond 1e100, r below 1e-18 (float32) or 1e-150 (float64), more than 2**30
periodic images along a cell vector, atoms more than 1e9 cells from the origin.
"""
import math
import numbers
from typing import Optional

import torch

from torch_pet import _extension
from torch_pet.ops.reference import MAX_EDGES, radius_graph_reference

__all__ = ["radius_graph", "edge_vectors"]


def radius_graph(
    pos: torch.Tensor,
    r: float,
    batch: Optional[torch.Tensor] = None,
    *,
    cell: Optional[torch.Tensor] = None,
    pbc=None,
    loop: bool = False,
    return_vectors: bool = False,
    max_edges: int = MAX_EDGES,
):
    """All edges j -> i with |pos[j] - pos[i] + S @ cell| < r, PyG convention.

    Args:
        pos: atomic positions.
        r: cutoff (strict: pairs at exactly r are not connected).
        batch: structure of each atom, sorted ascending (PyG ``batch``); None for one
            structure. Structures are never connected to each other.
        cell: lattice vectors as rows, ``[3, 3]`` (shared) or ``[B, 3, 3]``; with
            ``[B, 3, 3]`` the batch has B structures, so trailing empty structures count.
            Rows of non-periodic axes are ignored (may be zero).
        pbc: periodic axes, bool ``[3]`` or ``[B, 3]`` (tensor, bool or sequence). Default:
            all periodic when a cell is given, none otherwise.
        loop: also return i -> i with zero shift.
        return_vectors: also return the edge vectors r_ij, differentiable w.r.t. pos and cell.
        max_edges: refuse (ValueError) graphs with more edges, before allocating them; at
            most (and by default) 2**31 - 1.

    Returns:
        ``(edge_index, shifts[, vectors])``: ``edge_index[0]`` is the neighbour j (source),
        ``edge_index[1]`` the centre i (target); edges sorted by centre, then neighbour,
        then shift. The full list, never truncated.

    Shapes:
        pos [N, 3], batch [N] -> edge_index [2, E] long, shifts [E, 3] long, vectors [E, 3]
    """
    r = _check_pos_and_cutoff(pos, r)
    for name, flag in (("loop", loop), ("return_vectors", return_vectors)):
        if not isinstance(flag, bool):
            raise TypeError(f"radius_graph: {name} must be True or False, got {flag!r}")
    if isinstance(max_edges, bool) or not isinstance(max_edges, numbers.Integral):
        raise TypeError(f"radius_graph: max_edges must be an int, got {type(max_edges).__name__}")
    if not 0 <= max_edges <= MAX_EDGES:
        raise ValueError(f"radius_graph: max_edges must be in [0, 2**31 - 1], got {max_edges}")
    max_edges = int(max_edges)
    ptr, num_structures = _structure_pointer(pos, batch, cell)
    full_cell, full_pbc = cell_and_pbc(pos, cell, pbc, num_structures)
    if _extension.use_extension(pos.device):
        try:  # the op checks that pos is finite in its first pass over the atoms
            edge_index, shifts = torch.ops.torch_pet.radius_graph(pos.detach(), ptr, full_cell.detach(),
                                                                  full_pbc, r, loop, max_edges)
        except ValueError as err:
            if "pos contains NaN or Inf" in str(err):
                _check_finite(pos)
            raise
    else:
        _check_finite(pos)
        edge_index, shifts = radius_graph_reference(pos.detach(), ptr, full_cell.detach(), full_pbc,
                                                    r, loop, max_edges)
    if not return_vectors:
        return edge_index, shifts
    return edge_index, shifts, edge_vectors(pos, edge_index, shifts, cell, batch)


def edge_vectors(
    pos: torch.Tensor,
    edge_index: torch.Tensor,
    shifts: torch.Tensor,
    cell: Optional[torch.Tensor] = None,
    batch: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Edge vectors r_ij = pos[j] - pos[i] + S @ cell[batch[i]], differentiable w.r.t.
    pos and cell.

    Args:
        pos: positions; edge_index: row 0 neighbour j, row 1 centre i; shifts: integer cell
        shifts; cell: ``[3, 3]`` or ``[B, 3, 3]`` (None: shifts are ignored, no periodicity);
        batch: structure of each atom, needed when cell is ``[B, 3, 3]`` with B > 1.

    Shapes:
        pos [N, 3], edge_index [2, E], shifts [E, 3], cell [B, 3, 3], batch [N] -> [E, 3]
    """
    neighbour, centre = edge_index[0], edge_index[1]
    vectors = pos.index_select(0, neighbour) - pos.index_select(0, centre)
    if cell is None:
        return vectors
    s = shifts.to(pos.dtype)
    if cell.dim() == 2 or cell.shape[0] == 1:
        return vectors + s @ cell.reshape(3, 3)
    if batch is None:
        raise ValueError("edge_vectors: a [B, 3, 3] cell with B > 1 needs the batch vector to "
                         "find the cell of each edge")
    edge_cell = cell.index_select(0, batch.index_select(0, centre))  # [E, 3, 3]
    return vectors + torch.bmm(s.unsqueeze(1), edge_cell).squeeze(1)


def _check_pos_and_cutoff(pos, r) -> float:
    """Checks pos and returns the cutoff as a float (a number or a one-element tensor)."""
    if not isinstance(pos, torch.Tensor):
        raise TypeError(f"radius_graph: pos must be a torch.Tensor, got {type(pos).__name__}")
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"radius_graph: pos must have shape [N, 3], got {tuple(pos.shape)}")
    if pos.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"radius_graph: pos must be float32 or float64, got {pos.dtype}; convert "
                        "it with pos.float() or pos.double()")
    if isinstance(r, torch.Tensor):
        if r.dtype == torch.bool or r.dtype.is_complex:
            raise TypeError(f"radius_graph: the cutoff r must be a real number, got a {r.dtype} tensor")
        if r.numel() != 1:
            raise ValueError(f"radius_graph: the cutoff r must be a single number, got a tensor of shape "
                             f"{tuple(r.shape)}; pass one cutoff for all structures")
    elif isinstance(r, bool) or not isinstance(r, numbers.Real):
        raise TypeError(f"radius_graph: the cutoff r must be a real number, got {type(r).__name__}")
    r = float(r)
    if not math.isfinite(r) or r <= 0.0:
        raise ValueError(f"radius_graph: the cutoff r must be positive and finite, got {r}")
    return r


def _check_finite(pos) -> None:
    not_finite = ~torch.isfinite(pos).all(dim=1)
    if bool(not_finite.any()):
        bad = int(not_finite.nonzero()[0])
        raise ValueError(f"radius_graph: pos contains NaN or Inf (first at atom {bad}); fix the "
                         "positions before building the graph")


def _check_pbc_argument(pbc, device):
    """pbc as None or a bool tensor (a bool or nested sequence of bools becomes one on device)."""
    if pbc is None:
        return None
    if isinstance(pbc, torch.Tensor):
        if pbc.dtype != torch.bool:
            raise TypeError(f"radius_graph: pbc must be boolean (True/False per cell vector), got {pbc.dtype}")
        return pbc
    if isinstance(pbc, (str, bytes)):
        raise TypeError(f"radius_graph: pbc must be a bool or a sequence of 3 bools (one per cell "
                        f"vector), got the string {pbc!r}")
    try:
        pbc = torch.as_tensor(pbc, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"radius_graph: pbc must be a bool or a sequence of 3 bools (one per cell "
                        f"vector), got {type(pbc).__name__}: {err}") from None
    if pbc.dtype != torch.bool:
        raise TypeError(f"radius_graph: pbc must be boolean (True/False per cell vector), got {pbc.dtype}")
    return pbc


def _structure_pointer(pos, batch, cell):
    """ptr [B+1] from the sorted batch vector; B from the cell when it is [B, 3, 3]."""
    num_atoms, device = pos.shape[0], pos.device
    cell_structures = cell.shape[0] if isinstance(cell, torch.Tensor) and cell.dim() == 3 else None
    if batch is None:
        if cell_structures not in (None, 1):
            raise ValueError(f"radius_graph: cell has {cell_structures} structures but batch is None; "
                             "pass the batch vector (structure index of each atom)")
        return torch.tensor([0, num_atoms], dtype=torch.long, device=device), 1
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"radius_graph: batch must be a torch.Tensor, got {type(batch).__name__}")
    if batch.dtype.is_floating_point or batch.dtype.is_complex or batch.dtype == torch.bool:
        raise TypeError(f"radius_graph: batch must be an integer tensor, got {batch.dtype}")
    if batch.shape != (num_atoms,):
        raise ValueError(f"radius_graph: batch must have shape [N] = [{num_atoms}] (one structure "
                         f"index per atom), got {tuple(batch.shape)}")
    if batch.device != device:
        raise ValueError(f"radius_graph: batch is on {batch.device} but pos is on {device}")
    batch = batch.long()
    if num_atoms:
        if int(batch[0]) < 0:
            raise ValueError("radius_graph: batch contains negative structure indices")
        if num_atoms > 1 and bool((batch[1:] < batch[:-1]).any()):
            first = int((batch[1:] < batch[:-1]).nonzero()[0]) + 1
            raise ValueError(f"radius_graph: batch must be sorted ascending (atoms grouped by "
                             f"structure, as PyG batches them); it decreases at atom {first}")
    largest = int(batch[-1]) + 1 if num_atoms else 0
    if largest > num_atoms + 2**20 and (cell_structures is None or largest > cell_structures):
        raise ValueError(f"radius_graph: batch refers to structure {largest - 1} but there are only "
                         f"{num_atoms} atoms; batch values are structure indices 0..B-1 (at most 2**20 "
                         "empty structures beyond N)")
    num_structures = cell_structures if cell_structures is not None and cell_structures > 1 else max(largest, 1)
    if largest > num_structures:
        raise ValueError(f"radius_graph: batch refers to structure {largest - 1} but cell has only "
                         f"{num_structures} structures")
    counts = torch.bincount(batch, minlength=num_structures)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return ptr, num_structures


def cell_and_pbc(pos, cell, pbc, num_structures):
    """cell [B, 3, 3] and pbc [B, 3] bool for the op; checks dtype, device and singularity."""
    device, dtype = pos.device, pos.dtype
    pbc = _check_pbc_argument(pbc, device)
    if cell is None:
        if pbc is not None and bool(pbc.any()):
            raise ValueError("radius_graph: pbc has periodic axes but no cell was given; pass the "
                             "cell (lattice vectors as rows) or set pbc to False")
        return (torch.zeros(num_structures, 3, 3, dtype=dtype, device=device),
                torch.zeros(num_structures, 3, dtype=torch.bool, device=device))
    if not isinstance(cell, torch.Tensor):
        raise TypeError(f"radius_graph: cell must be a torch.Tensor, got {type(cell).__name__}")
    if cell.shape == (3, 3):
        cell = cell.unsqueeze(0)
    if cell.dim() != 3 or cell.shape[1:] != (3, 3) or cell.shape[0] not in (1, num_structures):
        raise ValueError(f"radius_graph: cell must have shape [3, 3] or [B, 3, 3] with B = "
                         f"{num_structures}, got {tuple(cell.shape)}")
    if cell.dtype != dtype:
        raise TypeError(f"radius_graph: cell must have the dtype of pos ({dtype}), got {cell.dtype}; "
                        "convert it with cell.to(pos.dtype)")
    if cell.device != device:
        raise ValueError(f"radius_graph: cell is on {cell.device} but pos is on {device}")
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("radius_graph: cell contains NaN or Inf")
    cell = cell.expand(num_structures, 3, 3).contiguous()
    if pbc is None:
        pbc = torch.ones(num_structures, 3, dtype=torch.bool, device=device)
    else:
        if pbc.dtype != torch.bool:
            raise TypeError(f"radius_graph: pbc must be boolean, got {pbc.dtype}")
        if pbc.device != device:
            raise ValueError(f"radius_graph: pbc is on {pbc.device} but pos is on {device}")
        if pbc.dim() == 0:
            pbc = pbc.expand(3)
        if pbc.shape == (3,):
            pbc = pbc.unsqueeze(0)
        if pbc.dim() != 2 or pbc.shape[1] != 3 or pbc.shape[0] not in (1, num_structures):
            raise ValueError(f"radius_graph: pbc must have shape [3] or [B, 3] with B = "
                             f"{num_structures}, got {tuple(pbc.shape)}")
        pbc = pbc.expand(num_structures, 3).contiguous()
    _check_not_singular(cell, pbc)
    return cell, pbc




def _check_not_singular(cell, pbc) -> None:
    """The periodic cell vectors of every structure must be linearly independent (scale-free:
    the Gram determinant of the normalised vectors)."""
    rows = cell.double() * pbc[..., None]  # non-periodic rows zeroed
    largest = rows.abs().amax(dim=2, keepdim=True)
    scaled = rows / torch.where(largest > 0, largest, torch.ones_like(largest))  # no overflow below
    lengths = scaled.norm(dim=2, keepdim=True)
    unit = scaled / torch.where(lengths > 0, lengths, torch.ones_like(lengths))
    gram = unit @ unit.transpose(1, 2) + torch.diag_embed((~pbc).double())
    singular = (torch.linalg.det(gram) <= 1e-20) | ((lengths.squeeze(2) == 0) & pbc).any(dim=1)
    if bool(singular.any()):
        b = int(singular.nonzero()[0])
        raise ValueError(f"radius_graph: the cell of structure {b} is singular (its periodic cell "
                         "vectors are linearly dependent or zero); give a proper cell or set pbc to "
                         "False on the axes without periodicity")


if _extension.WITH_EXTENSION:

    @torch.library.register_fake("torch_pet::radius_graph")
    def _radius_graph_fake(pos, ptr, cell, pbc, r, loop, max_edges=MAX_EDGES):
        num_edges = torch.library.get_ctx().new_dynamic_size()
        return ptr.new_empty((2, num_edges)), ptr.new_empty((num_edges, 3))
