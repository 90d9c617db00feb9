"""Helpers of the PET tests: small models and structures, and (only while the radius-graph
ops have not landed in ``torch_pet.ops``) a brute-force neighbour list."""
import math

import torch
from torch_geometric.data import Batch, Data

import torch_pet.ops


# --------------------------------------------------------------------------- fallback ops
def _brute_radius_graph(pos, r, batch=None, *, cell=None, pbc=None, loop=False,
                        return_vectors=False):
    n = pos.shape[0]
    batch = torch.zeros(n, dtype=torch.long) if batch is None else batch
    num_graphs = int(batch.max()) + 1 if n else 0
    if cell is not None:
        cell = cell.reshape(-1, 3, 3)
    if pbc is not None:
        pbc = pbc.reshape(-1, 3)
    rows = []
    for b in range(num_graphs):
        atoms = torch.nonzero(batch == b).flatten()
        p = pos[atoms]
        ranges = [range(1)] * 3
        lattice = torch.zeros(3, 3, dtype=pos.dtype)
        if pbc is not None and bool(pbc[b].any()):
            lattice = cell[b]
            reciprocal = torch.linalg.inv(lattice).T
            frac = p @ torch.linalg.inv(lattice)
            span = frac.max(0).values - frac.min(0).values
            ranges = []
            for k in range(3):
                m = math.ceil(r * float(reciprocal[k].norm()) + float(span[k])) if pbc[b, k] else 0
                ranges.append(range(-m, m + 1))
        for s0 in ranges[0]:
            for s1 in ranges[1]:
                for s2 in ranges[2]:
                    shift = torch.tensor([s0, s1, s2])
                    vec = p[None, :, :] - p[:, None, :] + shift.to(pos.dtype) @ lattice  # [i, j]
                    dist = vec.norm(dim=-1)
                    keep = dist < r
                    if not loop and s0 == s1 == s2 == 0:
                        keep &= ~torch.eye(len(atoms), dtype=torch.bool)
                    i, j = torch.nonzero(keep, as_tuple=True)
                    rows.append(torch.cat([atoms[i, None], atoms[j, None],
                                           shift.expand(len(i), 3)], dim=1))
    rows = torch.cat(rows) if rows else torch.zeros(0, 5, dtype=torch.long)
    for col in (4, 3, 2, 1, 0):  # sort by centre, neighbour, shift
        rows = rows[torch.argsort(rows[:, col], stable=True)]
    edge_index = torch.stack([rows[:, 1], rows[:, 0]])
    shifts = rows[:, 2:]
    if return_vectors:
        return edge_index, shifts, _edge_vectors(pos, edge_index, shifts, cell, batch)
    return edge_index, shifts


def _edge_vectors(pos, edge_index, shifts, cell=None, batch=None):
    j, i = edge_index
    vec = pos[j] - pos[i]
    if cell is not None and shifts.numel():
        cell = cell.reshape(-1, 3, 3)
        b = torch.zeros_like(i) if batch is None else batch[i]
        vec = vec + torch.bmm(shifts.to(pos.dtype)[:, None, :], cell[b])[:, 0]
    return vec


def _reverse_edge_index(edge_index, shifts):
    key = {(int(c), int(nb), *map(int, s)): e
           for e, (nb, c, s) in enumerate(zip(edge_index[0], edge_index[1], shifts))}
    return torch.tensor([key[(int(nb), int(c), *(-int(x) for x in s))]
                         for nb, c, s in zip(edge_index[0], edge_index[1], shifts)],
                        dtype=torch.long)


def install_fallback_ops(monkeypatch):
    """Install the brute-force ops while torch_pet.ops lacks its own."""
    for name, fn in (("radius_graph", _brute_radius_graph), ("edge_vectors", _edge_vectors),
                     ("reverse_edge_index", _reverse_edge_index)):
        if not hasattr(torch_pet.ops, name):
            monkeypatch.setattr(torch_pet.ops, name, fn, raising=False)


# --------------------------------------------------------------------------- structures
SPECIES = (1, 6, 7, 8)


def small_pet(**kwargs):
    from torch_pet import PET
    options = dict(species=SPECIES, hidden_channels=16, num_heads=2, num_layers=1,
                   num_blocks=2, ff_channels=32, head_channels=16, cutoff=3.0, cutoff_width=0.5)
    options.update(kwargs)
    return PET(**options)


def methane(dtype=torch.float64, scale=1.0, seed=None):
    """A distorted CH4 (hydrogens within ~1.5 A of the carbon)."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    pos = torch.tensor([[0.0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                        [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]], dtype=dtype) * scale
    pos = pos + 0.2 * torch.randn(5, 3, generator=gen, dtype=dtype)
    return Data(z=torch.tensor([6, 1, 1, 1, 1]), pos=pos)


def molecule(n=6, dtype=torch.float64, box=3.0, species=SPECIES):
    z = torch.tensor(species)[torch.randint(len(species), (n,))]
    return Data(z=z, pos=box * torch.rand(n, 3, dtype=dtype))


def periodic(n=8, dtype=torch.float64, length=4.0, tilt=0.3):
    cell = torch.tensor([[length, 0, 0], [tilt, length, 0], [0.2, -tilt, length]], dtype=dtype)
    frac = torch.rand(n, 3, dtype=dtype)
    z = torch.tensor(SPECIES)[torch.randint(len(SPECIES), (n,))]
    return Data(z=z, pos=frac @ cell, cell=cell[None], pbc=torch.ones(1, 3, dtype=torch.bool))


def batch_of(*structures):
    """A Batch; non-periodic structures get a zero cell and pbc=False when others have one."""
    structures = [s.clone() for s in structures]
    if any("cell" in s for s in structures):
        for s in structures:
            if "cell" not in s:
                s.cell = torch.zeros(1, 3, 3, dtype=s.pos.dtype)
                s.pbc = torch.zeros(1, 3, dtype=torch.bool)
    return Batch.from_data_list(structures)
