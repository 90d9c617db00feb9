"""Helpers of the checkpoint tests: small models and crafted or damaged files."""
import struct
import zipfile

import torch
from toy_potential import ToyPotential

import torch_pet.checkpoint as ckpt
from torch_pet import PET


def toy(seed=0):
    torch.manual_seed(seed)
    model = ToyPotential(species=(1, 6), hidden_channels=5)
    with torch.no_grad():
        model.self_energies.copy_(torch.tensor([[-13.0], [-40.0]]))
    return model


def tiny_pet(seed=0, dtype=torch.float32, **kwargs):
    torch.manual_seed(seed)
    options = dict(species=[1, 6], hidden_channels=8, num_heads=2, num_layers=1, num_blocks=1,
                   ff_channels=16, head_channels=8, cutoff=4.0)
    return PET(**{**options, **kwargs}).to(dtype)


def one_methane(dtype=torch.float32):
    from torch_pet.datasets import DistortedMethane
    return DistortedMethane("test", num_structures=1, dtype=dtype)[0]


def rewrite(path, record, rehash=True):
    """torch.save ``record``, with a freshly computed content hash as an attacker would."""
    record = dict(record)
    if rehash:
        record["content_sha256"] = ckpt.content_hash(record)
    torch.save(record, path)
    return str(path)


def payloads(raw: bytes, path: str):
    """(name, start, end) of every member of the zip file ``path`` (raw bytes ``raw``)."""
    with zipfile.ZipFile(path) as z:
        out = []
        for info in z.infolist():
            names, extra = struct.unpack("<HH", raw[info.header_offset + 26:
                                                    info.header_offset + 30])
            start = info.header_offset + 30 + names + extra
            out.append((info.filename, start, start + info.compress_size))
    return out
