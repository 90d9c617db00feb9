"""choose_ecse_cutoff: R_out and frame options from the point spacing of a cloud."""
import pytest
import torch
from torch_geometric.data import Batch

from torch_pet.datasets import ProceduralShapes
from torch_pet.ecse.cutoff_choice import choose_ecse_cutoff
from torch_pet.ecse.frames import ecse_frames
from torch_pet.ops.radius_graph import edge_vectors, radius_graph
from torch_pet.testing import random_rotation


def _grid(spacing, n=6):
    axis = torch.arange(n, dtype=torch.float64) * spacing
    return torch.cartesian_prod(axis, axis, axis)  # [n^3, 3]


def test_cutoff_on_a_cubic_grid():
    """Simple cubic grid of spacing a: nearest neighbour a; the 8th neighbour of an inner
    point is at a·sqrt(2) (6 at a, 12 at a·sqrt(2)); corners and edges reach farther."""
    choice = choose_ecse_cutoff(_grid(0.5), quantile=0.05)
    assert choice.length_unit == pytest.approx(0.5)
    assert choice.cutoff == pytest.approx(0.5 * 2 ** 0.5)
    assert choice.frame_options == pytest.approx({"delta_r": 0.075, "beta": 10.0})
    assert choose_ecse_cutoff(_grid(0.5), quantile=1.0).cutoff > choice.cutoff


def test_cutoff_scales_with_the_cloud_and_is_rotation_invariant():
    data = Batch.from_data_list(list(ProceduralShapes("train", num_per_class=1, num_points=128,
                                                      classes=[0, 5, 8], dtype=torch.float64)))
    base = choose_ecse_cutoff(data.pos, data.batch)
    scaled = choose_ecse_cutoff(3.0 * data.pos, data.batch)
    assert scaled.cutoff == pytest.approx(3 * base.cutoff)
    assert scaled.length_unit == pytest.approx(3 * base.length_unit)
    assert scaled.frame_options["beta"] == pytest.approx(base.frame_options["beta"] / 3)
    rotated = choose_ecse_cutoff(data.pos @ random_rotation(5).T + 1.0, data.batch)
    assert rotated.cutoff == pytest.approx(base.cutoff, rel=1e-9)
    # pooled over clouds: differs from a single cloud's choice
    assert choose_ecse_cutoff(data.pos[:128]).cutoff != pytest.approx(base.cutoff)
    # more neighbours -> a larger cutoff
    assert choose_ecse_cutoff(data.pos, data.batch, neighbours=16).cutoff > base.cutoff


def test_cutoff_gives_frames_to_every_cloud():
    data = Batch.from_data_list(list(ProceduralShapes("test", num_per_class=1, num_points=256,
                                                      dtype=torch.float64)))
    choice = choose_ecse_cutoff(data.pos, data.batch)
    edge_index, shifts = radius_graph(data.pos, choice.cutoff, data.batch)
    vectors = edge_vectors(data.pos, edge_index, shifts, None, data.batch)
    frames = ecse_frames(vectors, edge_index[1], data.num_nodes, data.batch, data.num_graphs,
                         outer_cutoff=choice.cutoff, **choice.frame_options)
    assert bool((frames.aux_weight == 0).all())  # no cloud needs an auxiliary model
    assert bool((torch.bincount(frames.pool, minlength=data.num_graphs) > 0).all())
    # R_in is a couple of point spacings: frames are local
    assert 1.0 < float(frames.inner_cutoff.mean() / choice.length_unit) < 4.0


def test_cutoff_bad_input():
    pos = _grid(1.0, 3)
    with pytest.raises(ValueError, match="pos must be a tensor of shape"):
        choose_ecse_cutoff(pos[:, :2])
    with pytest.raises(TypeError, match="floating"):
        choose_ecse_cutoff(pos.long())
    with pytest.raises(ValueError, match="NaN"):
        choose_ecse_cutoff(torch.full((10, 3), float("nan")))
    with pytest.raises(ValueError, match="neighbours"):
        choose_ecse_cutoff(pos, neighbours=1)
    with pytest.raises(ValueError, match="quantile"):
        choose_ecse_cutoff(pos, quantile=0.0)
    with pytest.raises(ValueError, match="batch"):
        choose_ecse_cutoff(pos, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="cloud 0 has 5 points"):
        choose_ecse_cutoff(pos[:5])
    with pytest.raises(ValueError, match="duplicate"):
        choose_ecse_cutoff(torch.zeros(12, 3))


def test_ecse_with_the_chosen_cutoff_makes_a_cloud_classifier_invariant():
    """A coordinate MLP with max pooling (PointNet-like, not invariant) wrapped in ECSE with
    the helper's settings: logits invariant to round-off; the raw model's are not."""
    from torch_geometric.nn import global_max_pool, global_mean_pool

    from torch_pet import ECSESymmetrizer
    from torch_pet.testing import symmetry_error

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()

    def logits(model, batch):  # per cloud: max over points of an MLP of centred coordinates
        centred = batch.pos - global_mean_pool(batch.pos, batch.batch)[batch.batch]
        return global_max_pool(model(centred), batch.batch)

    data = Batch.from_data_list(list(ProceduralShapes("test", num_per_class=1, num_points=48,
                                                      classes=[2, 8], dtype=torch.float64)))
    choice = choose_ecse_cutoff(data.pos, data.batch)
    wrapped = ECSESymmetrizer(mlp, cutoff=choice.cutoff, frame_options=choice.frame_options,
                              adapter=logits)
    rotation = random_rotation(7)
    assert symmetry_error(lambda b: logits(mlp, b), data, "scalar", rotation=rotation) > 1e-2
    assert symmetry_error(wrapped, data, "scalar", rotation=rotation) < 1e-10
