"""A tiny stand-in potential for the training tests (fast, follows PET's model contract)."""
import torch


class ToyPotential(torch.nn.Module):
    """Pair potential E = sum_{i != j} MLP(rbf(r_ij))[s_i] + sum_i e_self(Z_i).

    Same contract as PET for the trainer: ``model(data) -> [B, out_channels]``, buffer
    ``self_energies [num_species, out_channels]``, ``species`` list, hyperparameters stored
    as attributes.
    """

    def __init__(self, species=(1, 6), hidden_channels=8, out_channels=1):
        super().__init__()
        self.species = list(species)
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.register_buffer("centres", torch.linspace(0.5, 6.0, 12))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(12, hidden_channels), torch.nn.SiLU(),
                                       torch.nn.Linear(hidden_channels,
                                                       len(species) * out_channels))
        self.register_buffer("self_energies", torch.zeros(len(species), out_channels))
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(self.species)] = torch.arange(len(species))
        self.register_buffer("lookup", lookup, persistent=False)

    def forward(self, data):
        batch = data.batch if "batch" in data and data.batch is not None else \
            torch.zeros_like(data.z)
        num = int(batch.max()) + 1
        kind = self.lookup[data.z]
        same = (batch[:, None] == batch[None, :]) & ~torch.eye(len(batch), dtype=torch.bool)
        centre, neighbour = same.nonzero().unbind(1)
        r = (data.pos[neighbour] - data.pos[centre]).norm(dim=-1, keepdim=True)
        rbf = torch.exp(-4.0 * (r - self.centres) ** 2)
        pair = self.mlp(rbf).view(-1, len(self.species), self.out_channels)
        pair = pair[torch.arange(len(centre)), kind[centre]]
        atomic = torch.zeros(len(batch), self.out_channels, dtype=pair.dtype,
                             device=pair.device).index_add(0, centre, pair)
        atomic = atomic + self.self_energies[kind]
        return torch.zeros(num, self.out_channels, dtype=pair.dtype,
                           device=pair.device).index_add(0, batch, atomic)
