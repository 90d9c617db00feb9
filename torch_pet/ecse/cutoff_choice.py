"""ECSE settings for point clouds without a physical length scale.

ECSE's defaults are in Å for molecules (R_out 5 Å, Δ_R = 0.15 Å, β = 5 Å⁻¹), where nearest
neighbours sit ~1 Å apart. A point cloud (a CAD model, a scan) has arbitrary units and a
sampling density of its own, so :func:`choose_ecse_cutoff` measures the cloud instead:

* length unit h: the median nearest-neighbour distance over all points (plays the role of
  1 Å): Δ_R = 0.15·h, β = 5/h (the dimensionless ω, Δω and the pruning options stay);
* R_out: the ``quantile`` (default 0.9) over points of the distance to the
  ``neighbours``-th (default 8) nearest neighbour, so that nine points in ten have at least
  eight neighbours to build frames from. Frames of the remaining points may be fewer, but
  in structure mode the frames of all points are pooled: exactness needs only one frame per
  cloud, and R_out only bounds the search (cost ~ N·(neighbours within R_out)²).

Everything is computed from distances, so the choice is rotation invariant; apply it once
to a training set (pooled statistics) and use the same settings for every cloud.

>>> choice = choose_ecse_cutoff(train_batch.pos, train_batch.batch)
>>> ECSESymmetrizer(model, cutoff=choice.cutoff, frame_options=choice.frame_options, ...)

Shapes: N points, B clouds.
"""
from typing import NamedTuple, Optional

import torch

__all__ = ["ECSECutoff", "choose_ecse_cutoff", "DEFAULT_NEIGHBOURS", "DEFAULT_QUANTILE"]

DEFAULT_NEIGHBOURS = 8
DEFAULT_QUANTILE = 0.9
# ECSE's molecular defaults (ECSE.md section 4), per Å of nearest-neighbour spacing.
_DELTA_R_PER_UNIT = 0.15
_BETA_TIMES_UNIT = 5.0
_MAX_POINTS_PER_BLOCK = 2048


class ECSECutoff(NamedTuple):
    """Result of :func:`choose_ecse_cutoff`.

    cutoff: R_out for ``ECSESymmetrizer(cutoff=...)``; frame_options: ``delta_r`` and
    ``beta`` for ``ECSESymmetrizer(frame_options=...)``; length_unit: h, the median
    nearest-neighbour distance.
    """

    cutoff: float
    frame_options: dict
    length_unit: float


def _kth_neighbour_distances(pos: torch.Tensor, k: int) -> torch.Tensor:
    """Distances to the 1st and the k-th nearest other point of every point of one cloud.

    Shapes:
        pos [n, 3] -> [n, 2]
    """
    out = []
    for a in range(0, pos.shape[0], _MAX_POINTS_PER_BLOCK):
        distance = torch.cdist(pos[a:a + _MAX_POINTS_PER_BLOCK], pos)  # [b, n]
        rows = torch.arange(distance.shape[0], device=pos.device)
        distance[rows, rows + a] = float("inf")  # not its own neighbour
        nearest = distance.topk(k, dim=1, largest=False).values  # [b, k]
        out.append(torch.stack([nearest[:, 0], nearest[:, k - 1]], dim=1))
    return torch.cat(out)


def choose_ecse_cutoff(pos: torch.Tensor, batch: Optional[torch.Tensor] = None, *,
                       neighbours: int = DEFAULT_NEIGHBOURS,
                       quantile: float = DEFAULT_QUANTILE) -> ECSECutoff:
    """Pick ECSE's R_out, Δ_R and β from the point spacing of one or more clouds.

    Args:
        pos: points of one cloud, or of several with ``batch``.
        batch: cloud of each point (sorted or not); None: one cloud.
        neighbours: R_out reaches this many neighbours of most points (>= 2: a frame needs
            two neighbours).
        quantile: ... of this fraction of the points (in (0, 1]).

    Shapes:
        pos [N, 3], batch [N] -> :class:`ECSECutoff`
    """
    if not isinstance(pos, torch.Tensor) or pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError("choose_ecse_cutoff: pos must be a tensor of shape [N, 3], got "
                         f"{getattr(pos, 'shape', type(pos).__name__)}")
    if not pos.is_floating_point():
        raise TypeError(f"choose_ecse_cutoff: pos must be floating point, got {pos.dtype}")
    if not bool(torch.isfinite(pos).all()):
        raise ValueError("choose_ecse_cutoff: pos contains NaN or Inf")
    if not (isinstance(neighbours, int) and neighbours >= 2):
        raise ValueError(f"choose_ecse_cutoff: neighbours must be an int >= 2, got {neighbours!r}")
    if not (isinstance(quantile, float) and 0 < quantile <= 1):
        raise ValueError(f"choose_ecse_cutoff: quantile must be a float in (0, 1], got {quantile!r}")
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    if batch.shape != (pos.shape[0],) or batch.dtype != torch.long:
        raise ValueError(f"choose_ecse_cutoff: batch must be an int64 tensor of shape [N] = "
                         f"[{pos.shape[0]}], got {tuple(batch.shape)} {batch.dtype}")
    pos = pos.detach().double()
    stats = []
    for cloud in torch.unique(batch):
        points = pos[batch == cloud]
        if points.shape[0] <= neighbours:
            raise ValueError(f"choose_ecse_cutoff: cloud {int(cloud)} has {points.shape[0]} points; "
                             f"it needs more than neighbours={neighbours} (lower neighbours)")
        stats.append(_kth_neighbour_distances(points, neighbours))
    stats = torch.cat(stats)
    unit = float(stats[:, 0].median())
    if not unit > 0:
        raise ValueError("choose_ecse_cutoff: the median nearest-neighbour distance is 0 (duplicate "
                         "points); remove duplicates first")
    cutoff = float(torch.quantile(stats[:, 1], quantile))
    return ECSECutoff(cutoff=cutoff, length_unit=unit,
                      frame_options={"delta_r": _DELTA_R_PER_UNIT * unit,
                                     "beta": _BETA_TIMES_UNIT / unit})
