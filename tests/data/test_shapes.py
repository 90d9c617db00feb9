"""ProceduralShapes: seeded, deterministic, right shapes and classes, canonical normalisation."""
import pytest
import torch

from torch_pet.datasets import SHAPE_CLASSES, ProceduralShapes
from torch_pet.datasets.shapes import sample_shape


def test_shapes_classes_and_normalisation():
    data = ProceduralShapes("train", num_per_class=2, num_points=64)
    assert len(data) == 2 * len(SHAPE_CLASSES) and data.num_classes == len(SHAPE_CLASSES)
    assert 10 <= len(SHAPE_CLASSES) <= 20
    labels = torch.cat([d.y for d in data])
    assert torch.equal(torch.bincount(labels), torch.full((len(SHAPE_CLASSES),), 2))
    assert torch.equal(labels[:len(SHAPE_CLASSES)], torch.arange(len(SHAPE_CLASSES)))  # interleaved
    for cloud in data:
        assert cloud.pos.shape == (64, 3) and cloud.pos.dtype == torch.float32
        assert cloud.y.dtype == torch.long and cloud.y.shape == (1,)
        assert cloud.pos.mean(0).abs().max() < 1e-5          # centred
        assert 0.9 < float(cloud.pos.norm(dim=1).max()) < 1.1  # max radius 1 (+ noise)
        assert bool(torch.isfinite(cloud.pos).all())


def test_shapes_deterministic_and_independent_of_request():
    a = ProceduralShapes("test", num_per_class=2, num_points=32, seed=3)
    b = ProceduralShapes("test", num_per_class=3, num_points=32, seed=3)
    c = ProceduralShapes("test", num_per_class=2, num_points=32, seed=3, classes=[4, 7])
    n = len(SHAPE_CLASSES)
    assert torch.equal(a[0].pos, b[0].pos) and torch.equal(a[n + 4].pos, b[n + 4].pos)
    # cloud k of class c does not depend on which other classes are asked for
    assert torch.equal(c[0].pos, a[4].pos) and torch.equal(c[3].pos, a[n + 7].pos)
    assert int(c[1].y) == 7
    other_seed = ProceduralShapes("test", num_per_class=1, num_points=32, seed=4)
    other_split = ProceduralShapes("train", num_per_class=1, num_points=32, seed=3)
    assert not torch.allclose(other_seed[0].pos, a[0].pos)
    assert not torch.allclose(other_split[0].pos, a[0].pos)


def test_shapes_are_distinguishable_and_canonical():
    """Classes differ in a rotation-dependent statistic (the spread along z vs x/y), so a
    canonical-orientation classifier has something to learn, and noise-free clouds of one
    class are not all the same (random proportions)."""
    data = ProceduralShapes("train", num_per_class=3, num_points=256, noise=0.0)
    spread = torch.stack([d.pos.std(0) for d in data])  # [S, 3]
    cylinder = [d for d in data if int(d.y) == SHAPE_CLASSES.index("cylinder")]
    for cloud in cylinder:  # axis along z
        std = cloud.pos.std(0)
        assert std[2] > 1.5 * std[:2].max()
    assert not torch.allclose(cylinder[0].pos.std(0), cylinder[1].pos.std(0), atol=1e-3)
    assert spread.std(0).min() > 0.02
    torus = next(d for d in data if int(d.y) == SHAPE_CLASSES.index("torus"))
    assert float(torus.pos.norm(dim=1).min()) > 0.3  # a hole in the middle


def test_shapes_float64_and_sizes():
    data = ProceduralShapes("val", num_per_class=1, num_points=1024, classes=[0],
                            dtype=torch.float64)
    assert data[0].pos.shape == (1024, 3) and data[0].pos.dtype == torch.float64


def test_shapes_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        ProceduralShapes("training")
    with pytest.raises(ValueError, match="num_per_class"):
        ProceduralShapes(num_per_class=0)
    with pytest.raises(ValueError, match="num_points"):
        ProceduralShapes(num_points=3)
    with pytest.raises(ValueError, match="classes"):
        ProceduralShapes(classes=[len(SHAPE_CLASSES)])
    with pytest.raises(ValueError, match="classes"):
        ProceduralShapes(classes=[1, 1])
    with pytest.raises(ValueError, match="noise"):
        ProceduralShapes(noise=-0.1)
    with pytest.raises(TypeError, match="dtype"):
        ProceduralShapes(dtype=torch.int64)
    with pytest.raises(ValueError, match="label"):
        sample_shape(99, 10, torch.Generator())
