import json

import numpy as np
import pytest
import torch
from PIL import Image

from mafer.cli import main
from mafer.datasets import DATASETS
from mafer.errors import MaferError
from mafer.models import create_model
from mafer.predict import collect_images, predict_images

CLASSES = list(DATASETS["fer2013"].classes)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "fer.pt", "fer2013")


@pytest.fixture
def faces(tmp_path):
    rng = np.random.default_rng(0)
    gray = tmp_path / "faces" / "gray.png"
    colour = tmp_path / "faces" / "nested" / "colour.jpg"
    colour.parent.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (53, 37), dtype=np.uint8), mode="L").save(gray)
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), mode="RGB").save(colour, quality=90)
    (tmp_path / "faces" / "README.txt").write_text("not an image, skipped in folders")
    return gray, colour


def test_json_output_for_gray_and_colour_images_of_odd_sizes(checkpoint, faces, capsys):
    gray, colour = faces
    rc = main(["predict", str(gray.parent), "--checkpoint", str(checkpoint), "--json", "--batch-size", "1",
               "--device", "cpu"])
    assert rc == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in results] == [str(gray), str(colour)]  # README.txt skipped, nested folder found
    for r in results:
        assert list(r["probabilities"]) == CLASSES
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in r["probabilities"].values())
        assert r["prediction"] == max(r["probabilities"], key=r["probabilities"].get)


def test_batches_do_not_change_results(checkpoint, faces):
    one_by_one = predict_images(faces, checkpoint, device="cpu", batch_size=1)
    together = predict_images(faces, checkpoint, device="cpu", batch_size=8)
    for a, b in zip(one_by_one, together):
        assert a["prediction"] == b["prediction"]
        assert list(a["probabilities"].values()) == pytest.approx(list(b["probabilities"].values()), abs=1e-5)


def test_text_output(checkpoint, faces, capsys):
    assert main(["predict", str(faces[1]), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{faces[1]}: ")
    assert all(name in line for name in CLASSES) and line.count("%") == 7


def test_errors_name_the_file(checkpoint, faces, tmp_path, capsys):
    fake = tmp_path / "fake.jpg"
    fake.write_text("plain text")
    assert main(["predict", str(faces[0]), str(fake), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{fake}: cannot decode image" in err and "Traceback" not in err

    assert main(["predict", str(faces[0]), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: checkpoint not found" in capsys.readouterr().err

    torch.save(create_model("senet_tiny", 7).state_dict(), tmp_path / "other_model.pt")
    assert main(["predict", str(faces[0]), "--checkpoint", str(tmp_path / "other_model.pt")]) == 2
    assert "other_model.pt: shape mismatch" in capsys.readouterr().err

    (tmp_path / "notes.pt").write_text("not a checkpoint")
    assert main(["predict", str(faces[0]), "--checkpoint", str(tmp_path / "notes.pt")]) == 2
    assert "notes.pt: cannot read it as a weight file" in capsys.readouterr().err


def test_missing_inputs(tmp_path):
    with pytest.raises(MaferError, match="nothing.png: no such file or folder"):
        collect_images([tmp_path / "nothing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaferError, match="empty: no image files"):
        collect_images([tmp_path / "empty"])


def test_exif_orientation_is_applied_first(checkpoint, tmp_path):
    """A photo stored sideways with an EXIF orientation tag (as phones store them) reaches the model upright."""
    rng = np.random.default_rng(1)
    upright = rng.integers(0, 256, (64, 40, 3), dtype=np.uint8)
    upright[:20] = 255  # not symmetric under rotation
    Image.fromarray(upright).save(tmp_path / "upright.png")
    stored = Image.fromarray(np.rot90(upright).copy())  # pixels turned 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "sideways.png", exif=exif)
    stored.save(tmp_path / "sideways_no_tag.png")
    results = predict_images([tmp_path / "upright.png", tmp_path / "sideways.png", tmp_path / "sideways_no_tag.png"],
                             checkpoint, device="cpu")
    probs = [list(r["probabilities"].values()) for r in results]
    assert probs[1] == pytest.approx(probs[0], abs=1e-6)
    assert probs[2] != pytest.approx(probs[0], abs=1e-6)  # the tag is what makes the difference


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "I;16"])
def test_other_colour_modes_become_rgb(checkpoint, tmp_path, mode):
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (48, 48), dtype=np.uint16))
    elif mode == "P":
        image = rgb.convert("P")
        image.info["transparency"] = 0
    else:
        image = rgb.convert(mode)
    path = tmp_path / ("face.jpg" if mode == "CMYK" else "face.png")
    image.save(path)
    (result,) = predict_images([path], checkpoint, device="cpu")
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_16bit_gray_face_is_seen_as_its_8bit_version(checkpoint, tmp_path):
    """A 16-bit PNG was clamped to 255 (a white image); it must classify like the 8-bit face it scales to."""
    rng = np.random.default_rng(3)
    face8 = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    Image.fromarray(face8).save(tmp_path / "face8.png")
    Image.fromarray(face8.astype(np.uint16) * 257).save(tmp_path / "face16.png")
    assert Image.open(tmp_path / "face16.png").mode == "I;16"
    Image.fromarray(np.full((48, 48), 255, np.uint8)).save(tmp_path / "white.png")
    results = predict_images([tmp_path / "face8.png", tmp_path / "face16.png", tmp_path / "white.png"],
                             checkpoint, device="cpu")
    probs = [list(r["probabilities"].values()) for r in results]
    assert probs[1] == pytest.approx(probs[0], abs=1e-6)
    assert probs[2] != pytest.approx(probs[0], abs=1e-6)


def test_huge_photo_is_refused_in_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    """Pillow's decompression-bomb limit scaled down: a 64 x 48 image plays a 180-megapixel photo."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "photo.jpg")
    rc = main(["predict", str(tmp_path / "photo.jpg"), "--checkpoint", str(checkpoint), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "photo.jpg" in err and "3,072 pixels" in err and "Traceback" not in err


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="/dev/full is a Linux device")
def test_json_to_a_full_device_is_one_line(checkpoint, faces, capsys, monkeypatch):
    """``mafer predict --json > /dev/full``: one line naming standard output and the full disk, no traceback."""
    full = open("/dev/full", "w")
    monkeypatch.setattr("sys.stdout", full)
    rc = main(["predict", str(faces[0]), "--checkpoint", str(checkpoint), "--json", "--device", "cpu"])
    full.close()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "standard output" in err and "/dev/full" in err and "the disk is full (ENOSPC" in err
