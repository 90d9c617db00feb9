"""The input of ECSE, read and checked once: positions, structure index, cell and pbc.

Shapes: N atoms, B structures.
"""
import torch
from torch_geometric.data import Data

from torch_pet.inputs import StructureIndex, read_structure_index

__all__ = ["Structures", "read_structures"]


class Structures:
    """Positions, structure index (batch, ptr), per-structure atom counts and periodic cell
    of an input.

    Shapes:
        pos [N, 3], batch [N], ptr [B+1], counts [B], cell [B, 3, 3] or None, pbc [B, 3] or
        None; ``periodic``: the ``cell``/``pbc`` keyword arguments of ``radius_graph``
    """

    def __init__(self, pos, index: StructureIndex, cell, pbc):
        self.pos, self.index, self.cell, self.pbc = pos, index, cell, pbc
        self.batch, self.ptr, self.num_structures = index
        self.num_atoms = pos.shape[0]
        self.counts = self.ptr.diff()
        self.periodic = {}
        if cell is not None:
            self.periodic["cell"] = cell
        if pbc is not None:
            self.periodic["pbc"] = pbc


def read_structures(data: Data, owner: str = "ECSESymmetrizer") -> Structures:
    """:class:`Structures` of a ``Data``/``Batch``; bad input raises naming ``data.<key>``."""
    pos = getattr(data, "pos", None)
    if not isinstance(pos, torch.Tensor):
        raise TypeError(f"{owner}: data.pos must be a torch.Tensor of shape [N, 3], got "
                        f"{type(pos).__name__}")
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"{owner}: data.pos must have shape [N, 3], got {tuple(pos.shape)}")
    if pos.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{owner}: data.pos must be float32 or float64, got {pos.dtype}")
    if pos.shape[0] == 0:
        raise ValueError(f"{owner}: the input has no atoms (data.pos is empty)")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError(f"{owner}: data.pos contains NaN or Inf")
    for name in ("cell", "pbc"):
        value = getattr(data, name, None)
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"{owner}: data.{name} must be a torch.Tensor or None, got "
                            f"{type(value).__name__}")
    z = getattr(data, "z", None)  # per-atom attributes of another length would not be copied
    if isinstance(z, torch.Tensor) and (z.dim() == 0 or z.shape[0] != pos.shape[0]):
        raise ValueError(f"{owner}: data.z has shape {tuple(z.shape)} but data.pos has "
                         f"{pos.shape[0]} atoms; give one atomic number per row of pos")
    index = read_structure_index(data, pos, owner=f"{owner}: ")
    num_structures = index.num_structures
    cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
    if cell is not None:
        cell = cell.reshape(-1, 3, 3) if cell.numel() == 9 * num_structures else cell
        if cell.shape != (num_structures, 3, 3):
            raise ValueError(f"{owner}: data.cell must have shape [B, 3, 3] = "
                             f"[{num_structures}, 3, 3], got {tuple(cell.shape)}")
    if pbc is not None:
        pbc = pbc.reshape(-1, 3) if pbc.numel() == 3 * num_structures else pbc
        if pbc.shape != (num_structures, 3):
            raise ValueError(f"{owner}: data.pbc must have shape [B, 3] = "
                             f"[{num_structures}, 3], got {tuple(pbc.shape)}")
        if cell is None and bool(pbc.any()):
            raise ValueError(f"{owner}: data.pbc is set but data.cell is missing; give the cell")
    return Structures(pos, index, cell, pbc)
