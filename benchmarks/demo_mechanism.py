"""What the demo's features carry: the probes behind the README's "What the demo shows, honestly".

On a finished pipeline run (default ``results/demo``: its synthetic data and its step-1
checkpoints) it prints, per expression dataset and test resolution, the test accuracy (%) of

- the majority class of the training split;
- a logistic regression on a 12x12 gray view of the faces (the information in the pixels);
- a linear probe (logistic regression) on the frozen pooled features of a randomly initialised
  network of the run's architecture and of every step-1 model (what step 1 hands to step 2).

Train and test faces are lowered to the same resolution (the authors' PIL lowering, then the
evaluation transform, as ``mafer evaluate``); every fit is scikit-learn's ``LogisticRegression``
on standardised inputs. Numbers from synthetic data: they describe the demo, not the paper.

``--learn-8px`` asks instead whether the demo architecture can learn 8-pixel faces at all: it
draws balanced synthetic RAF-DB faces (new people in every image, the declared framing), lowers
them to 8 px, trains a fresh network of ``--arch`` on ``--n-train`` of them with Adam (lr 1e-3,
batch 32) and prints its test accuracy beside a logistic regression's on the same tensors, per
seed.

    python benchmarks/demo_mechanism.py                      # results/demo
    python benchmarks/demo_mechanism.py results/demo --datasets rafdb --resolutions native,8
    python benchmarks/demo_mechanism.py --learn-8px --seeds 0,1 --epochs 8
    python benchmarks/demo_mechanism.py --learn-8px --seeds 0 --epochs 12 --n-train 5600 --n-test 420
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mafer.datasets import get_dataset  # noqa: E402
from mafer.evaluate import LoweredEvalTransform, parse_resolutions, run_model  # noqa: E402
from mafer.models import create_model, model_from_checkpoint, preprocess  # noqa: E402
from mafer.paper_models import MODELS  # noqa: E402


def faces(dataset: str, data_dir: Path, split: str, size: int,
          resolution: str | int) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 ``[N, 3, size, size]`` faces of ``split``, lowered to ``resolution``, and their labels."""
    data = get_dataset(dataset, data_dir, split, transform=LoweredEvalTransform(dataset, size, resolution))
    images = torch.stack([data[i][0] for i in range(len(data))])
    return images, np.asarray(data.targets)


def probe(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a logistic regression fitted on standardised ``train``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    return float(model.fit(train, y_train).score(test, y_test))


def gray_view(images: torch.Tensor) -> np.ndarray:
    """A 12x12 gray (area-averaged) view of each face, flattened."""
    return F.adaptive_avg_pool2d(images.float().mean(1, keepdim=True), 12).flatten(1).numpy()


def features(model: torch.nn.Module, images: torch.Tensor, mean_bgr) -> np.ndarray:
    """The pooled features of ``images`` as the pipeline's embeddings take them (`run_model`)."""
    batches = [(b, torch.zeros(len(b))) for b in images.split(256)]
    return run_model(model, batches, mean_bgr, torch.device("cpu"), features=True)[0].numpy()


def learn_8px(arch: str, seed: int, epochs: int, n_train: int = 1400, n_test: int = 210,
              size: int = 48) -> tuple[float, float]:
    """Test accuracy of ``arch`` trained on ``n_train`` synthetic RAF-DB faces lowered to 8 px, and
    of a logistic regression on the same tensors (both on ``n_test`` new faces; balanced classes)."""
    from mafer.datasets.info import DATASETS
    from mafer.image import lower
    from mafer.synth.formats import FRAMING, canonical_indices, static_faces

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.resize(np.arange(7), n_train + n_test)
    drawn = static_faces(rng, canonical_indices("rafdb")[labels], size, scale=FRAMING["rafdb"])
    x = preprocess(lower(torch.from_numpy(drawn).permute(0, 3, 1, 2).contiguous(), 8), DATASETS["rafdb"].mean_bgr)
    y = torch.from_numpy(labels)
    model = create_model(arch, num_classes=7)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(n_train).split(32):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        network = float((model.eval()(x[n_train:]).argmax(1) == y[n_train:]).float().mean())
    flat = x.flatten(1).numpy()
    return network, probe(flat[:n_train], labels[:n_train], flat[n_train:], labels[n_train:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default="results/demo", type=Path)
    parser.add_argument("--datasets", default="fer2013,rafdb")
    parser.add_argument("--resolutions", default="native,16,8")
    parser.add_argument("--learn-8px", action="store_true", help="train a fresh network on 8-px faces instead")
    parser.add_argument("--arch", default="senet_tiny", help="--learn-8px: the architecture (default senet_tiny)")
    parser.add_argument("--seeds", default="0,1", help="--learn-8px: comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=8, help="--learn-8px: training epochs")
    parser.add_argument("--n-train", type=int, default=1400, help="--learn-8px: training faces (the demo's "
                        "RAF-DB has 1,318)")
    parser.add_argument("--n-test", type=int, default=210, help="--learn-8px: test faces")
    args = parser.parse_args(argv)
    if args.learn_8px:
        print(f"Test accuracy (%) on {args.n_test} new synthetic RAF-DB faces at 8 px, balanced (chance 14.3); "
              f"trained on {args.n_train:,} at 8 px, {args.epochs} epochs")
        print(f"| seed | {args.arch} | logistic regression, same tensors |\n|---|---:|---:|")
        for seed in map(int, args.seeds.split(",")):
            network, linear = learn_8px(args.arch, seed, args.epochs, n_train=args.n_train, n_test=args.n_test)
            print(f"| {seed} | {100 * network:.1f} | {100 * linear:.1f} |")
        return 0
    torch.manual_seed(0)
    networks = {m.label: model_from_checkpoint(path) for m in MODELS
                for path in sorted((args.results / "runs" / "step1" / m.key).glob("seed*/best.pt"))[:1]}
    if not networks:
        raise SystemExit(f"{args.results}: no step-1 checkpoint under runs/step1/; run the pipeline first")
    first = next(iter(networks.values()))[1]
    arch, size = first["arch"], first["config"]["image_size"]
    random = create_model(arch, num_classes=first["num_classes"]).eval()
    resolutions = parse_resolutions(args.resolutions)
    rows = ["majority class", "logistic regression, 12x12 gray pixels", f"linear probe: random {arch}"]
    rows += [f"linear probe: step-1 {label}" for label in networks]
    table: dict[str, list[str]] = {row: [] for row in rows}
    columns = []
    for dataset in args.datasets.split(","):
        for r in resolutions:
            columns.append(f"{dataset} {r}")
            x_train, y_train = faces(dataset, args.results / "data", "train", size, r)
            x_test, y_test = faces(dataset, args.results / "data", "test", size, r)
            majority = np.bincount(y_train).argmax()
            scores = [float(np.mean(y_test == majority)), probe(gray_view(x_train), y_train, gray_view(x_test), y_test)]
            mean = first["mean_bgr"]
            scores.append(probe(features(random, x_train, mean), y_train, features(random, x_test, mean), y_test))
            for model, meta in networks.values():
                scores.append(probe(features(model, x_train, meta["mean_bgr"]), y_train,
                                    features(model, x_test, meta["mean_bgr"]), y_test))
            for row, score in zip(rows, scores):
                table[row].append(f"{100 * score:.1f}")
    print(f"Test accuracy (%), synthetic data of {args.results}; train and test faces at the same resolution")
    print("| probe | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for row, cells in table.items():
        print(f"| {row} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
