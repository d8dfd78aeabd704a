import csv
import io
import json
from pathlib import Path

import pytest

from mafer.aggregate import (
    PAPER_RESULTS,
    accuracy_summary,
    aggregate,
    compare,
    model_label,
    parse_labels,
    read_summary,
    results_table,
    to_csv,
    to_markdown,
    write_paired,
    write_summary,
)
from mafer.cli import main
from mafer.errors import MaferError

OULU = ["Surprise", "Happiness", "Sadness", "Anger", "Fear", "Disgust"]


def metrics_file(path, dataset, checkpoint, accuracy, *, fold=None, classes=OULU, mca=None, cm=None, **extra):
    entry = {"accuracy": accuracy, "mean_class_accuracy": accuracy if mca is None else mca,
             "macro_f1": accuracy - 0.1, "score": 0.33 * accuracy + 0.67 * (accuracy - 0.1),
             "confusion_matrix": cm if cm is not None else [[1 if i == j else 0 for j in range(len(classes))]
                                                            for i in range(len(classes))],
             "n": 10, "accuracy_ci": [accuracy - 0.05, accuracy + 0.05]}
    data = {"dataset": dataset, "checkpoint": str(checkpoint), "classes": classes, "split": "test",
            "fold": fold, "protocol": "image", "resolutions": {"native": entry, "8": dict(entry, accuracy=accuracy / 2)},
            **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def three_folds(tmp_path):
    return [metrics_file(tmp_path / f"oulu/cr/fold{k}.json", "oulucasia", tmp_path / f"runs/cr/fold{k}/best.pt",
                         acc, fold=k, cm=[[k + 1, 1] + [0] * 4, [0, 2] + [0] * 4] + [[0] * 6] * 4)
            for k, acc in enumerate([0.90, 0.95, 1.00])]


def test_fold_mean_and_std_by_hand(three_folds):
    summary = aggregate(three_folds)
    (group,) = summary["groups"]
    assert (group["model"], group["dataset"], group["split"], group["protocol"]) == ("CR", "oulucasia", "test", "image")
    assert group["folds"] == [0, 1, 2]
    native = group["resolutions"]["native"]
    assert native["accuracy"]["mean"] == pytest.approx(0.95)
    # sample std of 0.90, 0.95, 1.00: sqrt((0.05^2 + 0 + 0.05^2) / 2) = 0.05
    assert native["accuracy"]["std"] == pytest.approx(0.05)
    assert native["accuracy"]["values"] == [0.90, 0.95, 1.00]
    assert native["n"] == 30 and native["runs"] == 3
    assert group["resolutions"]["8"]["accuracy"]["mean"] == pytest.approx(0.475)
    assert native["confusion_matrix"][0][:2] == [6, 3]
    # row 0 of the folds normalised: 1/2, 2/3, 3/4 -> mean 23/36
    assert native["confusion_matrix_fold_average"][0][0] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert native["confusion_matrix_fold_average"][1][1] == pytest.approx(1.0)


def test_table_in_paper_layout_with_paper_rows(tmp_path, three_folds):
    raf = metrics_file(tmp_path / "raf_base.json", "rafdb", tmp_path / "runs/base_rafdb/best.pt", 0.8, mca=0.7,
                       classes=list("abcdefg"))
    rows = results_table(aggregate([*three_folds, raf]), with_paper=True)
    assert [(r["model"], r["source"]) for r in rows] == [
        ("base", "ours"), ("base", "paper"), ("CR", "ours"), ("CR", "paper"),
        ("CR-Simplified", "paper"), ("CR+AffWild2", "paper")]
    base, cr = rows[0], rows[2]
    assert base["RAF-DB overall acc"] == pytest.approx((80.0, None))
    assert base["RAF-DB average acc"] == pytest.approx((70.0, None))
    assert base["FER2013 acc"] is None
    # our 3 folds and the paper's 10 are different columns: a 3-fold mean is not a 10-fold one
    assert cr["Oulu-CASIA 3-fold acc"] == pytest.approx((95.0, 5.0)) and cr["Oulu-CASIA 10-fold acc"] is None
    assert rows[3]["Oulu-CASIA 10-fold acc"] == PAPER_RESULTS["CR"]["Oulu-CASIA 10-fold acc"] == (98.40, 0.11)
    markdown = to_markdown(rows)
    assert "| model | FER2013 acc | RAF-DB overall acc | RAF-DB average acc | Oulu-CASIA 3-fold acc | " \
           "Oulu-CASIA 10-fold acc |" in markdown
    assert "| CR | – | – | – | 95.00 ± 5.00 | – |" in markdown
    assert "| CR (paper) | 73.06 | 88.43 | 81.90 ± 0.04 | – | 98.40 ± 0.11 |" in markdown
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert table[2]["Oulu-CASIA 3-fold acc mean"] == "95.0000" and table[2]["Oulu-CASIA 3-fold acc std"] == "5.0000"

    low = results_table(aggregate(three_folds), resolution="8")
    assert low[0]["Oulu-CASIA 3-fold acc"][0] == pytest.approx(47.5)


def test_the_bn_diagnostic_is_averaged_beside_the_accuracy_and_only_where_every_run_has_it(tmp_path, three_folds):
    for k, path in enumerate(three_folds):
        data = json.loads(path.read_text())
        data["resolutions"]["8"]["bn_recalibrated"] = {m: 0.6 + 0.1 * k for m in
                                                       ("accuracy", "mean_class_accuracy", "macro_f1", "score")}
        path.write_text(json.dumps(data))
    (group,) = aggregate(three_folds)["groups"]
    assert group["resolutions"]["8"]["bn_recalibrated"]["accuracy"]["mean"] == pytest.approx(0.7)
    assert "bn_recalibrated" not in group["resolutions"]["native"]
    assert accuracy_summary(aggregate(three_folds)) == {"CR": {"oulucasia": {"native": 0.95, "8": 0.475}}}
    assert accuracy_summary(aggregate(three_folds), bn_recalibrated=True) == {"CR": {"oulucasia": {"8": 0.7}}}
    # a run without the diagnostic: no mean of the others is shown as the group's
    other = metrics_file(tmp_path / "oulu/cr/fold9.json", "oulucasia", tmp_path / "runs/cr/fold9/best.pt", 0.9, fold=9)
    (group,) = aggregate([*three_folds, other])["groups"]
    assert "bn_recalibrated" not in group["resolutions"]["8"]


def test_model_names_from_labels_model_key_or_paths(tmp_path):
    data = {"checkpoint": "runs/oulu/cr_simplified-fold3/best.pt"}
    assert model_label("m.json", data) == "CR-Simplified"
    assert model_label("m.json", {"checkpoint": "x/CR+AffWild2/rafdb/best.pt"}) == "CR+AffWild2"
    assert model_label("results/rafdb_base.json", {"checkpoint": "weights.pt"}) == "base"
    assert model_label("m.json", dict(data, model="mine")) == "mine"
    assert model_label("m.json", data, parse_labels(["*fold3*=custom"])) == "custom"
    with pytest.raises(MaferError, match="cannot tell which model"):
        model_label("m.json", {"checkpoint": "runs/x/best.pt"})
    with pytest.raises(MaferError, match="PATTERN=NAME"):
        parse_labels(["nolabel"])


def test_bad_inputs_name_the_file(tmp_path, three_folds):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MaferError, match="bad.json: not a JSON metrics file"):
        aggregate([bad])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"accuracy": 1}))
    with pytest.raises(MaferError, match="other.json: expected `mafer evaluate` output"):
        aggregate([other])
    again = metrics_file(tmp_path / "again/cr.json", "oulucasia", tmp_path / "runs/cr/x/best.pt", 0.5, fold=1)
    with pytest.raises(MaferError, match="fold 1 appears twice"):
        aggregate([*three_folds, again])


def test_cli_writes_summary_csv_and_markdown(tmp_path, three_folds, capsys):
    out = tmp_path / "summary.json"
    rc = main(["aggregate", *map(str, three_folds), "--out", str(out), "--csv", str(tmp_path / "t.csv"),
               "--markdown", str(tmp_path / "t.md"), "--label", "oulu/cr=CR-Simplified", "--paper"])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["groups"][0]["model"] == "CR-Simplified"
    ours = [r for r in summary["table"]["rows"] if r["source"] == "ours"]
    assert [r["model"] for r in ours] == ["CR-Simplified"]
    assert ours[0]["Oulu-CASIA 3-fold acc"] == pytest.approx([95.0, 5.0])
    printed = capsys.readouterr().out
    assert "| CR-Simplified | – | – | – | 95.00 ± 5.00 | – |" in printed
    assert (tmp_path / "t.md").read_text() == printed
    assert (tmp_path / "t.csv").read_text().startswith("model,source,FER2013 acc mean")

    assert main(["aggregate", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "missing.json: metrics file not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- paired comparisons

RAF = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]


def evaluation_file(path, model, dataset, labels, predictions, *, fold=None, seeds=None, classes=RAF):
    """A `mafer evaluate` file with per-image predictions ({resolution: [class per image]})."""
    resolutions = {}
    for res, pred in predictions.items():
        acc = sum(p == y for p, y in zip(pred, labels)) / len(labels)
        resolutions[res] = {"accuracy": acc, "mean_class_accuracy": acc, "macro_f1": acc, "score": acc,
                            "n": len(labels), "predictions": list(pred)}
    data = {"dataset": dataset, "checkpoint": f"runs/{model}/best.pt", "model": model, "classes": classes,
            "split": "test", "fold": fold, "protocol": "image" if dataset == "oulucasia" else None,
            "labels": list(labels), "seeds": seeds, "seed": None if seeds is None else seeds["step2"],
            "resolutions": resolutions}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def seeded_runs(tmp_path):
    """RAF-DB, 2 seeds x 200 images: base right on half the images at native and 8 px; CR right
    everywhere at native and exactly where base is right at 8 px."""
    labels = [i % 7 for i in range(200)]
    wrong = [(y + 1) % 7 for y in labels]
    half = [y if i % 2 else w for i, (y, w) in enumerate(zip(labels, wrong))]
    paths = []
    for seed in (17, 18):
        seeds = {"step1": 17, "step2": seed}
        paths.append(evaluation_file(tmp_path / f"eval/rafdb/base/standard-seed17-{seed}.json", "base", "rafdb",
                                     labels, {"native": half, "8": half}, seeds=seeds))
        paths.append(evaluation_file(tmp_path / f"eval/rafdb/CR/standard-seed17-{seed}.json", "CR", "rafdb",
                                     labels, {"native": labels, "8": half}, seeds=seeds))
    return paths


def test_compare_pairs_seeds_and_images(seeded_runs):
    paired = compare(seeded_runs)
    (entry_native, entry_8) = paired["comparisons"]["CR"]["rafdb"]["native"], paired["comparisons"]["CR"]["rafdb"]["8"]
    assert list(paired["comparisons"]) == ["CR"] and list(paired["comparisons"]["CR"]["rafdb"]) == ["native", "8"]
    assert set(entry_native) == {"diff", "ci95", "p", "n_seeds", "n_images", "method"}
    assert (entry_native["n_seeds"], entry_native["n_images"]) == (2, 200)
    # CR right on every image where base is wrong: +50 points, a tight interval away from 0
    assert entry_native["diff"] == pytest.approx(0.5) and 0.4 < entry_native["ci95"][0] < entry_native["ci95"][1] < 0.6
    assert entry_native["p"] < 0.001
    # the same predictions: no difference
    assert entry_8["diff"] == 0 and entry_8["ci95"][0] <= 0 <= entry_8["ci95"][1] and entry_8["p"] == pytest.approx(1)
    acc = paired["accuracies"]["base"]["rafdb"]["native"]
    assert acc["accuracy"] == pytest.approx(0.5) and acc["ci95"][0] < 0.5 < acc["ci95"][1] and acc["n_seeds"] == 2
    # summary.json's numbers stay the mean over the seeds; the two seeds of one fold are not a duplicate
    (base_group, _) = aggregate(seeded_runs)["groups"]
    assert base_group["seeds"] == ["17-17", "17-18"] and base_group["resolutions"]["native"]["runs"] == 2


def test_compare_needs_the_same_images_seeds_and_predictions(tmp_path, seeded_runs):
    labels = [i % 7 for i in range(200)]
    other = evaluation_file(tmp_path / "x/CR-Simplified.json", "CR-Simplified", "rafdb", labels[::-1],
                            {"native": labels}, seeds={"step1": 17, "step2": 17})
    other2 = evaluation_file(tmp_path / "x/CR-Simplified2.json", "CR-Simplified", "rafdb", labels[::-1],
                             {"native": labels}, seeds={"step1": 17, "step2": 18})
    with pytest.raises(MaferError, match="CR-Simplified.json: its test labels differ"):
        compare([*seeded_runs, other, other2])
    with pytest.raises(MaferError, match="1 seed\\(s\\) against 2"):
        compare([*seeded_runs, other])
    data = json.loads(seeded_runs[0].read_text())
    del data["resolutions"]["8"]["predictions"]
    seeded_runs[0].write_text(json.dumps(data))
    with pytest.raises(MaferError, match="standard-seed17-17.json: no per-image predictions at resolution '8'"):
        compare(seeded_runs)
    oulu = [evaluation_file(tmp_path / f"o{k}.json", "CR", "oulucasia", labels, {"native": labels}, fold=0,
                            seeds={"step1": 17, "step2": 17}, classes=OULU) for k in range(2)]
    with pytest.raises(MaferError, match="fold 0, seed 17-17, appears twice"):
        aggregate(oulu)


def test_cli_writes_and_prints_the_comparisons(tmp_path, seeded_runs, capsys):
    out = tmp_path / "comparisons.json"
    assert main(["aggregate", *map(str, seeded_runs), "--out", str(tmp_path / "s.json"), "--comparisons", str(out)]) == 0
    comparisons = json.loads(out.read_text())
    assert comparisons == compare(seeded_runs)["comparisons"]
    printed = capsys.readouterr().out
    assert "CR is better than base at native resolution on RAF-DB: +50.0 points, 95 % interval [+" in printed
    assert "no difference detectable between CR and base at 8 px on RAF-DB: +0.0 points" in printed


def test_summary_json_round_trip_and_bad_files_are_named(tmp_path, three_folds):
    aggregated = aggregate(three_folds, {"oulu/cr": "CR"})
    written = write_summary(aggregated, tmp_path / "out" / "summary.json")
    assert written == {"CR": {"oulucasia": {"native": pytest.approx(0.95), "8": pytest.approx(0.475)}}}
    assert read_summary(tmp_path / "out" / "summary.json") == written
    cases = {"missing.json": (None, "summary not found"),
             "text.json": ("{oops", "not a JSON summary"),
             "list.json": ("[1, 2]", r"expected \{model: \{dataset: \{resolution: accuracy in 0..1\}\}\}, got a list"),
             "flat.json": ('{"CR": 0.5}', "entry 'CR': expected"),
             "percent.json": ('{"CR": {"rafdb": {"native": 95.0}}}', "entry 'CR'/'rafdb'/'native' = 95.0: expected"),
             "bool.json": ('{"CR": {"rafdb": {"8": true}}}', "entry 'CR'/'rafdb'/'8' = True: expected")}
    for name, (text, message) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(MaferError, match=f"{name}: {message}"):
            read_summary(tmp_path / name)


def test_paired_files_hold_what_compare_returns(tmp_path):
    labels = [0, 1, 1, 0, 1, 0]
    paths = [evaluation_file(tmp_path / f"eval/rafdb/{model}/standard-seed17-{seed}.json", model, "rafdb", labels,
                             {"native": labels if model == "CR" else [0, 0, 1, 1, 0, 1]},
                             seeds={"step1": 17, "step2": seed})
             for model in ("base", "CR") for seed in (17, 18)]
    paired = write_paired(paths, tmp_path / "c" / "comparisons.json", tmp_path / "a" / "accuracies.json")
    assert json.loads((tmp_path / "c" / "comparisons.json").read_text()) == paired["comparisons"]
    assert json.loads((tmp_path / "a" / "accuracies.json").read_text()) == paired["accuracies"]
    assert list(paired["comparisons"]) == ["CR"] and paired["comparisons"]["CR"]["rafdb"]["native"]["diff"] > 0


def test_the_authors_fold_rule_fills_the_papers_oulu_column(tmp_path, three_folds):
    # protocol "authors" (their exact folds over images) is the paper's Oulu-CASIA column, as "image" is
    for path in three_folds:
        data = json.loads(Path(path).read_text())
        Path(path).write_text(json.dumps(dict(data, protocol="authors")))
    aggregated = aggregate(three_folds)
    (row,) = results_table(aggregated)
    assert row["Oulu-CASIA 3-fold acc"] == pytest.approx((95.0, 5.0))
    assert accuracy_summary(aggregated)["CR"]["oulucasia"]["native"] == pytest.approx(0.95)
