"""PETConfig: the hyperparameters of :class:`~torch_pet.nn.pet.PET`, defined once.

PET's constructor signature, attributes, ``hyperparameters`` (what checkpoints store),
``__repr__`` and the ``torch-pet train`` options are all generated from these fields.
"""
from dataclasses import dataclass
from typing import Tuple

from torch_pet.config import POSITIVE, POSITIVE_INT, Check, Config, OptionError, option
from torch_pet.nn.attention import ATTENTION_MODES
from torch_pet.nn.blocks import BLOCKS
from torch_pet.nn.cutoff import CUTOFF_FUNCTIONS

__all__ = ["PETConfig"]

_ATOMIC_NUMBER = Check(lambda z: 1 <= z <= 118, "distinct atomic numbers >= 1 (at most 118)")


@dataclass
class PETConfig(Config):
    """Hyperparameters of PET (see :class:`~torch_pet.nn.pet.PET`); checked on construction.

    Shapes: the token width is C = ``hidden_channels``; the receptive field is
    ``num_blocks * cutoff``.
    """

    species: Tuple[int, ...] = option(
        tuple(range(1, 119)), "atomic numbers the model knows (others raise ValueError)",
        check=_ATOMIC_NUMBER, cli=False)
    out_channels: int = option(
        1, "width of the target (1 for energies, 3 for a dipole vector, ...)",
        check=POSITIVE_INT, cli=False)
    hidden_channels: int = option(128, "token width d (divisible by num_heads)",
                                  check=POSITIVE_INT)
    num_heads: int = option(4, "attention heads", check=POSITIVE_INT)
    num_layers: int = option(3, "transformer layers per message-passing block",
                             check=POSITIVE_INT)
    num_blocks: int = option(3, "message-passing blocks (receptive field num_blocks x cutoff)",
                             check=POSITIVE_INT)
    ff_channels: int = option(512, "hidden width of the transformer feed-forward networks",
                              check=POSITIVE_INT)
    head_channels: int = option(128, "hidden width of the atomic and bond heads",
                                check=POSITIVE_INT)
    cutoff: float = option(5.0, "cutoff radius R_c, in the units of pos (Angstrom)",
                           check=POSITIVE)
    cutoff_width: float = option(0.2, "width of the switching shell of the cutoff function",
                                 check=POSITIVE)
    per_atom: bool = option(False, "return per-atom contributions [N, out] instead of sums "
                            "[B, out]", cli=False)
    distance_only: bool = option(False, "embed only |r_ij|: an exactly rotation-invariant "
                                 "PET, e.g. the auxiliary model of ECSE")
    attention: str = option("auto", "attention kernel (torch_pet.nn.attention)",
                            choices=ATTENTION_MODES)
    cutoff_function: str = option("cosine", "cutoff function: cosine (the paper's) or bump",
                                  choices=CUTOFF_FUNCTIONS)
    block: str = option("paper", "transformer layers of each block: paper (post-LayerNorm, "
                        "SiLU feed-forward) or modern (pre-RMSNorm, SwiGLU; "
                        "torch_pet.nn.blocks)", choices=BLOCKS)

    def check(self) -> None:
        species = self.species
        if not species or len(set(species)) != len(species):
            raise OptionError("species", f"must be distinct atomic numbers >= 1, got "
                              f"{list(species)}", type(self).__name__)
        if self.hidden_channels % self.num_heads:
            raise OptionError("hidden_channels", f"= {self.hidden_channels} must be divisible "
                              f"by num_heads = {self.num_heads}", type(self).__name__)
        if self.cutoff_width >= self.cutoff:
            raise OptionError("cutoff_width", f"= {self.cutoff_width} must be smaller than "
                              f"cutoff = {self.cutoff}", type(self).__name__)
