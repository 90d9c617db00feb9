"""Exact rotation invariance for a standard PyG point-cloud classifier (DGCNN) with ECSE.

A DGCNN (two dynamic EdgeConv layers, global max pooling) is trained on
:class:`torch_pet.datasets.ProceduralShapes` (15 classes, 256 points per cloud) in their
canonical orientation, then tested on canonical and on randomly rotated test clouds as

1. ``raw``: the plain model;
2. ``raw + aug``: the same architecture trained with random rotations (augmentation);
3. ``ECSE(raw)``: model 1 wrapped in :class:`torch_pet.ECSESymmetrizer` (same weights);
4. ``ECSE(raw + aug)``: model 2 wrapped likewise;
5. ``trained via ECSE``: model 2 fine-tuned through the wrapper (every step is the full
   ECSE average, ~300 backbone copies per cloud, so this runs on a small subset of the
   training set for a few epochs; see --ecse-*).

For each it reports the accuracies, the invariance error (max over clouds and rotations of
max|logits(RX) - logits(X)|, in float64) and the cost per cloud; then ECSE at point-cloud
scale: frames per cloud before and after pruning and the cost for 256, 1,024 and 4,096
points, with the cutoff picked by :func:`torch_pet.ecse.cutoff_choice.choose_ecse_cutoff`.
Writes ``pointclouds.json``, ``pointclouds.md``, figures and ``models.pt`` to ``--out``.

    OMP_NUM_THREADS=1 python examples/pointcloud_classification.py            # ~12 min CPU, 1 core
    OMP_NUM_THREADS=1 python examples/pointcloud_classification.py --quick    # ~5 min smoke run

(Measured: 31 min wall on a shared, loaded 2-core machine; numbers in docs/pointclouds.md.)

PyG's ``DynamicEdgeConv`` needs torch-cluster or pyg-lib for its k-NN search (neither is a
torch_pet dependency), so the DGCNN here uses PyG's ``EdgeConv`` with a dense k-NN graph
recomputed from the current features before each layer: the same layer.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader
from torch_geometric.nn import EdgeConv, global_max_pool, global_mean_pool
from torch_geometric.utils import to_dense_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from torch_pet import ECSESymmetrizer  # noqa: E402
from torch_pet.datasets.shapes import SHAPE_CLASSES, ProceduralShapes  # noqa: E402
from torch_pet.ecse.cutoff_choice import choose_ecse_cutoff  # noqa: E402
from torch_pet.testing import random_rotation  # noqa: E402


def knn_graph_dense(h: torch.Tensor, batch: torch.Tensor, k: int) -> torch.Tensor:
    """k nearest neighbours (Euclidean, in the space of h) of every point of its own cloud.

    Shapes:
        h [N, F], batch [N] (sorted) -> edge_index [2, N k] (row 0: neighbour j, row 1: i)
    """
    dense, mask = to_dense_batch(h, batch)  # [B, P, F], [B, P]
    distance = torch.cdist(dense, dense)
    distance = distance.masked_fill(~mask[:, None, :], float("inf"))
    distance.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    counts = mask.sum(1)
    if int(counts.min()) <= k:
        raise ValueError(f"knn_graph_dense: every cloud needs more than k={k} points, the smallest "
                         f"has {int(counts.min())}")
    neighbour = distance.topk(k, dim=2, largest=False).indices  # [B, P, k]
    offset = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
    source = (neighbour + offset[:, None, None])[mask]  # [N, k]
    target = torch.arange(h.shape[0], device=h.device)[:, None].expand(-1, k)
    return torch.stack([source.reshape(-1), target.reshape(-1)])


def _mlp(*widths):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.LeakyReLU(0.2)]
    return torch.nn.Sequential(*layers)


class DGCNN(torch.nn.Module):
    """DGCNN (Wang et al. 2019): EdgeConv layers on a k-NN graph rebuilt from the current
    features, global max pooling, MLP head. Input: the points centred on their centroid
    (translation invariant, not rotation invariant). ``forward(pos, batch) -> logits [B, C]``."""

    def __init__(self, num_classes: int, k: int = 10, width: int = 32):
        super().__init__()
        self.k = k
        self.conv1 = EdgeConv(_mlp(2 * 3, width, width), aggr="max")
        self.conv2 = EdgeConv(_mlp(2 * width, width, width), aggr="max")
        self.lift = _mlp(2 * width, 4 * width)
        self.head = torch.nn.Sequential(_mlp(4 * width, 2 * width), torch.nn.Linear(2 * width, num_classes))

    def forward(self, pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        x = pos - global_mean_pool(pos, batch)[batch]
        h1 = self.conv1(x, knn_graph_dense(x, batch, self.k))
        h2 = self.conv2(h1, knn_graph_dense(h1, batch, self.k))
        return self.head(global_max_pool(self.lift(torch.cat([h1, h2], dim=1)), batch))


def call_dgcnn(model, data):
    """Adapter for ECSESymmetrizer / RotationalAverage: Batch -> model(pos, batch)."""
    batch = data.batch if getattr(data, "batch", None) is not None else \
        torch.zeros(data.pos.shape[0], dtype=torch.long, device=data.pos.device)
    return model(data.pos, batch)


def ecse_wrap(model, cutoff_choice, chunk_size: int = 256 * 64):
    return ECSESymmetrizer(model, cutoff=cutoff_choice.cutoff, frame_options=cutoff_choice.frame_options,
                           chunk_size=chunk_size, adapter=call_dgcnn)


def rotated(batch: Batch, seed: int) -> Batch:
    """Each cloud rotated by its own Haar-random rotation (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    rotations = torch.stack([random_rotation(generator) for _ in range(batch.num_graphs)])
    out = batch.clone()
    out.pos = torch.einsum("nij,nj->ni", rotations.to(batch.pos.dtype)[batch.batch], batch.pos)
    return out


def train(model, dataset, *, epochs: int, lr: float = 2e-3, batch_size: int = 16, augment: bool = False,
          wrapper=None, seed: int = 0, label: str = "") -> float:
    """Adam with cosine decay on the cross-entropy; returns the process time (s). With
    ``wrapper`` (an ECSESymmetrizer around ``model``) every step goes through it."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(loader))
    forward = (lambda b: wrapper(b)) if wrapper is not None else (lambda b: call_dgcnn(model, b))
    start = time.process_time()
    model.train()
    for epoch in range(epochs):
        correct = total_loss = 0.0
        for step, batch in enumerate(loader):
            if augment:
                batch = rotated(batch, seed=seed * 100_003 + epoch * 1009 + step)
            logits = forward(batch)
            loss = torch.nn.functional.cross_entropy(logits, batch.y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * batch.num_graphs
            correct += int((logits.argmax(1) == batch.y).sum())
        if epoch == epochs - 1 or (epoch + 1) % max(1, epochs // 4) == 0:
            print(f"  [{label}] epoch {epoch + 1}/{epochs}: loss {total_loss / len(dataset):.3f}, "
                  f"train acc {correct / len(dataset):.3f}", flush=True)
    model.eval()
    return time.process_time() - start


@torch.no_grad()
def predict(fn, dataset, batch_size: int = 32):
    """Logits of every cloud and the process time per cloud (s)."""
    start = time.process_time()
    logits = [fn(batch) for batch in DataLoader(dataset, batch_size=batch_size)]
    return torch.cat(logits), (time.process_time() - start) / len(dataset)


def evaluate(name, fn, test, rotated_test, invariance_clouds, rotation_seeds, fn64):
    """Accuracies (canonical, rotated), invariance error in float64, cost per cloud."""
    labels = torch.cat([d.y for d in test])
    logits, cost = predict(fn, test)
    logits_rot, _ = predict(fn, rotated_test)
    with torch.no_grad():
        reference = fn64(invariance_clouds)
        error = max(float((fn64(rotated(invariance_clouds, seed)) - reference).abs().max())
                    for seed in rotation_seeds)
    row = dict(model=name, acc_canonical=float((logits.argmax(1) == labels).float().mean()),
               acc_rotated=float((logits_rot.argmax(1) == labels).float().mean()),
               invariance_error=error, logit_scale=float(reference.abs().max()),
               ms_per_cloud=1e3 * cost)
    print(f"  {name:<18} acc {row['acc_canonical']:.3f} / rotated {row['acc_rotated']:.3f}, "
          f"max|dlogit| {error:.1e}, {row['ms_per_cloud']:.1f} ms/cloud", flush=True)
    return row


def double_copy(model):
    import copy

    return copy.deepcopy(model).double().eval()


def frames_at_scale(model, sizes, clouds_per_size, forward_limit: int, seed: int):
    """Frames per cloud before/after pruning, cutoff choice and cost, per cloud size."""
    rows = []
    for size in sizes:
        data = ProceduralShapes("test", num_per_class=1, num_points=size, seed=seed,
                                classes=list(range(clouds_per_size)))
        batch = Batch.from_data_list(list(data))
        choice = choose_ecse_cutoff(batch.pos, batch.batch)
        wrapper = ecse_wrap(model, choice)
        start = time.process_time()
        frames = wrapper.frames(batch)
        frame_time = (time.process_time() - start) / len(data)
        after = torch.bincount(frames.pool, minlength=len(data)).double()
        with torch.no_grad():
            one = Batch.from_data_list([data[0]])
            start = time.process_time()
            call_dgcnn(model, one)
            single = time.process_time() - start
            ecse_time = None
            if size <= forward_limit:
                start = time.process_time()
                wrapper(one)
                ecse_time = time.process_time() - start
        row = dict(points=size, clouds=len(data), cutoff=choice.cutoff, length_unit=choice.length_unit,
                   frames_before=float(frames.num_candidates.double().mean()),
                   frames_after=float(after.mean()), frames_after_min=int(after.min()),
                   frames_after_max=int(after.max()), frames_ms=1e3 * frame_time,
                   backbone_ms=1e3 * single, ecse_ms=None if ecse_time is None else 1e3 * ecse_time,
                   ecse_ms_estimate=1e3 * single * float(after[0]))
        print(f"  {size} points: R_out {choice.cutoff:.3f} (h {choice.length_unit:.4f}), frames "
              f"{row['frames_before']:.0f} -> {row['frames_after']:.0f}, frames {row['frames_ms']:.0f} ms, "
              f"backbone {row['backbone_ms']:.1f} ms, ECSE "
              f"{'%.0f ms' % row['ecse_ms'] if ecse_time is not None else 'not run'}", flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/pointclouds")
    parser.add_argument("--figures", default=None, help="also copy the figures here (docs/figures)")
    parser.add_argument("--train-per-class", type=int, default=30)
    parser.add_argument("--test-per-class", type=int, default=4)
    parser.add_argument("--invariance-clouds", type=int, default=5,
                        help="test clouds (one per class) for the float64 invariance error")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--aug-epochs", type=int, default=40)
    parser.add_argument("--ecse-train-per-class", type=int, default=2)
    parser.add_argument("--ecse-epochs", type=int, default=2)
    parser.add_argument("--scale-sizes", type=int, nargs="*", default=[256, 1024, 4096])
    parser.add_argument("--scale-forward-limit", type=int, default=1024,
                        help="run the full ECSE forward only up to this many points (above: estimate)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_per_class, args.test_per_class, args.epochs, args.aug_epochs = 4, 1, 2, 2
        args.ecse_train_per_class, args.ecse_epochs, args.scale_sizes = 1, 1, [256]
        args.invariance_clouds = 1
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    num_classes = len(SHAPE_CLASSES)
    train_set = ProceduralShapes("train", num_per_class=args.train_per_class, seed=args.seed)
    test = ProceduralShapes("test", num_per_class=args.test_per_class, seed=args.seed)
    test_batch = Batch.from_data_list(list(test))
    rotated_test = list(rotated(test_batch, seed=args.seed + 7).to_data_list())
    invariance_clouds = Batch.from_data_list([test[c] for c in range(min(len(test), args.invariance_clouds))])
    invariance_clouds.pos = invariance_clouds.pos.double()
    rotation_seeds = (101, 102)
    choice = choose_ecse_cutoff(Batch.from_data_list(list(train_set)).pos,
                                Batch.from_data_list(list(train_set)).batch)
    print(f"[data] {len(train_set)} training, {len(test)} test clouds of 256 points, {num_classes} classes; "
          f"ECSE R_out {choice.cutoff:.3f}, length unit {choice.length_unit:.4f}", flush=True)

    models, timings = {}, {}
    print("[train] raw (canonical orientation)", flush=True)
    models["raw"] = DGCNN(num_classes)
    timings["raw"] = train(models["raw"], train_set, epochs=args.epochs, seed=args.seed, label="raw")
    print("[train] raw + rotation augmentation", flush=True)
    models["aug"] = DGCNN(num_classes)
    timings["aug"] = train(models["aug"], train_set, epochs=args.aug_epochs, augment=True,
                           seed=args.seed + 1, label="aug")
    print("[train] through ECSE (fine-tuning the augmented model)", flush=True)
    import copy

    models["ecse"] = copy.deepcopy(models["aug"])
    subset = ProceduralShapes("train", num_per_class=args.ecse_train_per_class, seed=args.seed)
    timings["ecse"] = train(models["ecse"], subset, epochs=args.ecse_epochs, lr=5e-4, batch_size=8,
                            wrapper=ecse_wrap(models["ecse"], choice), seed=args.seed + 2, label="ecse")
    torch.save({k: m.state_dict() for k, m in models.items()}, os.path.join(args.out, "models.pt"))

    print("[evaluate] accuracy, invariance error (float64), cost per cloud", flush=True)
    rows = []
    cases = [("raw", models["raw"], False), ("raw + aug", models["aug"], False),
             ("ECSE(raw)", models["raw"], True), ("ECSE(raw + aug)", models["aug"], True),
             ("trained via ECSE", models["ecse"], True)]
    for name, model, wrap in cases:
        model.eval()
        if wrap:
            fn, fn64 = ecse_wrap(model, choice), ecse_wrap(double_copy(model), choice)
        else:
            fn, fn64 = (lambda b, m=model: call_dgcnn(m, b)), (lambda b, m=double_copy(model): call_dgcnn(m, b))
        rows.append(evaluate(name, fn, test, rotated_test, invariance_clouds, rotation_seeds, fn64))
    frames_test = ecse_wrap(models["raw"], choice).frames(test_batch)
    print("[scale] ECSE frames and cost vs cloud size", flush=True)
    scale = frames_at_scale(models["raw"], args.scale_sizes, min(5, num_classes),
                            args.scale_forward_limit, args.seed)
    result = dict(args=vars(args), cutoff=choice._asdict(), classification=rows, scale=scale,
                  train_seconds=timings, ecse_train_clouds=len(subset),
                  test_frames_before=float(frames_test.num_candidates.double().mean()),
                  test_frames_after=float(torch.bincount(frames_test.pool).double().mean()),
                  threads=torch.get_num_threads())
    with open(os.path.join(args.out, "pointclouds.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_report(result, args.out, args.figures)


def draw_gallery(paths, seed: int = 0):
    """One cloud of every class (canonical orientation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = ProceduralShapes("train", num_per_class=1, seed=seed)
    fig = plt.figure(figsize=(12, 7))
    for c, cloud in enumerate(data):
        ax = fig.add_subplot(3, 5, c + 1, projection="3d")
        ax.scatter(*cloud.pos.T, s=2)
        ax.set_title(SHAPE_CLASSES[c], fontsize=9)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xticks=[], yticks=[], zticks=[])
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(result, out, figures=None):
    """Markdown tables and the figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| model | acc. canonical | acc. rotated | max abs logit change (float64) | ms / cloud |",
             "|---|---|---|---|---|"]
    for r in result["classification"]:
        lines.append(f"| {r['model']} | {r['acc_canonical']:.3f} | {r['acc_rotated']:.3f} | "
                     f"{r['invariance_error']:.1e} | {r['ms_per_cloud']:.1f} |")
    lines += ["", "| points | R_out | frames before | frames after (min-max) | frames ms | backbone ms | "
              "ECSE ms |", "|---|---|---|---|---|---|---|"]
    for r in result["scale"]:
        ecse = f"{r['ecse_ms']:.0f}" if r["ecse_ms"] is not None else f"~{r['ecse_ms_estimate']:.0f} (est.)"
        lines.append(f"| {r['points']} | {r['cutoff']:.3f} | {r['frames_before']:.0f} | "
                     f"{r['frames_after']:.0f} ({r['frames_after_min']}-{r['frames_after_max']}) | "
                     f"{r['frames_ms']:.0f} | {r['backbone_ms']:.1f} | {ecse} |")
    with open(os.path.join(out, "pointclouds.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    rows = result["classification"]
    x = range(len(rows))
    ax1.bar([i - 0.2 for i in x], [r["acc_canonical"] for r in rows], 0.4, label="canonical test")
    ax1.bar([i + 0.2 for i in x], [r["acc_rotated"] for r in rows], 0.4, label="rotated test")
    ax1.set_xticks(list(x), [r["model"] for r in rows], rotation=20, fontsize=8)
    ax1.set_ylabel("test accuracy")
    ax1.legend(fontsize=8)
    ax2.bar(list(x), [max(r["invariance_error"], 1e-16) for r in rows], color="C2")
    ax2.set_yscale("log")
    ax2.set_xticks(list(x), [r["model"] for r in rows], rotation=20, fontsize=8)
    ax2.set_ylabel("max |logits(RX) - logits(X)| (float64)")
    fig.tight_layout()
    paths = [os.path.join(out, "pointcloud_classification.png")]
    if figures:
        os.makedirs(figures, exist_ok=True)
        paths.append(os.path.join(figures, "pointcloud_classification.png"))
    for path in paths:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    draw_gallery([os.path.join(os.path.dirname(p), "shapes_gallery.png") for p in paths])


if __name__ == "__main__":
    main()
