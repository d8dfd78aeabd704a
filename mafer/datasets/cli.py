"""``mafer data``: counts per split and class of a dataset, and its training split's channel mean."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from mafer.datasets import DATASETS, READERS, FaceDataset, get_dataset
from mafer.datasets.check import check_dataset, format_report, present_datasets
from mafer.errors import MaferError


def _common(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument("--dataset", required=dataset_required, choices=sorted(DATASETS), help="which dataset")
    p.add_argument("--data-dir", required=True, help="folder holding <dataset>/ (or the dataset folder itself)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad items (listed in the output) instead of failing")
    p.add_argument("--last-frames", type=int, default=None, help="Oulu-CASIA original layout: peak frames per sequence")
    p.add_argument("--camera", default=None, choices=("VL", "NI"),
                   help="Oulu-CASIA release folders: camera (default VL, the literature's)")
    p.add_argument("--illumination", default=None, choices=("Strong", "Weak", "Dark"),
                   help="Oulu-CASIA release folders: illumination (default Strong, the literature's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands ``summary``, ``mean`` and ``check``."""
    sub = parser.add_subparsers(dest="data_command", metavar="{summary,mean,check}", required=True)
    summary = sub.add_parser("summary", help="number of images per split and class")
    _common(summary)
    summary.add_argument("--no-verify", action="store_true",
                         help="count from the index only, without decoding every image (fast on VGGFace2 / AffWild2)")
    mean = sub.add_parser("mean", help="per-channel BGR mean (0..255) of the training split")
    _common(mean)
    mean.add_argument("--max-images", type=int, default=None, help="average a fixed random subset of this many images")
    check = sub.add_parser("check", help="is this copy the release the paper used? variant, counts beside the "
                                         "release's, unreadable files, duplicates, verdict")
    _common(check, dataset_required=False)
    check.add_argument("--all", action="store_true", help="check every dataset found in --data-dir")
    check.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar while decoding (default: when stderr is a terminal)")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.last_frames is not None:
        options["last_frames"] = args.last_frames
    for key in ("camera", "illumination"):
        if getattr(args, key, None) is not None:
            if args.dataset != "oulucasia":
                raise MaferError(f"--{key} applies to oulucasia only, not {args.dataset}")
            options[key] = getattr(args, key)
    return options


def _load(args: argparse.Namespace, split: str) -> FaceDataset:
    return get_dataset(args.dataset, args.data_dir, split, skip_bad=args.skip_bad, **_options(args))


def summarize(args: argparse.Namespace) -> dict[str, Any]:
    """The summary dict: dataset, classes in label order, variant, how it was read (``details``), counts per
    split and class, bad items, drops."""
    splits = ("all",) if args.dataset == "oulucasia" else READERS[args.dataset].splits
    result: dict[str, Any] = {"dataset": args.dataset, "classes": [], "splits": {}}
    bad: list[str] = []
    dropped: dict[str, int] = {}
    details: list[str] = []
    for split in splits:
        ds = _load(args, split)
        if not args.no_verify:
            ds.verify()
        result["classes"] = ds.classes
        result["variant"] = ds.variant
        if ds.variant_note:
            result["not_comparable"] = ds.variant_note
        details += [line for line in ds.details if line not in details]
        result["splits"][split] = ds.class_counts()
        bad += [item for item in ds.bad_items if item not in bad]  # index-time problems repeat across splits
        for key, n in getattr(ds, "dropped", {}).items():
            dropped[key] = dropped.get(key, 0) + n
    if details:
        result["details"] = details
    if bad:
        result["bad_items"] = bad
    if dropped:
        result["dropped"] = dropped
    return result


def channel_mean_bgr(ds: FaceDataset) -> list[float]:
    """Per-channel mean (B, G, R) over all pixels of all images of ``ds``."""
    sums = ds.map_images(lambda image: (image.to(torch.float64).sum(dim=(1, 2)), image.shape[1] * image.shape[2]))
    total = torch.stack([s for s, _ in sums]).sum(0) / sum(n for _, n in sums)
    return total.flip(0).tolist()


def _print_table(summary: dict[str, Any]) -> None:
    splits = list(summary["splits"])
    width = max([len(c) for c in summary["classes"]] + [5])
    print(f"{summary['dataset']}: {len(summary['classes'])} classes ({summary['variant']})")
    if summary.get("not_comparable"):
        print(f"numbers are not comparable with the paper's: {summary['not_comparable']}")
    for line in summary.get("details", []):
        print(line)
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>8}" for s in splits))
    for c in summary["classes"]:
        print(f"{c:<{width}}  " + "  ".join(f"{summary['splits'][s][c]:>8}" for s in splits))
    print(f"{'total':<{width}}  " + "  ".join(f"{sum(summary['splits'][s].values()):>8}" for s in splits))
    for key, n in summary.get("dropped", {}).items():
        print(f"dropped ({key}): {n}")
    if summary.get("bad_items"):
        print(f"skipped {len(summary['bad_items'])} bad item(s):")
        for item in summary["bad_items"]:
            print(f"  {item}")


def run_check(args: argparse.Namespace) -> int:
    """``mafer data check``: one report per dataset; exit status 1 when a dataset is unusable."""
    if args.all == (args.dataset is not None):
        raise MaferError("data check: pass either --dataset NAME or --all")
    names = present_datasets(args.data_dir) if args.all else [args.dataset]
    reports = []
    for name in names:
        options = _options(argparse.Namespace(**{**vars(args), "dataset": name})) if not args.all else {}
        reports.append(check_dataset(name, args.data_dir, args.progress, **options))
        if not args.json:
            print(format_report(reports[-1]), flush=True)
    if args.json:
        print(json.dumps(reports if args.all else reports[0], indent=1))
    return 1 if any(r["verdict_kind"] == "unusable" for r in reports) else 0


def run(args: argparse.Namespace) -> int:
    """Run ``mafer data summary``, ``mafer data mean`` or ``mafer data check``."""
    if args.data_command == "check":
        return run_check(args)
    if args.data_command == "summary":
        summary = summarize(args)
        if args.json:
            print(json.dumps(summary, indent=1))
        else:
            _print_table(summary)
        return 0
    ds = _load(args, "all" if args.dataset == "oulucasia" else "train")
    if args.max_images is not None and args.max_images < len(ds):
        ds.keep(sorted(np.random.default_rng(0).choice(len(ds), size=args.max_images, replace=False)))
    mean = channel_mean_bgr(ds)
    if args.json:
        out = {"dataset": args.dataset, "split": ds.split, "images": len(ds), "mean_bgr": mean}
        if ds.bad_items:
            out["bad_items"] = ds.bad_items
        print(json.dumps(out, indent=1))
    else:
        print(f"{args.dataset} {ds.split} ({len(ds)} images) mean BGR: " + " ".join(f"{m:.5f}" for m in mean))
        for item in ds.bad_items:
            print(f"  skipped {item}")
    return 0
