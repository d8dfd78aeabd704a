"""The SE-ResNet model family and its preprocessing."""

import pytest
import torch
import torch.nn.functional as F

from mafer.errors import MaferError
from mafer.models import create_model, preprocess


def expected_parameter_count(layers, widths, num_classes):
    """Trainable parameters of the architecture in PAPER.md, counted by hand."""
    stem = widths[0]
    total = 3 * stem * 7 * 7 + 2 * stem  # 7x7 conv without bias + BN scale/shift
    c_in = stem
    for depth, width in zip(layers, widths):
        out = 4 * width
        for b in range(depth):
            total += c_in * width + 2 * width  # 1x1 reduce + BN
            total += 9 * width * width + 2 * width  # 3x3 + BN
            total += width * out + 2 * out  # 1x1 increase + BN
            r = out // 16
            total += out * r + r + r * out + out  # SE down/up with bias
            if b == 0:
                total += c_in * out + 2 * out  # projection + BN
            c_in = out
    return total + c_in * num_classes + num_classes


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_senet50_parameter_count_matches_the_architecture():
    assert count(create_model("senet50", 8631)) == expected_parameter_count((3, 4, 6, 3), (64, 128, 256, 512), 8631)
    # timm's seresnet50 (same layer shapes, stride on the 3x3) has 28,088,024 with 1000 classes.
    assert count(create_model("senet50", 1000)) == 28_088_024


def test_senet_tiny_is_small_and_of_the_same_family():
    model = create_model("senet_tiny", 7)
    assert count(model) == expected_parameter_count((1, 1, 1, 1), (16, 32, 64, 128), 7)
    assert model.num_features == 512
    assert count(model) < 1_000_000


def test_caffe_layout_details():
    model = create_model("senet50", 7)
    first = model.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    assert first.downsample[0].stride == (2, 2)
    assert model.layer1[0].conv1.stride == (1, 1) and model.layer1[0].downsample is not None
    assert model.layer1[1].downsample is None
    assert model.maxpool.ceil_mode
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.conv1.bias is None and first.se.down.bias is not None


def test_senet50_at_224_pools_a_7x7_map_into_a_2048_feature():
    model = create_model("senet50", 7).eval()
    maps = []
    model.layer4.register_forward_hook(lambda m, i, o: maps.append(o))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert maps[0].shape == (1, 2048, 7, 7)
    torch.testing.assert_close(features, F.avg_pool2d(maps[0], 7).flatten(1))
    torch.testing.assert_close(logits, model.forward_head(features))


@pytest.mark.parametrize("name,size", [("senet_tiny", 48), ("senet_tiny", 32), ("senet50", 64)])
def test_forward_and_backward_on_cpu(name, size):
    model = create_model(name, 7).train()
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 7)
    F.cross_entropy(logits, torch.tensor([0, 6])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_reset_classifier_keeps_the_backbone():
    model = create_model("senet_tiny", 8631).eval()
    x = torch.randn(2, 3, 48, 48)
    before = model.forward_features(x)
    model.reset_classifier(6)
    assert model.classifier.out_features == 6 and model.num_classes == 6
    torch.testing.assert_close(model.forward_features(x), before)
    assert model(x).shape == (2, 6)


def test_unknown_arch_is_a_user_error():
    with pytest.raises(MaferError, match="unknown architecture 'senet101'"):
        create_model("senet101", 7)


def test_preprocess_flips_to_bgr_and_subtracts_the_mean_without_scaling():
    rgb = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    rgb[:, 0], rgb[:, 1], rgb[:, 2] = 200, 100, 50  # R, G, B
    out = preprocess(rgb, (91.4953, 103.8827, 131.0912))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([50 - 91.4953, 100 - 103.8827, 200 - 131.0912]))
    torch.testing.assert_close(preprocess(rgb[0].float(), (0, 0, 0)), rgb[0].flip(0).float())


def test_preprocess_rejects_non_rgb_shapes():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), (0, 0, 0))
