"""Helpers of the PET tests: small models and structures."""
import torch
from torch_geometric.data import Batch, Data


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
