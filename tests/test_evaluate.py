import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mafer.cli import main
from mafer.datasets import DATASETS, get_dataset
from mafer.errors import MaferError
from mafer.evaluate import (bn_recalibrated, evaluate_checkpoint, evaluate_checkpoints, load_classifier,
                            parse_resolutions)
from mafer.models import create_model, model_from_checkpoint, preprocess
from mafer.image import lower_pil
from mafer.transforms import eval_transform

IMAGE_SIZE = 64  # small input keeps the tests fast; the checkpoint records it


@pytest.fixture(scope="module")
def rafdb_checkpoint(tmp_path_factory, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "rafdb.pt", "rafdb", image_size=IMAGE_SIZE)


def test_cli_schema_on_smoke_data(smoke_data, rafdb_checkpoint, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    rc = main(["evaluate", "--dataset", "rafdb", "--data-dir", str(smoke_data), "--checkpoint", str(rafdb_checkpoint),
               "--resolutions", "native,8", "--device", "cpu", "--workers", "0", "--model", "CR", "--out", str(out)])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    result = json.loads(out.read_text())
    n_test = len(get_dataset("rafdb", smoke_data, "test"))
    assert result["dataset"] == "rafdb" and result["split"] == "test" and result["fold"] is None
    assert result["checkpoint"] == str(rafdb_checkpoint) and result["model"] == "CR"
    assert result["classes"] == list(DATASETS["rafdb"].classes)
    assert result["image_size"] == IMAGE_SIZE
    assert list(result["resolutions"]) == ["native", "8"]
    for entry in result["resolutions"].values():
        for key in ("accuracy", "mean_class_accuracy", "macro_f1", "score"):
            assert 0.0 <= entry[key] <= 1.0
        assert entry["score"] == pytest.approx(0.33 * entry["accuracy"] + 0.67 * entry["macro_f1"])
        assert entry["n"] == n_test
        cm = np.array(entry["confusion_matrix"])
        assert cm.shape == (7, 7) and cm.sum() == n_test
        assert np.trace(cm) / n_test == pytest.approx(entry["accuracy"])
        lo, hi = entry["accuracy_ci"]
        assert lo <= entry["accuracy"] <= hi


def test_lowering_happens_on_the_original_image_before_the_eval_transform(smoke_data, rafdb_checkpoint):
    result = evaluate_checkpoint("rafdb", smoke_data, rafdb_checkpoint, resolutions=[8], device="cpu", workers=0)
    model, meta = model_from_checkpoint(rafdb_checkpoint)
    data = get_dataset("rafdb", smoke_data, "test")
    transform = eval_transform("rafdb", IMAGE_SIZE)
    predictions = []
    with torch.no_grad():
        for i in range(len(data)):
            image, _ = data[i]
            x = transform(lower_pil(image, 8))  # the authors' PIL lowering, then their Resize + crop
            predictions.append(int(model(preprocess(x[None], meta["mean_bgr"])).argmax()))
    cm = np.zeros((7, 7), dtype=int)
    np.add.at(cm, (data.targets, predictions), 1)
    assert result["resolutions"]["8"]["confusion_matrix"] == cm.tolist()


def read_dump(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("dataset", ["rafdb", "fer2013"])
def test_dump_predictions_schema(dataset, smoke_data, tmp_path, tiny_checkpoint, capsys):
    checkpoint = tiny_checkpoint(tmp_path / f"{dataset}.pt", dataset, image_size=IMAGE_SIZE)
    dump = tmp_path / "out" / "predictions.csv"
    rc = main(["evaluate", "--dataset", dataset, "--data-dir", str(smoke_data), "--checkpoint", str(checkpoint),
               "--resolutions", "native,8", "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "m.json"),
               "--dump-predictions", str(dump)])
    assert rc == 0 and f"wrote {dump}" in capsys.readouterr().out
    classes = list(DATASETS[dataset].classes)
    with open(dump, newline="") as f:
        header = next(csv.reader(f))
    assert header == ["fold", "resolution", "index", "item", "label", "prediction"] + [f"logit_{c}" for c in classes]
    rows = read_dump(dump)
    data = get_dataset(dataset, smoke_data, "test")
    metrics = json.loads((tmp_path / "m.json").read_text())["resolutions"]
    for r in ("native", "8"):
        mine = [row for row in rows if row["resolution"] == r]
        assert [row["item"] for row in mine] == data.samples  # file, or csv:line for FER2013
        assert [int(row["index"]) for row in mine] == list(range(len(data)))
        assert {row["fold"] for row in mine} == {""}  # a fixed test split has no fold
        assert [int(row["label"]) for row in mine] == data.targets
        logits = np.array([[float(row[f"logit_{c}"]) for c in classes] for row in mine])
        predictions = np.array([int(row["prediction"]) for row in mine])
        assert np.array_equal(predictions, logits.argmax(1))
        assert np.mean(predictions == np.array(data.targets)) == pytest.approx(metrics[r]["accuracy"])
    if dataset == "fer2013":
        assert all(":" in row["item"] and row["item"].split(":")[0].endswith(".csv") for row in rows)
    else:
        assert all(Path(row["item"]).is_file() for row in rows)


def test_dump_predictions_to_an_unwritable_place(smoke_data, rafdb_checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MaferError, match="cannot write the predictions"):
        evaluate_checkpoint("rafdb", smoke_data, rafdb_checkpoint, resolutions=["native"], device="cpu", workers=0,
                            dump_predictions=blocker / "predictions.csv")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_gpu_evaluations_predict_the_same(smoke_data, tmp_path, tiny_checkpoint):
    """Inputs are prepared on the CPU (OpenCV, PIL) whatever the device: only the network runs on the GPU."""
    for dataset in ("rafdb", "fer2013"):
        checkpoint = tiny_checkpoint(tmp_path / f"{dataset}.pt", dataset, image_size=IMAGE_SIZE)
        dumps = {}
        for device in ("cpu", "cuda"):
            dumps[device] = tmp_path / f"{dataset}_{device}.csv"
            evaluate_checkpoint(dataset, smoke_data, checkpoint, resolutions=["native", 8, 16], device=device,
                                workers=0, dump_predictions=dumps[device])
        cpu, gpu = read_dump(dumps["cpu"]), read_dump(dumps["cuda"])
        assert [(r["resolution"], r["item"]) for r in cpu] == [(r["resolution"], r["item"]) for r in gpu]
        logits_cpu, logits_gpu = (np.array([[float(v) for k, v in r.items() if k.startswith("logit_")]
                                            for r in rows]) for rows in (cpu, gpu))
        # same inputs: the logits differ only by the GPU's float arithmetic (cuDNN may use TF32)
        scale = np.abs(logits_cpu).max()
        assert np.abs(logits_cpu - logits_gpu).max() <= 1e-2 * scale
        top2 = np.sort(logits_cpu, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2e-2 * scale  # not a near-tie that float noise could flip
        assert clear.mean() > 0.8
        predicted = [np.array([int(r["prediction"]) for r in rows]) for rows in (cpu, gpu)]
        assert np.array_equal(predicted[0][clear], predicted[1][clear])


def test_constant_classifier_gives_known_metrics(smoke_data, tmp_path, tiny_checkpoint):
    checkpoint = tiny_checkpoint(tmp_path / "fer.pt", "fer2013", constant_class=3, image_size=IMAGE_SIZE)
    result = evaluate_checkpoint("fer2013", smoke_data, checkpoint, resolutions=["native", 16], device="cpu",
                                 workers=0)
    counts = np.bincount(get_dataset("fer2013", smoke_data, "test").targets, minlength=7)
    for entry in result["resolutions"].values():
        cm = np.array(entry["confusion_matrix"])
        assert cm[:, 3].tolist() == counts.tolist() and cm.sum() == cm[:, 3].sum()
        assert entry["accuracy"] == pytest.approx(counts[3] / counts.sum())
        assert entry["mean_class_accuracy"] == pytest.approx(1 / np.count_nonzero(counts))
        assert entry["predictions"] == [3] * int(counts.sum())  # per image, in the dataset's order
    assert result["labels"] == list(get_dataset("fer2013", smoke_data, "test").targets)


def test_oulucasia_fold(smoke_data, tmp_path, tiny_checkpoint):
    checkpoint = tiny_checkpoint(tmp_path / "oulu.pt", "oulucasia", image_size=IMAGE_SIZE)
    result = evaluate_checkpoint("oulucasia", smoke_data, checkpoint, fold=1, folds=5, resolutions=["native"],
                                 device="cpu", workers=0)
    assert (result["fold"], result["folds"], result["protocol"]) == (1, 5, "image")
    assert result["resolutions"]["native"]["n"] == len(get_dataset("oulucasia", smoke_data, "test", fold=1, folds=5))


def test_checkpoint_of_another_dataset_or_model(smoke_data, tmp_path, rafdb_checkpoint, capsys):
    with pytest.raises(MaferError, match="rafdb.pt: checkpoint predicts .* but oulucasia has"):
        evaluate_checkpoint("oulucasia", smoke_data, rafdb_checkpoint, fold=1, device="cpu", workers=0)
    # a bare state dict is read as the paper's senet50: a tiny network's tensors do not fit it
    torch.save(create_model("senet_tiny", 7).state_dict(), tmp_path / "tiny_state.pt")
    with pytest.raises(MaferError, match="tiny_state.pt: shape mismatch"):
        evaluate_checkpoint("rafdb", smoke_data, tmp_path / "tiny_state.pt", device="cpu", workers=0)
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(MaferError, match="notes.pt"):
        evaluate_checkpoint("rafdb", smoke_data, tmp_path / "notes.pt", device="cpu", workers=0)
    rc = main(["evaluate", "--dataset", "rafdb", "--data-dir", str(smoke_data), "--checkpoint",
               str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.json")])
    assert rc == 2
    assert "missing.pt: checkpoint not found" in capsys.readouterr().err


def test_released_checkpoint_without_class_names_takes_the_datasets(tmp_path):
    # the authors' release: model_state_dict + epoch/best_acc, no class names or mean
    torch.save({"model_state_dict": create_model("senet50", 7).state_dict(), "epoch": 3, "best_acc": 0.8},
               tmp_path / "released.pt")
    _, meta = load_classifier(tmp_path / "released.pt", torch.device("cpu"), "rafdb")
    assert meta["class_names"] == list(DATASETS["rafdb"].classes)
    assert meta["mean_bgr"] == list(DATASETS["rafdb"].mean_bgr)
    with pytest.raises(MaferError, match="released.pt: .* 7 outputs and no class names"):
        load_classifier(tmp_path / "released.pt", torch.device("cpu"), "oulucasia")


def test_parse_resolutions():
    assert parse_resolutions("native, 8,16,8") == ["native", 8, 16]
    with pytest.raises(MaferError, match="'0'"):
        parse_resolutions("native,0")
    with pytest.raises(MaferError, match="'high'"):
        parse_resolutions(["high"])


def test_corrupt_image_named_without_traceback_or_skipped(smoke_data, rafdb_checkpoint, tmp_path):
    shutil.copytree(smoke_data / "rafdb", tmp_path / "rafdb")
    test = get_dataset("rafdb", tmp_path, "test")
    bad = Path(test.samples[0])
    bad.write_bytes(b"truncated")
    with pytest.raises(MaferError) as info:  # raised inside a DataLoader worker process
        evaluate_checkpoint("rafdb", tmp_path, rafdb_checkpoint, resolutions=["native"], device="cpu", workers=1)
    assert str(info.value).startswith(f"{bad}: cannot decode image") and "Traceback" not in str(info.value)
    result = evaluate_checkpoint("rafdb", tmp_path, rafdb_checkpoint, resolutions=["native"], device="cpu",
                                 workers=0, skip_bad=True)
    assert result["resolutions"]["native"]["n"] == len(test) - 1
    assert len(result["bad_items"]) == 1 and result["bad_items"][0].startswith(str(bad))


def test_checkpoints_tested_together_give_each_ones_own_result(smoke_data, tmp_path, tiny_checkpoint):
    # the pipeline tests every checkpoint of a test set in one pass over its images: nothing may
    # leak between the networks, whatever their input sizes
    paths = [tiny_checkpoint(tmp_path / f"s{seed}-{size}.pt", "rafdb", seed=seed, image_size=size)
             for seed, size in ((0, 48), (1, 64), (2, 48))]
    options = dict(resolutions=["native", 8], device="cpu", workers=0, batch_size=5)
    together = evaluate_checkpoints("rafdb", smoke_data, [(p, f"m{i}") for i, p in enumerate(paths)], **options)
    alone = [evaluate_checkpoint("rafdb", smoke_data, p, model_label=f"m{i}", **options) for i, p in enumerate(paths)]
    assert together == alone
    assert together[0]["resolutions"]["native"]["predictions"] != together[2]["resolutions"]["native"]["predictions"]


def test_checkpoints_of_other_fold_rules_are_each_tested_on_their_own(smoke_data, tmp_path, tiny_checkpoint):
    image = tiny_checkpoint(tmp_path / "image.pt", "oulucasia", seed=0, image_size=48)
    four_folds = tmp_path / "four-folds.pt"
    ckpt = torch.load(image, weights_only=True)
    ckpt["config"] |= {"protocol": "image", "folds": 5, "fold": 2}
    torch.save(ckpt, image)
    ckpt["config"] |= {"folds": 4}
    torch.save(ckpt, four_folds)
    options = dict(fold=2, resolutions=["native"], device="cpu", workers=0)
    together = evaluate_checkpoints("oulucasia", smoke_data, [(image, "a"), (four_folds, "b")], **options)
    assert [r["folds"] for r in together] == [5, 4]
    assert together == [evaluate_checkpoint("oulucasia", smoke_data, image, model_label="a", **options),
                        evaluate_checkpoint("oulucasia", smoke_data, four_folds, model_label="b", **options)]


def test_bn_recalibrated_diagnostic_leaves_the_papers_numbers_and_the_network_alone(smoke_data, rafdb_checkpoint,
                                                                                    tmp_path, capsys):
    options = dict(resolutions=["native", 8], device="cpu", workers=0, batch_size=7)
    plain = evaluate_checkpoint("rafdb", smoke_data, rafdb_checkpoint, **options)
    both = evaluate_checkpoint("rafdb", smoke_data, rafdb_checkpoint, bn_recalibration=True, **options)
    for r, entry in both["resolutions"].items():
        adapted = entry.pop("bn_recalibrated")
        assert set(adapted) == {"accuracy", "mean_class_accuracy", "macro_f1", "score", "n"}
        assert adapted["n"] == entry["n"]
        if r == "native":  # the statistics the network was trained with are native's
            assert all(adapted[k] == entry[k] for k in adapted)
    assert both == plain  # the paper's protocol is untouched by the diagnostic

    # at 8 px the statistics are those of the lowered test images; the network given is not changed
    model, meta = load_classifier(rafdb_checkpoint, torch.device("cpu"), "rafdb")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = get_dataset("rafdb", smoke_data, "test",
                       transform=lambda im: eval_transform("rafdb", IMAGE_SIZE)(lower_pil(im, 8)))
    images = torch.stack([data[i][0] for i in range(len(data))])
    batches = [(images[i:i + 7], torch.zeros(len(images[i:i + 7]))) for i in range(0, len(images), 7)]
    adapted = bn_recalibrated(model, batches, meta["mean_bgr"], torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    first = next(m for m in adapted.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    hook = first.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        adapted(preprocess(images, meta["mean_bgr"]))
    hook.remove()
    per_batch = [x.transpose(0, 1).flatten(1) for x in seen[0].split(7)]  # the batches the statistics came from
    torch.testing.assert_close(first.running_mean, torch.stack([x.mean(1) for x in per_batch]).mean(0),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(first.running_var, torch.stack([x.var(1) for x in per_batch]).mean(0),
                               rtol=1e-4, atol=1e-3)
    assert not adapted.training

    out = tmp_path / "m.json"
    assert main(["evaluate", "--dataset", "rafdb", "--data-dir", str(smoke_data), "--checkpoint", str(rafdb_checkpoint),
                 "--resolutions", "native,8", "--device", "cpu", "--workers", "0", "--bn-recalibrated",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "BN-recal acc" in printed and "not the paper's protocol" in printed
    assert "bn_recalibrated" in json.loads(out.read_text())["resolutions"]["8"]
