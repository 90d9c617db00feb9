"""Raw files of a tiny local QM9, so that ``torch_geometric.datasets.QM9`` never downloads.

PyG 2.8's QM9 expects different raw files depending on whether rdkit is installed:
without rdkit ``raw/qm9_v3.pt`` (a ``torch.save``d list of dicts, PyG's pre-processed
release), with rdkit ``raw/gdb9.sdf``, ``raw/gdb9.sdf.csv`` and ``raw/uncharacterized.txt``
(the MoleculeNet originals). The fixture writes both sets from the same six hand-written
molecules (approximate QM9 gdb 1-6 geometries; target values are plausible, not QM9's),
so it works either way.
"""
import os

import torch

HAR2EV = 27.211386246
KCALMOL2EV = 0.04336414

# (name, [(symbol, x, y, z)], bonds [(i, j, order)], targets in the csv order:
#  A B C (GHz), mu (D), alpha (a0^3), homo lumo gap (Ha), r2 (a0^2), zpve u0 u298 h298 g298
#  (Ha), cv (cal/mol K), u0_atom u298_atom h298_atom g298_atom (kcal/mol))
MOLECULES = [
    ("gdb_1", [("C", -0.0127, 1.0858, 0.0080), ("H", 0.0022, -0.0060, 0.0020),
               ("H", 1.0117, 1.4638, 0.0003), ("H", -0.5408, 1.4475, -0.8766),
               ("H", -0.5238, 1.4379, 0.9064)],
     [(0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1)],
     [157.7, 157.7, 157.7, 0.0, 13.21, -0.3877, 0.1171, 0.5048, 35.36, 0.0447, -40.4789,
      -40.4761, -40.4751, -40.4986, 6.469, -395.0, -398.6, -401.0, -372.5]),
    ("gdb_2", [("N", -0.0404, 1.0241, 0.0626), ("H", 0.0173, 0.0125, -0.0274),
               ("H", 0.9158, 1.3587, -0.0288), ("H", -0.5202, 1.3435, -0.7755)],
     [(0, 1, 1), (0, 2, 1), (0, 3, 1)],
     [293.6, 293.5, 191.4, 1.6256, 9.46, -0.2570, 0.0829, 0.3399, 26.16, 0.0346, -56.5257,
      -56.5234, -56.5224, -56.5446, 6.316, -276.9, -278.6, -280.4, -259.3]),
    ("gdb_3", [("O", -0.0344, 0.9775, 0.0076), ("H", 0.0648, 0.0206, 0.0015),
               ("H", 0.8718, 1.3008, 0.0007)],
     [(0, 1, 1), (0, 2, 1)],
     [799.6, 437.9, 282.9, 1.8511, 6.31, -0.2928, 0.0687, 0.3615, 19.00, 0.0213, -76.4046,
      -76.4017, -76.4008, -76.4224, 6.002, -213.1, -213.3, -213.8, -201.0]),
    ("gdb_4", [("C", 0.5995, 0.0, 1.0), ("C", -0.5995, 0.0, 1.0), ("H", -1.6616, 0.0, 1.0),
               ("H", 1.6616, 0.0, 1.0)],
     [(0, 1, 3), (1, 2, 1), (0, 3, 1)],
     [0.0, 35.61, 35.61, 0.0, 16.28, -0.2845, 0.0506, 0.3351, 59.52, 0.0269, -77.3084,
      -77.3054, -77.3045, -77.3271, 8.574, -388.1, -390.1, -392.5, -365.9]),
    ("gdb_5", [("C", -0.0133, 1.1325, 0.0083), ("N", 0.0023, -0.0192, 0.0019),
               ("H", -0.0279, 2.1990, 0.0142)],
     [(0, 1, 3), (0, 2, 1)],
     [0.0, 44.59, 44.59, 2.8937, 12.99, -0.3604, 0.0191, 0.3796, 48.75, 0.0160, -93.4119,
      -93.4090, -93.4081, -93.4312, 6.278, -301.8, -302.9, -304.1, -288.0]),
    ("gdb_6", [("C", -0.0087, 0.5939, 0.0), ("O", 0.0, -0.6100, 0.0),
               ("H", 0.9370, 1.1749, 0.0), ("H", -0.9550, 1.1749, 0.0)],
     [(0, 1, 2), (0, 2, 1), (0, 3, 1)],
     [285.5, 38.99, 34.30, 2.1089, 14.18, -0.2670, -0.0406, 0.2263, 59.96, 0.0267, -114.4834,
      -114.4805, -114.4796, -114.5064, 6.413, -358.8, -360.3, -361.9, -342.5]),
]

SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
TYPES = {"H": 0, "C": 1, "N": 2, "O": 3, "F": 4}
CONVERSION = [1.0, 1.0, HAR2EV, HAR2EV, HAR2EV, 1.0, HAR2EV, HAR2EV, HAR2EV, HAR2EV, HAR2EV,
              1.0, KCALMOL2EV, KCALMOL2EV, KCALMOL2EV, KCALMOL2EV, 1.0, 1.0, 1.0]


def pyg_targets(csv_targets):
    """The csv columns as PyG's y [1, 19]: rotational constants last, PyG's units."""
    reordered = list(csv_targets[3:]) + list(csv_targets[:3])
    return torch.tensor([[v * c for v, c in zip(reordered, CONVERSION)]], dtype=torch.float)


def _preprocessed_dicts():
    """What PyG's released qm9_v3.pt holds: one dict of tensors per molecule."""
    out = []
    for idx, (name, atoms, bonds, targets) in enumerate(MOLECULES):
        z = torch.tensor([SYMBOLS[s] for s, *_ in atoms])
        rows = [i for i, j, _ in bonds] + [j for i, j, _ in bonds]
        cols = [j for i, j, _ in bonds] + [i for i, j, _ in bonds]
        bond_type = [min(order, 3) - 1 for *_, order in bonds] * 2
        edge_index = torch.tensor([rows, cols])
        perm = (edge_index[0] * len(atoms) + edge_index[1]).argsort()
        edge_index = edge_index[:, perm]
        edge_attr = torch.nn.functional.one_hot(torch.tensor(bond_type)[perm], 4).float()
        one_hot = torch.nn.functional.one_hot(torch.tensor([TYPES[s] for s, *_ in atoms]), 5)
        num_hs = torch.zeros(len(atoms)).index_add_(
            0, edge_index[1], (z[edge_index[0]] == 1).float())
        extra = torch.stack([z.float(), torch.zeros(len(atoms)), torch.zeros(len(atoms)),
                             torch.zeros(len(atoms)), torch.zeros(len(atoms)), num_hs], dim=1)
        out.append(dict(
            x=torch.cat([one_hot.float(), extra], dim=1), z=z,
            pos=torch.tensor([xyz for _, *xyz in atoms], dtype=torch.float),
            edge_index=edge_index, edge_attr=edge_attr, y=pyg_targets(targets),
            name=name, idx=idx,
        ))
    return out


def _sdf_block(name, atoms, bonds):
    lines = [name, "     fixture          3D", ""]
    lines.append(f"{len(atoms):3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000")
    for symbol, x, y, z in atoms:
        lines.append(f"{x:10.4f}{y:10.4f}{z:10.4f} {symbol:<3} 0  0  0  0  0  0  0  0  0  0  0  0")
    for i, j, order in bonds:
        lines.append(f"{i + 1:3d}{j + 1:3d}{order:3d}  0")
    lines += ["M  END", "$$$$"]
    return "\n".join(lines) + "\n"


def write_qm9_raw(raw_dir):
    """Write both flavours of PyG's QM9 raw files into ``raw_dir``."""
    os.makedirs(raw_dir, exist_ok=True)
    torch.save(_preprocessed_dicts(), os.path.join(raw_dir, "qm9_v3.pt"))
    with open(os.path.join(raw_dir, "gdb9.sdf"), "w") as f:
        f.writelines(_sdf_block(name, atoms, bonds) for name, atoms, bonds, _ in MOLECULES)
    header = ("mol_id,A,B,C,mu,alpha,homo,lumo,gap,r2,zpve,u0,u298,h298,g298,cv,"
              "u0_atom,u298_atom,h298_atom,g298_atom")
    with open(os.path.join(raw_dir, "gdb9.sdf.csv"), "w") as f:
        f.write(header + "\n")
        for name, _, _, targets in MOLECULES:
            f.write(",".join([name] + [repr(v) for v in targets]) + "\n")
    with open(os.path.join(raw_dir, "uncharacterized.txt"), "w") as f:
        f.write("\n".join(["header"] * 9 + ["  999999  fixture: no molecule skipped", "footer"])
                + "\n")


