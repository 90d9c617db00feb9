"""Procedural 3D shapes: a point-cloud classification set that needs no download.

Every cloud is sampled from a parametric shape with random proportions, in a canonical
orientation (symmetry axis along z, furniture upright and facing +x), centred on its
centroid, scaled so that its farthest point lies at distance 1, and jittered with
Gaussian noise. Clouds are reproducible: cloud k of a split depends only on
``(seed, split, class, k)``, not on how many clouds or which other classes are asked for.

>>> from torch_pet.datasets import ProceduralShapes
>>> train = ProceduralShapes("train", num_per_class=20, num_points=256)
>>> train[0]        # Data(pos=[256, 3], y=[1])

Shapes: P points per cloud, S clouds.
"""
import math
from typing import Callable, Optional, Sequence

import torch
from torch_geometric.data import Data, InMemoryDataset

__all__ = ["ProceduralShapes", "SHAPE_CLASSES", "sample_shape"]

_SPLITS = {"train": 0, "val": 1, "test": 2}


def _uniform(gen, n, low=0.0, high=1.0):
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


# ---------------------------------------------------------------------------------------
# Surface primitives: each returns (area, sampler(n) -> [n, 3]).
# ---------------------------------------------------------------------------------------


def _box(gen, size, centre=(0.0, 0.0, 0.0)):
    """Surface of an axis-aligned box with side lengths ``size``, faces area-weighted."""
    a, b, c = size
    areas = torch.tensor([b * c, b * c, a * c, a * c, a * b, a * b], dtype=torch.float64)

    def sample(n):
        face = torch.multinomial(areas, n, replacement=True, generator=gen)
        point = (torch.rand(n, 3, generator=gen, dtype=torch.float64) - 0.5) * torch.tensor(size)
        axis, sign = face // 2, (face % 2).to(torch.float64) * 2 - 1
        point[torch.arange(n), axis] = sign * torch.tensor(size, dtype=torch.float64)[axis] / 2
        return point + torch.tensor(centre, dtype=torch.float64)

    return float(areas.sum()), sample


def _ellipsoid(gen, axes, bumps=0.0, frequency=0):
    """Ellipsoid surface (directions uniform on the sphere, then scaled); with ``bumps`` the
    radius is modulated by ``1 + bumps cos(frequency theta) cos(frequency phi)``."""
    a, b, c = axes

    def sample(n):
        direction = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True)
        if bumps:
            theta = torch.acos(direction[:, 2].clamp(-1, 1))
            phi = torch.atan2(direction[:, 1], direction[:, 0])
            direction = direction * (1 + bumps * torch.cos(frequency * theta)
                                     * torch.cos(frequency * phi))[:, None]
        return direction * torch.tensor(axes, dtype=torch.float64)

    p = 1.6  # Knud Thomsen's approximation of the ellipsoid's area
    area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    return area, sample


def _disc(gen, radius, z):
    def sample(n):
        r = radius * _uniform(gen, n).sqrt()
        phi = _uniform(gen, n, 0, 2 * math.pi)
        return torch.stack([r * phi.cos(), r * phi.sin(), torch.full_like(r, z)], dim=1)

    return math.pi * radius ** 2, sample


def _frustum(gen, bottom, top, height, z0=0.0):
    """Lateral surface of a cone frustum along z (radius ``bottom`` at z0, ``top`` at z0 + h)."""
    slant = math.hypot(height, bottom - top)

    def sample(n):
        # area-uniform along the slant: density proportional to the radius
        u = _uniform(gen, n)
        if abs(bottom - top) > 1e-12:
            r = torch.sqrt(bottom ** 2 + u * (top ** 2 - bottom ** 2))
        else:
            r = torch.full_like(u, bottom)
        t = (r - bottom) / (top - bottom) if abs(bottom - top) > 1e-12 else u
        phi = _uniform(gen, n, 0, 2 * math.pi)
        return torch.stack([r * phi.cos(), r * phi.sin(), z0 + t * height], dim=1)

    return math.pi * (bottom + top) * slant, sample


def _torus(gen, major, minor):
    def sample(n):
        u, v = _uniform(gen, n, 0, 2 * math.pi), _uniform(gen, n, 0, 2 * math.pi)
        ring = major + minor * v.cos()
        return torch.stack([ring * u.cos(), ring * u.sin(), minor * v.sin()], dim=1)

    return 4 * math.pi ** 2 * major * minor, sample


def _helix(gen, radius, pitch, turns, tube):
    """A tube of radius ``tube`` around a helix along z."""
    length = turns * math.hypot(2 * math.pi * radius, pitch)

    def sample(n):
        t = _uniform(gen, n, 0, 2 * math.pi * turns)
        centre = torch.stack([radius * t.cos(), radius * t.sin(), pitch * t / (2 * math.pi)], 1)
        tangent = torch.stack([-radius * t.sin(), radius * t.cos(),
                               torch.full_like(t, pitch / (2 * math.pi))], 1)
        tangent = tangent / tangent.norm(dim=1, keepdim=True)
        normal = torch.stack([-t.cos(), -t.sin(), torch.zeros_like(t)], 1)
        binormal = torch.cross(tangent, normal, dim=1)
        v = _uniform(gen, n, 0, 2 * math.pi)[:, None]
        return centre + tube * (v.cos() * normal + v.sin() * binormal)

    return 2 * math.pi * tube * length, sample


def _union(gen, parts, n):
    """n points over the parts, allocated in proportion to their areas."""
    areas = torch.tensor([area for area, _ in parts], dtype=torch.float64)
    counts = torch.bincount(torch.multinomial(areas, n, replacement=True, generator=gen),
                            minlength=len(parts))
    return torch.cat([sample(int(k)) for (_, sample), k in zip(parts, counts) if k > 0])


def _legs(gen, width, depth, height, thickness):
    return [_box(gen, (thickness, thickness, height), (sx * (width - thickness) / 2,
                                                        sy * (depth - thickness) / 2, height / 2))
            for sx in (-1, 1) for sy in (-1, 1)]


# ---------------------------------------------------------------------------------------
# The classes: name -> builder(gen) -> parts
# ---------------------------------------------------------------------------------------


def _sphere(g):
    return [_ellipsoid(g, (1.0, 1.0, 1.0), bumps=float(_uniform(g, 1, 0.1, 0.2)),
                       frequency=int(torch.randint(3, 6, (1,), generator=g)))]


def _ellipsoid_shape(g):
    return [_ellipsoid(g, (1.0, float(_uniform(g, 1, 0.45, 0.7)), float(_uniform(g, 1, 0.2, 0.35))))]


def _cuboid(g):
    return [_box(g, (1.0, float(_uniform(g, 1, 0.5, 0.8)), float(_uniform(g, 1, 0.2, 0.4))))]


def _cylinder(g):
    r, h = float(_uniform(g, 1, 0.2, 0.35)), float(_uniform(g, 1, 1.2, 2.0))
    return [_frustum(g, r, r, h), _disc(g, r, 0.0), _disc(g, r, h)]


def _cone(g):
    r, h = float(_uniform(g, 1, 0.4, 0.6)), float(_uniform(g, 1, 1.0, 1.6))
    return [_frustum(g, r, 0.0, h), _disc(g, r, 0.0)]


def _torus_shape(g):
    return [_torus(g, 1.0, float(_uniform(g, 1, 0.15, 0.35)))]


def _helix_shape(g):
    return [_helix(g, 0.5, float(_uniform(g, 1, 0.35, 0.6)), float(_uniform(g, 1, 2.5, 3.5)),
                   float(_uniform(g, 1, 0.08, 0.12)))]


def _table(g):
    w, d, h = 1.0, float(_uniform(g, 1, 0.5, 0.8)), float(_uniform(g, 1, 0.5, 0.8))
    return _legs(g, w, d, h, 0.08) + [_box(g, (w, d, 0.06), (0.0, 0.0, h + 0.03))]


def _chair(g):
    w, seat = float(_uniform(g, 1, 0.45, 0.6)), float(_uniform(g, 1, 0.4, 0.5))
    back = float(_uniform(g, 1, 0.45, 0.7))
    return _legs(g, w, w, seat, 0.06) + [_box(g, (w, w, 0.05), (0.0, 0.0, seat + 0.025)),
                                         _box(g, (0.05, w, back), (-(w - 0.05) / 2, 0.0,
                                                                   seat + 0.05 + back / 2))]


def _triangle(gen, a, b, c):
    a, b, c = (torch.tensor(v, dtype=torch.float64) for v in (a, b, c))

    def sample(n):
        u, v = _uniform(gen, n), _uniform(gen, n)
        flip = u + v > 1
        u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)
        return a + u[:, None] * (b - a) + v[:, None] * (c - a)

    return 0.5 * float(torch.linalg.cross(b - a, c - a).norm()), sample


def _pyramid(g):
    """Square pyramid: base at z = 0, apex at height h (four triangles and the base)."""
    s, h = float(_uniform(g, 1, 0.8, 1.2)) / 2, float(_uniform(g, 1, 0.7, 1.2))
    corners = [(s, s, 0.0), (-s, s, 0.0), (-s, -s, 0.0), (s, -s, 0.0)]
    sides = [_triangle(g, corners[k], corners[(k + 1) % 4], (0.0, 0.0, h)) for k in range(4)]
    return sides + [_triangle(g, corners[0], corners[1], corners[2]),
                    _triangle(g, corners[0], corners[2], corners[3])]


def _mug(g):
    r, h = float(_uniform(g, 1, 0.35, 0.45)), float(_uniform(g, 1, 0.8, 1.1))
    handle_area, handle = _torus(g, h / 4, 0.05)

    def handle_sample(n):  # a ring in the xz plane, beside the body at +x
        p = handle(n)
        return torch.stack([p[:, 0] + r + h / 8, p[:, 2], p[:, 1] + h / 2], dim=1)

    return [_frustum(g, r, r, h), _disc(g, r, 0.0), (handle_area, handle_sample)]


def _l_shape(g):
    a, b, t = float(_uniform(g, 1, 0.9, 1.2)), float(_uniform(g, 1, 0.5, 0.8)), 0.2
    return [_box(g, (a, t, t), (a / 2, 0.0, 0.0)), _box(g, (t, t, b), (0.0, 0.0, b / 2 + t / 2))]


def _jack(g):
    """Three orthogonal bars of different lengths crossing at the origin."""
    t = float(_uniform(g, 1, 0.12, 0.2))
    lengths = (1.0, float(_uniform(g, 1, 0.5, 0.7)), float(_uniform(g, 1, 0.25, 0.4)))
    return [_box(g, tuple(length if k == axis else t for k in range(3)))
            for axis, length in enumerate(lengths)]


def _spindle(g):
    r, h = float(_uniform(g, 1, 0.3, 0.5)), float(_uniform(g, 1, 0.6, 0.9))
    return [_frustum(g, r, 0.0, h), _frustum(g, 0.0, r, h, z0=-h)]


def _hourglass(g):
    r, waist, h = float(_uniform(g, 1, 0.4, 0.5)), float(_uniform(g, 1, 0.08, 0.15)), 0.6
    return [_frustum(g, r, waist, h, z0=-h), _frustum(g, waist, r, h), _disc(g, r, -h), _disc(g, r, h)]


#: Class index -> name (canonical orientation: axes along z, furniture upright facing +x).
SHAPE_CLASSES = ("sphere", "ellipsoid", "cuboid", "cylinder", "cone", "torus", "helix", "table",
                 "chair", "pyramid", "mug", "l_shape", "jack", "spindle", "hourglass")
_BUILDERS = (_sphere, _ellipsoid_shape, _cuboid, _cylinder, _cone, _torus_shape, _helix_shape,
             _table, _chair, _pyramid, _mug, _l_shape, _jack, _spindle, _hourglass)


def sample_shape(label: int, num_points: int, generator: torch.Generator, *,
                 noise: float = 0.01) -> torch.Tensor:
    """One cloud of class ``label``: centred, max radius 1, Gaussian noise of std ``noise``.

    Shapes:
        -> [num_points, 3] float64
    """
    if not 0 <= label < len(SHAPE_CLASSES):
        raise ValueError(f"sample_shape: label must be in [0, {len(SHAPE_CLASSES)}), got {label}")
    if num_points < 4:
        raise ValueError(f"sample_shape: num_points must be >= 4, got {num_points}")
    pos = _union(generator, _BUILDERS[label](generator), num_points)
    pos = pos - pos.mean(0)
    pos = pos / pos.norm(dim=1).max()
    pos = pos + noise * torch.randn(pos.shape, generator=generator, dtype=torch.float64)
    return pos - pos.mean(0)


class ProceduralShapes(InMemoryDataset):
    """Procedurally generated 3D shapes for classification; seeded, no download.

    Args:
        split: "train", "val" or "test" (independent random streams).
        num_per_class: clouds per class.
        num_points: P, points per cloud.
        classes: class indices to include (default all of :data:`SHAPE_CLASSES`); labels
            keep their global index.
        noise: std of the Gaussian jitter, relative to the max radius 1.
        seed: base seed; cloud k of class c depends only on (seed, split, c, k).
        dtype: floating dtype of ``pos``.
        transform: PyG transform applied on access.

    Shapes:
        per cloud: pos [P, 3], y [1] (long)
    """

    def __init__(self, split: str = "train", *, num_per_class: int = 20, num_points: int = 256,
                 classes: Optional[Sequence[int]] = None, noise: float = 0.01, seed: int = 0,
                 dtype: torch.dtype = torch.float32, transform: Optional[Callable] = None):
        super().__init__(None, transform)
        if split not in _SPLITS:
            raise ValueError(f"ProceduralShapes: split must be one of {list(_SPLITS)}, got {split!r}")
        if not (isinstance(num_per_class, int) and num_per_class >= 1):
            raise ValueError(f"ProceduralShapes: num_per_class must be an int >= 1, got {num_per_class!r}")
        if not (isinstance(num_points, int) and num_points >= 4):
            raise ValueError(f"ProceduralShapes: num_points must be an int >= 4, got {num_points!r}")
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"ProceduralShapes: noise must be finite and >= 0, got {noise!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"ProceduralShapes: dtype must be a floating dtype, got {dtype}")
        classes = tuple(range(len(SHAPE_CLASSES))) if classes is None else tuple(classes)
        bad = [c for c in classes if not (isinstance(c, int) and 0 <= c < len(SHAPE_CLASSES))]
        if bad or not classes or len(set(classes)) != len(classes):
            raise ValueError(f"ProceduralShapes: classes must be distinct ints in [0, "
                             f"{len(SHAPE_CLASSES)}), got {classes!r}")
        self.split, self.classes, self.num_points = split, classes, num_points
        data_list = []
        for k in range(num_per_class):  # interleaved: the first clouds cover every class
            for c in classes:
                gen = torch.Generator().manual_seed(
                    ((seed * 3 + _SPLITS[split]) * 64 + c) * 1_000_003 + k)
                pos = sample_shape(c, num_points, gen, noise=noise)
                data_list.append(Data(pos=pos.to(dtype), y=torch.tensor([c])))
        self.data, self.slices = self.collate(data_list)

    @property
    def num_classes(self) -> int:
        """Number of classes of the whole family (labels are global indices)."""
        return len(SHAPE_CLASSES)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({len(self)}, split={self.split!r}, "
                f"classes={len(self.classes)}, num_points={self.num_points})")
