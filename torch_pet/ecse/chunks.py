"""Running the backbone on ECSE's copies chunk by chunk, with activation checkpointing.

:func:`chunk_bounds` splits the frames into chunks of at most ``chunk_size`` copied atoms;
:class:`ChunkRunner` runs one chunk after another, recomputing a chunk's activations in the
backward pass where ``checkpoint`` asks for it.

Shapes: F frames (one copy each).
"""
import contextlib

import torch
import torch.utils.checkpoint

__all__ = ["chunk_bounds", "ChunkRunner"]


def chunk_bounds(sizes: torch.Tensor, chunk_size: int, checkpoint) -> list:
    """Frame ranges [a, b) whose copies hold at most chunk_size atoms (at least 1 copy).

    With ``checkpoint="auto"`` and more than one chunk, the first chunk is split: its
    first part (at most chunk_size / 8 atoms) is the probe whose activations are
    measured, so a projection over the budget costs little memory of its own.

    Shapes:
        sizes [F] (atoms of each copy) -> list of (a, b)
    """
    if sizes.numel() == 0:
        return []
    end = sizes.cumsum(0).cpu()
    bounds, start, offset = [], 0, 0
    while start < end.numel():
        stop = int(torch.searchsorted(end, offset + chunk_size, right=True))
        stop = max(stop, start + 1)
        bounds.append((start, stop))
        start, offset = stop, int(end[stop - 1])
    if checkpoint == "auto" and len(bounds) > 1:
        first_stop = bounds[0][1]
        probe = max(1, int(torch.searchsorted(end, chunk_size // 8, right=True)))
        if probe < first_stop:
            bounds[:1] = [(0, probe), (probe, first_stop)]
    return bounds


class ChunkRunner:
    """Runs the backbone on one chunk of copies after another, with activation
    checkpointing (recomputation in the backward pass) where ``checkpoint`` asks for it.

    "auto": one chunk needs none; otherwise the first (probe) chunk runs plainly while the
    bytes of the tensors its backward pass keeps are counted (unique storages, parameters
    excluded), and the other chunks are checkpointed if that, scaled to all copied atoms,
    exceeds ``budget``. Under torch.compile (no real storages to count) "auto"
    checkpoints whenever there is more than one chunk.
    """

    def __init__(self, checkpoint, num_chunks: int, total_atoms: int, budget: float):
        self.total_atoms, self.budget = total_atoms, budget
        self.projected_bytes = None  # measured "auto" estimate (for benchmarks)
        if checkpoint == "auto":
            self.use = False if num_chunks <= 1 else \
                (True if torch.compiler.is_compiling() else None)  # None: measure first
        else:
            self.use = bool(checkpoint)

    def __call__(self, fn, atoms: int, *tensors) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return fn(*tensors)
        if self.use is None:
            saved = _SavedBytes()
            with saved:
                y = fn(*tensors)
            self.projected_bytes = saved.bytes * self.total_atoms / max(atoms, 1)
            self.use = self.projected_bytes > self.budget
            return y
        if not self.use:
            return fn(*tensors)
        return torch.utils.checkpoint.checkpoint(fn, *tensors, use_reentrant=False,
                                                 preserve_rng_state=False,
                                                 context_fn=_recompute_context)


class _SavedBytes(torch.autograd.graph.saved_tensors_hooks):
    """Counts the bytes of the tensors autograd saves for the backward pass (unique
    storages; leaves that require grad, such as parameters, are not activations)."""

    def __init__(self):
        self.bytes, self._seen = 0, set()

        def pack(tensor):
            if not (tensor.is_leaf and tensor.requires_grad):  # parameters, positions
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in self._seen:
                    self._seen.add(storage.data_ptr())
                    self.bytes += storage.nbytes()
            return tensor

        super().__init__(pack, lambda tensor: tensor)


def _recompute_context():
    """Checkpoint contexts: the recomputation runs inside PET's double-backward mode if
    the forward pass did (so that both passes take the same attention path)."""
    from torch_pet.nn.attention import double_backward_requested

    return contextlib.nullcontext(), (_DoubleBackward() if double_backward_requested()
                                      else contextlib.nullcontext())


class _DoubleBackward:
    """Re-enterable :func:`torch_pet.nn.attention.double_backward` (checkpoint may
    recompute a chunk more than once)."""

    def __enter__(self):
        from torch_pet.nn.attention import double_backward

        self._context = double_backward()
        return self._context.__enter__()

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)
