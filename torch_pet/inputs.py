"""Reading and checking what users pass in: the structure index of a batch and neighbour lists.

One place for the rules every entry point (:class:`~torch_pet.PET`,
:class:`~torch_pet.ECSESymmetrizer`, the ASE calculator, :func:`energy_and_forces`, the
exported programs) applies:

* :func:`structure_index` / :func:`read_structure_index`: the structure of each atom. A PyG
  ``Batch`` carries it twice, as ``batch`` [N] and ``ptr`` [B+1]; either one suffices (a
  ``batch`` that was dropped is derived from ``ptr``), both must agree, ``batch`` must be
  sorted and non-negative, ``ptr`` must run from 0 to N without decreasing. Without ``ptr``
  the number of structures B comes from ``batch`` (its last value + 1, or the ``Batch``'s
  ``num_graphs``); structures without atoms count, but at most
  :data:`MAX_EMPTY_STRUCTURES` more than there are atoms, so that a stray value such as
  ``batch[-1] = 10**12`` raises instead of allocating terabytes.
* :func:`check_graph`: a neighbour list given by the user (``pet_edge_index``,
  ``pet_shifts``) must be what ``radius_graph`` would build: integer, in range, within one
  structure, no self-loop without a cell shift, no duplicated edge, no shift along a
  non-periodic axis, no edge longer than the cutoff. Each violation raises ``ValueError``
  naming the first offending edge.

Shapes: N atoms, B structures, E edges.
"""
from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ["MAX_EMPTY_STRUCTURES", "StructureIndex", "structure_index", "read_structure_index",
           "with_structure_index", "check_graph"]

#: Without ``ptr``, B may exceed the number of atoms N by at most this many (empty) structures.
MAX_EMPTY_STRUCTURES = 1024


class StructureIndex(NamedTuple):
    """The structure of every atom, validated.

    Shapes:
        batch [N] (int64, sorted), ptr [B+1] (int64; structure b holds atoms ptr[b]..ptr[b+1]-1)
    """

    batch: Tensor
    ptr: Tensor
    num_structures: int


def _index_tensor(value, name: str, device) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(value).__name__}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {value.dtype}; convert it with "
                        f"{name.split('.')[-1]}.long()")
    if value.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(value.shape)}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but pos is on {device}; move it with "
                         f".to(pos.device)")
    return value.long()


def _first(mask: Tensor) -> int:
    return int(mask.nonzero()[0, 0])


def structure_index(batch: Optional[Tensor], ptr: Optional[Tensor], num_atoms: int, device, *,
                    num_structures: Optional[int] = None, prefix: str = "",
                    owner: str = "") -> StructureIndex:
    """Validated ``batch``, ``ptr`` and B from either or both (see the module docstring).

    Args:
        batch: structure of each atom, or None.
        ptr: first atom of each structure plus N, or None.
        num_atoms: N.
        device: the device of ``pos`` (both tensors must be there).
        num_structures: B if the caller knows it (e.g. ``num_graphs``); must agree with ptr.
        prefix: prepended to the argument names in messages (e.g. ``"data."``).
        owner: starts every message (e.g. ``"ECSESymmetrizer: "``).

    Shapes:
        batch [N], ptr [B+1] -> StructureIndex(batch [N], ptr [B+1], B)
    """
    if num_structures is not None:
        if isinstance(num_structures, bool) or int(num_structures) != num_structures \
                or num_structures < 0:
            raise ValueError(f"{owner}{prefix}num_graphs must be a non-negative integer, got "
                             f"{num_structures!r}")
        num_structures = int(num_structures)
    if ptr is not None:
        ptr = _index_tensor(ptr, f"{owner}{prefix}ptr", device)
        count = ptr.numel() - 1
        if count < 0:
            raise ValueError(f"{owner}{prefix}ptr must have B+1 >= 1 entries (0, then the end "
                             "of each structure), got an empty tensor")
        if num_structures is not None and num_structures != count:
            raise ValueError(f"{owner}{prefix}ptr describes {count} structures but num_graphs is "
                             f"{num_structures}; drop one or make them agree")
        sizes = ptr.diff()
        start, end, decreasing = torch.stack([ptr[0], ptr[-1], (sizes < 0).any().long()]).tolist()
        if start != 0 or end != num_atoms or decreasing:
            raise ValueError(f"{owner}{prefix}ptr must start at 0, end at N = {num_atoms} and "
                             f"never decrease (structure b holds atoms ptr[b]..ptr[b+1]-1), got "
                             f"{_preview(ptr)}")
        expected = torch.repeat_interleave(torch.arange(count, device=device), sizes,
                                           output_size=num_atoms)
        if batch is not None:
            batch = _index_tensor(batch, f"{owner}{prefix}batch", device)
            _check_length(batch, num_atoms, f"{owner}{prefix}batch")
            differ = batch != expected
            if bool(differ.any()):
                atom = _first(differ)
                raise ValueError(f"{owner}{prefix}batch and {prefix}ptr disagree: atom {atom} is "
                                 f"in structure {int(batch[atom])} by batch but "
                                 f"{int(expected[atom])} by ptr; rebuild the batch "
                                 "(Batch.from_data_list) or drop one")
        return StructureIndex(expected, ptr, count)

    if batch is None:
        if num_structures not in (None, 1):
            raise ValueError(f"{owner}{prefix}batch is missing but num_graphs is "
                             f"{num_structures}; pass the batch vector (structure of each atom) "
                             "or ptr")
        ptr = torch.tensor([0, num_atoms], dtype=torch.long, device=device)
        return StructureIndex(torch.zeros(num_atoms, dtype=torch.long, device=device), ptr, 1)

    batch = _index_tensor(batch, f"{owner}{prefix}batch", device)
    _check_length(batch, num_atoms, f"{owner}{prefix}batch")
    if num_atoms == 0:
        count = 1 if num_structures is None else num_structures
    else:
        low, last, unsorted = torch.stack([batch.min(), batch[-1],
                                           (batch[1:] < batch[:-1]).any().long()]).tolist()
        if low < 0:
            raise ValueError(f"{owner}{prefix}batch has a negative structure index at atom "
                             f"{_first(batch < 0)}; structure indices start at 0")
        if unsorted:
            raise ValueError(f"{owner}{prefix}batch must be sorted ascending (atoms grouped by "
                             f"structure, as Batch.from_data_list makes it); it decreases at atom "
                             f"{_first(batch[1:] < batch[:-1]) + 1}")
        count = last + 1 if num_structures is None else num_structures
        if last >= count:
            raise ValueError(f"{owner}{prefix}batch refers to structure {last} but the input has "
                             f"num_graphs = {count} structures")
    if count > num_atoms + MAX_EMPTY_STRUCTURES:
        raise ValueError(f"{owner}{prefix}batch implies {count} structures for {num_atoms} "
                         f"atoms (at most N + {MAX_EMPTY_STRUCTURES} are accepted without ptr); "
                         "check the batch values, or pass ptr [B+1] for batches with many empty "
                         "structures")
    counts = torch.bincount(batch, minlength=count)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return StructureIndex(batch, ptr, count)


def _check_length(batch: Tensor, num_atoms: int, name: str) -> None:
    if batch.shape[0] != num_atoms:
        raise ValueError(f"{name} must have shape [N] = [{num_atoms}] (one structure index per "
                         f"row of pos), got {tuple(batch.shape)}")


def _preview(t: Tensor, count: int = 8) -> str:
    values = t[:count].tolist()
    return str(values)[:-1] + (", ...]" if t.numel() > count else "]")


def read_structure_index(data, pos: Tensor, *, prefix: str = "data.",
                         owner: str = "") -> StructureIndex:
    """:func:`structure_index` of a PyG ``Data``/``Batch`` (``batch``, ``ptr`` and, for a
    ``Batch`` without ``ptr``, its ``num_graphs``).

    Shapes:
        pos [N, 3] -> StructureIndex(batch [N], ptr [B+1], B)
    """
    batch, ptr = getattr(data, "batch", None), getattr(data, "ptr", None)
    num_structures = None
    if ptr is None and hasattr(data, "_num_graphs"):  # a Batch remembers its size
        num_structures = int(data._num_graphs)
        if batch is None and num_structures > 1:
            raise ValueError(f"{owner}{prefix}batch and {prefix}ptr are both missing from a "
                             f"Batch of {num_structures} structures, so its atoms cannot be "
                             "assigned; keep one of them (Batch.from_data_list sets both)")
    return structure_index(batch, ptr, pos.shape[0], pos.device, num_structures=num_structures,
                           prefix=prefix, owner=owner)


def with_structure_index(data, index: StructureIndex):
    """``data`` itself if it carries ``batch``; otherwise a shallow copy with the validated
    ``batch`` (and ``ptr``) set, for models that read ``data.batch``."""
    if getattr(data, "batch", None) is not None:
        return data
    import copy

    data = copy.copy(data)
    data.batch = index.batch
    if index.num_structures != 1 or getattr(data, "ptr", None) is not None:
        data.ptr = index.ptr
    return data


def check_graph(edge_index, shifts, pos: Tensor, index: StructureIndex, cell: Optional[Tensor],
                pbc, cutoff: float, *, names=("edge_index", "shifts"), prefix: str = ""):
    """A user-supplied neighbour list, checked and sorted by centre (``edge_index[1]``).

    Args:
        edge_index: row 0 neighbour j, row 1 centre i (PyG convention).
        shifts: integer cell shifts S of r_ij = x_j - x_i + S·cell, or None (all zero).
        pos, index: positions and their validated :class:`StructureIndex`.
        cell, pbc: as for :func:`~torch_pet.ops.radius_graph` (checked likewise).
        cutoff: the model's cutoff; longer edges raise.
        names: the names of ``edge_index`` and ``shifts`` in messages.

    Shapes:
        edge_index [2, E], shifts [E, 3] -> edge_index [2, E], shifts [E, 3] (sorted)
    """
    ei_name, sh_name = (prefix + n for n in names)
    device, num_atoms = pos.device, pos.shape[0]
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"{ei_name} must be a torch.Tensor [2, E], got {type(edge_index).__name__}")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex \
            or edge_index.dtype == torch.bool:
        raise TypeError(f"{ei_name} must be an integer tensor, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{ei_name} must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.device != device:
        raise ValueError(f"{ei_name} is on {edge_index.device} but pos is on {device}")
    edge_index = edge_index.long()
    num_edges = edge_index.shape[1]
    if shifts is None:
        shifts = edge_index.new_zeros(num_edges, 3)
    if not isinstance(shifts, Tensor):
        raise TypeError(f"{sh_name} must be a torch.Tensor [E, 3], got {type(shifts).__name__}")
    if shifts.dtype.is_floating_point or shifts.dtype.is_complex or shifts.dtype == torch.bool:
        raise TypeError(f"{sh_name} must be an integer tensor of cell shifts (as radius_graph "
                        f"returns them), got {shifts.dtype}")
    if tuple(shifts.shape) != (num_edges, 3):
        raise ValueError(f"{sh_name} must have shape [E, 3] = [{num_edges}, 3], got "
                         f"{tuple(shifts.shape)}")
    if shifts.device != device:
        raise ValueError(f"{sh_name} is on {shifts.device} but pos is on {device}")
    shifts = shifts.long()
    if num_edges == 0:
        return edge_index, shifts
    if bool(((edge_index < 0) | (edge_index >= num_atoms)).any()):
        e = _first(((edge_index < 0) | (edge_index >= num_atoms)).any(0))
        raise ValueError(f"{ei_name} has atom indices outside [0, {num_atoms}) (first at edge "
                         f"{e}: {edge_index[:, e].tolist()}); rebuild the neighbour list for these "
                         "atoms")
    from torch_pet.ops.radius_graph import cell_and_pbc, edge_vectors

    batch = index.batch
    full_cell, full_pbc = cell_and_pbc(pos, cell, pbc, index.num_structures)  # checks them
    neighbour, centre = edge_index[0], edge_index[1]
    moved = shifts != 0  # [E, 3]
    periodic = full_pbc[batch[centre]]  # [E, 3]
    with torch.no_grad():
        length = edge_vectors(pos.detach(), edge_index, shifts, full_cell.detach(),
                              batch).norm(dim=-1)
    limit = cutoff * (1.0 + 64 * torch.finfo(pos.dtype).eps)
    problems = torch.stack([
        batch[neighbour] != batch[centre],  # across structures
        (neighbour == centre) & ~moved.any(1),  # self-loop without shift
        (moved & ~periodic).any(1),  # shift along a non-periodic axis
        ~(length <= limit),  # too long (or NaN)
    ])  # [4, E]
    across, loop, aperiodic, long = problems.any(1).tolist()

    def where(e: int) -> str:
        return (f"edge {e} ({int(neighbour[e])} -> {int(centre[e])}, shift "
                f"{shifts[e].tolist()})")

    if across:
        raise ValueError(f"{ei_name}: {where(_first(problems[0]))} joins atoms of different "
                         "structures; edges must stay within a structure")
    if loop:
        raise ValueError(f"{ei_name}: {where(_first(problems[1]))} is a self-loop without a "
                         f"cell shift; an atom is never its own neighbour (only its periodic "
                         "images are)")
    if aperiodic:
        axis = "no cell is given" if cell is None else "that axis is not periodic (pbc)"
        raise ValueError(f"{sh_name}: {where(_first(problems[2]))} is shifted along an axis, "
                         f"but {axis}")
    if long:
        e = _first(problems[3])
        raise ValueError(f"{ei_name}: {where(e)} is {float(length[e]):.6g} long, beyond the "
                         f"model's cutoff {cutoff}; build the neighbour list with the model's "
                         "cutoff (radius_graph(pos, model.cutoff, ...))")
    key = torch.cat([edge_index, shifts.T])  # [5, E]
    _, inverse, counts = torch.unique(key, dim=1, return_inverse=True, return_counts=True)
    if bool((counts > 1).any()):
        first = torch.full_like(counts, num_edges).scatter_reduce(
            0, inverse, torch.arange(num_edges, device=device), "amin")
        duplicate = first[inverse] != torch.arange(num_edges, device=device)
        e = _first(duplicate)
        raise ValueError(f"{ei_name}: {where(e)} duplicates edge {int(first[inverse[e]])}; "
                         "each (neighbour, centre, shift) may appear once")
    if bool((centre[1:] < centre[:-1]).any()):
        order = torch.argsort(centre, stable=True)
        edge_index, shifts = edge_index[:, order], shifts[order]
    return edge_index, shifts
