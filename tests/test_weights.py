"""Weight files users bring: exact agreement with the authors' network, formats, safety.

The reference below is written from the architecture description in PAPER.md, with plain
``torch.nn.functional`` calls over a state dict in the MMdnn names, independently of
``mafer/models/senet.py``.
"""

import io
import math
import os
import pickle
import re
import struct
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from mafer.errors import MaferError, MaferWarning
from mafer.models import create_model, load_pretrained, model_from_checkpoint, read_weight_file

SENET50 = (3, 4, 6, 3), (64, 128, 256, 512)
TINY = (1, 1, 1, 1), (16, 32, 64, 128)


# ---------------------------------------------------------------------------------------
# A random network in the MMdnn names, and the reference forward pass over it
# ---------------------------------------------------------------------------------------
def mmdnn_state(layers, widths, num_classes, seed=0):
    """Random weights, with non-trivial BN statistics, named as in the MAFER checkpoints."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def conv(name, c_in, c_out, k, bias=False, gain=1.0):
        state[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * gain * math.sqrt(2 / (c_in * k * k))
        if bias:
            state[f"{name}.bias"] = torch.randn(c_out, generator=g) * 0.1

    def bn(name, c):
        state[f"{name}.weight"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.bias"] = torch.randn(c, generator=g) * 0.1
        state[f"{name}.running_mean"] = torch.randn(c, generator=g) * 0.2
        state[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    conv("conv1_7x7_s2", 3, widths[0], 7)
    bn("conv1_7x7_s2_bn", widths[0])
    c_in = widths[0]
    for s, (depth, width) in enumerate(zip(layers, widths), start=2):
        out = 4 * width
        for b in range(1, depth + 1):
            p = f"conv{s}_{b}_"
            conv(p + "1x1_reduce", c_in, width, 1)
            bn(p + "1x1_reduce_bn", width)
            conv(p + "3x3", width, width, 3)
            bn(p + "3x3_bn", width)
            conv(p + "1x1_increase", width, out, 1, gain=0.3)
            bn(p + "1x1_increase_bn", out)
            conv(p + "1x1_down", out, out // 16, 1, bias=True)
            conv(p + "1x1_up", out // 16, out, 1, bias=True)
            if b == 1:
                conv(p + "1x1_proj", c_in, out, 1)
                bn(p + "1x1_proj_bn", out)
            c_in = out
    state["classifier_1.weight"] = torch.randn(num_classes, c_in, generator=g) / math.sqrt(c_in)
    state["classifier_1.bias"] = torch.randn(num_classes, generator=g) * 0.1
    return state


def reference_forward(state, x, layers):
    """(features, logits) of SE-ResNet-50 as PAPER.md describes it, in float64."""
    sd = {k: v.double() for k, v in state.items()}

    def conv(t, name, stride=1, padding=0):
        return F.conv2d(t, sd[f"{name}.weight"], sd.get(f"{name}.bias"), stride, padding)

    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], training=False, eps=1e-5)

    t = F.relu(bn(conv(x.double(), "conv1_7x7_s2", 2, 3), "conv1_7x7_s2_bn"))
    t = F.max_pool2d(F.pad(t, (0, 1, 0, 1), value=-math.inf), 3, 2)  # Caffe ceil-mode pooling
    for s, depth in enumerate(layers, start=2):
        for b in range(1, depth + 1):
            p = f"conv{s}_{b}_"
            stride = 2 if b == 1 and s > 2 else 1  # on the 1x1 reduce and the projection
            out = F.relu(bn(conv(t, p + "1x1_reduce", stride), p + "1x1_reduce_bn"))
            out = F.relu(bn(conv(out, p + "3x3", 1, 1), p + "3x3_bn"))
            out = bn(conv(out, p + "1x1_increase"), p + "1x1_increase_bn")
            gate = torch.sigmoid(conv(F.relu(conv(out.mean((2, 3), keepdim=True), p + "1x1_down")), p + "1x1_up"))
            shortcut = bn(conv(t, p + "1x1_proj", stride), p + "1x1_proj_bn") if b == 1 else t
            t = F.relu(out * gate + shortcut)
    features = t.mean((2, 3))  # the 7x7 average pool at 224 px
    return features, F.linear(features, sd["classifier_1.weight"], sd["classifier_1.bias"])


def relative_max_diff(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


MMDNN_TO_VGGFACE2 = {
    "1x1_reduce": "conv1", "1x1_reduce_bn": "bn1", "3x3": "conv2", "3x3_bn": "bn2",
    "1x1_increase": "conv3", "1x1_increase_bn": "bn3", "1x1_down": "conv4", "1x1_up": "conv5",
    "1x1_proj": "downsample.0", "1x1_proj_bn": "downsample.1",
}


def vggface2_arrays(state):
    """The same weights as the VGGFace2 pickle stores them (no num_batches_tracked)."""
    arrays = {}
    for key, value in state.items():
        layer, attr = key.rsplit(".", 1)
        if attr == "num_batches_tracked":
            continue
        block = re.fullmatch(r"conv(\d)_(\d+)_(\w+)", layer)
        if block:
            s, b, part = block.groups()
            name = f"layer{int(s) - 1}.{int(b) - 1}.{MMDNN_TO_VGGFACE2[part]}"
        else:
            name = {"conv1_7x7_s2": "conv1", "conv1_7x7_s2_bn": "bn1", "classifier_1": "fc"}[layer]
        arrays[f"{name}.{attr}"] = value.numpy()
    return arrays


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes, like the original Python 2 pickle."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_str2(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str2


def write_py2_pickle(obj, path):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def senet50_case():
    torch.manual_seed(0)
    state = mmdnn_state(*SENET50, num_classes=8631)
    x = torch.randn(1, 3, 224, 224) * 50
    return state, x, reference_forward(state, x, SENET50[0])


def assert_matches_reference(model, x, reference, head=True):
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
    assert relative_max_diff(features, reference[0]) < 1e-4
    if head:
        assert relative_max_diff(logits, reference[1]) < 1e-4


# ---------------------------------------------------------------------------------------
# Exact agreement through each format
# ---------------------------------------------------------------------------------------
def test_authors_checkpoint_reproduces_the_reference_network(tmp_path, senet50_case):
    state, x, reference = senet50_case
    path = tmp_path / "mafer_cr_fer2013.pth"
    torch.save({"model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []},
                "epoch": 12, "best_acc": torch.tensor(73.06), "train_iter": 500}, path)
    model = create_model("senet50", 8631)
    meta = load_pretrained(model, path)
    assert meta["format"] == "mafer-authors" and meta["epoch"] == 12 and meta["train_iter"] == 500
    assert meta["best_acc"] == pytest.approx(73.06)
    assert_matches_reference(model, x, reference)


def test_vggface2_pickle_reproduces_the_reference_network(tmp_path, senet50_case):
    state, x, reference = senet50_case
    path = tmp_path / "senet50_ft_weight.pkl"
    write_py2_pickle(vggface2_arrays(state), path)
    model = create_model("senet50", 8631)
    assert load_pretrained(model, path)["format"] == "vggface2-pickle"
    assert_matches_reference(model, x, reference)

    # Step 2 starts from the identity network with a new expression classifier.
    fer = create_model("senet50", 7)
    initial_head = fer.classifier.weight.detach().clone()
    meta = load_pretrained(fer, path, head=False)
    assert meta["num_classes_in_file"] == 8631 and not meta["head_loaded"]
    assert torch.equal(fer.classifier.weight, initial_head)
    assert_matches_reference(fer, x, reference, head=False)

    rebuilt, meta = model_from_checkpoint(path)
    assert rebuilt.num_classes == 8631 and meta["mean_bgr"] == [91.4953, 103.8827, 131.0912]


@pytest.mark.parametrize("protocol", [2, 4])
def test_vggface2_pickle_written_by_python3_loads(tmp_path, protocol):
    state = mmdnn_state(*TINY, num_classes=8631)
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(vggface2_arrays(state), protocol=protocol))
    model = create_model("senet_tiny", 8631)
    assert load_pretrained(model, path)["format"] == "vggface2-pickle"
    assert torch.equal(model.layer3[0].downsample[1].running_var, state["conv4_1_1x1_proj_bn.running_var"])
    assert torch.equal(model.classifier.bias, state["classifier_1.bias"])


# ---------------------------------------------------------------------------------------
# The MMdnn whole-model pickle, read without importing its class
# ---------------------------------------------------------------------------------------
MAIN_MODEL_SOURCE = textwrap.dedent(
    """
    import os
    import torch.nn as nn

    open(os.environ["MAFER_TEST_IMPORT_MARKER"], "a").close()  # shows whether anyone imported us


    class KitModel(nn.Module):
        def __init__(self, state):
            super().__init__()
            for key, value in state.items():
                layer, attr = key.rsplit(".", 1)
                if hasattr(self, layer):
                    continue
                if layer.endswith("_bn"):
                    module = nn.BatchNorm2d(value.shape[0])
                elif layer == "classifier_1":
                    module = nn.Linear(state[layer + ".weight"].shape[1], value.shape[0])
                else:
                    w = state[layer + ".weight"]
                    module = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=layer + ".bias" in state)
                setattr(self, layer, module)
            self.load_state_dict(state)
    """
)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_mmdnn_module_pickle_is_read_without_importing_its_class(tmp_path, monkeypatch, zip_format):
    state = mmdnn_state(*TINY, num_classes=8631)
    (tmp_path / "MainModel.py").write_text(MAIN_MODEL_SOURCE)
    marker = tmp_path / "imported"
    monkeypatch.setenv("MAFER_TEST_IMPORT_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    import MainModel

    path = tmp_path / "senet50_ft_pytorch.pt"
    torch.save(MainModel.KitModel(state), path, _use_new_zipfile_serialization=zip_format)
    del sys.modules["MainModel"], MainModel
    marker.unlink()

    model = create_model("senet_tiny", 8631)
    meta = load_pretrained(model, path)
    assert not marker.exists(), "loading imported MainModel"
    assert meta["format"] == "mmdnn-module" and meta["module_class"] == "MainModel.KitModel"
    assert torch.equal(model.layer2[0].se.up.weight, state["conv3_1_1x1_up.weight"])
    x = torch.randn(2, 3, 64, 64) * 50
    assert_matches_reference(model, x, reference_forward(state, x, TINY[0]))


# ---------------------------------------------------------------------------------------
# Wrong files: clear errors naming the file and the key
# ---------------------------------------------------------------------------------------
def save_authors(state, path):
    torch.save({"model_state_dict": state, "epoch": 1, "best_acc": 50.0}, path)
    return path


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    state = mmdnn_state(*TINY, num_classes=7)
    missing = {k: v for k, v in state.items() if k != "conv4_1_3x3.weight"}
    with pytest.raises(MaferError, match=r"missing.*conv4_1_3x3\.weight") as err:
        load_pretrained(create_model("senet_tiny", 7), save_authors(missing, tmp_path / "missing.pth"))
    assert "missing.pth" in str(err.value)
    with pytest.raises(MaferError, match=r"unexpected key 'conv9_1_3x3\.weight'.*|unexpected.*conv9") as err:
        load_pretrained(create_model("senet_tiny", 7),
                        save_authors({**state, "conv9_1_3x3.weight": torch.zeros(1)}, tmp_path / "extra.pth"))
    assert "extra.pth" in str(err.value)
    with pytest.raises(MaferError, match=r"shape mismatch for 'conv2_1_3x3\.weight'") as err:
        load_pretrained(create_model("senet_tiny", 7),
                        save_authors({**state, "conv2_1_3x3.weight": torch.zeros(16, 16, 1, 1)}, tmp_path / "shape.pth"))
    assert "shape.pth" in str(err.value)
    # A wider network of the same family does not fit the tiny model.
    wider = mmdnn_state((1, 1, 1, 1), (32, 64, 128, 256), 7)
    with pytest.raises(MaferError, match=r"shape mismatch for 'conv1_7x7_s2\.weight'"):
        load_pretrained(create_model("senet_tiny", 7), save_authors(wider, tmp_path / "wide.pth"))


def test_failed_load_leaves_the_model_untouched(tmp_path):
    state = mmdnn_state(*TINY, num_classes=7)
    state["conv5_1_1x1_up.weight"] = torch.zeros(3)
    model = create_model("senet_tiny", 7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(MaferError):
        load_pretrained(model, save_authors(state, tmp_path / "bad.pth"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_wrapped_and_conv_shaped_checkpoints_load(tmp_path):
    state = mmdnn_state(*TINY, num_classes=7)
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.classifier_1.weight"] = state["classifier_1.weight"][:, :, None, None]
    model = create_model("senet_tiny", 7)
    load_pretrained(model, save_authors(wrapped, tmp_path / "dp.pth"))
    assert torch.equal(model.classifier.weight, state["classifier_1.weight"])


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", os.urandom(256), pickle.dumps([1, 2, 3]),
                                     pickle.dumps({"a": 1})], ids=["empty", "text", "random", "list", "dict"])
def test_unknown_formats_are_user_errors(tmp_path, content):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(MaferError, match="weights.bin"):
        load_pretrained(create_model("senet_tiny", 7), path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(MaferError, match="not found"):
        read_weight_file(tmp_path / "senet50_ft_weight.pkl")


# ---------------------------------------------------------------------------------------
# Malicious files: refused, and their code never runs
# ---------------------------------------------------------------------------------------
class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class WritePayload(Payload):
    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def evil_files(tmp_path, marker):
    state = {k: v.numpy() for k, v in mmdnn_state(*TINY, num_classes=7).items()}
    yield "pickle-p2", lambda p: p.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    yield "pickle-p0", lambda p: p.write_bytes(pickle.dumps(WritePayload(marker), protocol=0))
    yield "numpy-dict", lambda p: p.write_bytes(pickle.dumps({**state, "x": Payload(marker)}, protocol=2))
    yield "torch-zip", lambda p: torch.save({"model_state_dict": {}, "epoch": Payload(marker)}, p)
    yield "torch-legacy", lambda p: torch.save({"model_state_dict": {}, "epoch": WritePayload(marker)}, p,
                                               _use_new_zipfile_serialization=False)


@pytest.mark.parametrize("kind", ["pickle-p2", "pickle-p0", "numpy-dict", "torch-zip", "torch-legacy"])
def test_malicious_pickles_are_refused_and_do_not_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "senet50_ft_weight.pkl"
    dict(evil_files(tmp_path, marker))[kind](path)
    with pytest.raises(MaferError, match="refused") as err:
        load_pretrained(create_model("senet_tiny", 7), path)
    assert str(path) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_compiled_model_checkpoints_load_like_wrapped_ones(tmp_path, prefix):
    """A state dict saved from a torch.compile'd model (keys under ``_orig_mod.``), alone or with DDP."""
    state = mmdnn_state(*TINY, num_classes=7)
    model = create_model("senet_tiny", 7)
    load_pretrained(model, save_authors({f"{prefix}{k}": v for k, v in state.items()}, tmp_path / "c.pth"))
    assert torch.equal(model.classifier.weight, state["classifier_1.weight"].flatten(1))


# ---------------------------------------------------------------------------------------
# Other frameworks' files: Lightning checkpoints, any common prefix, safetensors
# ---------------------------------------------------------------------------------------
class AttributeDict(dict):
    """Stands in for Lightning's hyper-parameter dict: a dict subclass that weights_only refuses."""


def internal_state(num_classes=7, seed=0):
    torch.manual_seed(seed)
    return create_model("senet_tiny", num_classes).state_dict()


def lightning_checkpoint(state, prefix="model."):
    return {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"{prefix}{k}": v for k, v in state.items()},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}],
            "lr_schedulers": [], "callbacks": {}, "hparams_name": "kwargs",
            "hyper_parameters": AttributeDict(lr=0.01, num_classes=7)}


def test_lightning_checkpoint_loads_and_names_the_stripped_prefix(tmp_path):
    state = internal_state()
    path = tmp_path / "epoch=3-step=120.ckpt"
    torch.save(lightning_checkpoint(state), path)
    with pytest.warns(MaferWarning, match=r"epoch=3-step=120.ckpt: .*under the prefix 'model\.'"):
        weights = read_weight_file(path)
    assert (weights.format, weights.num_classes, weights.meta["stripped_prefix"]) == ("lightning", 7, "model.")
    assert weights.meta["epoch"] == 3 and weights.meta["global_step"] == 120
    model = create_model("senet_tiny", 7)
    with pytest.warns(MaferWarning):
        load_pretrained(model, path)
    assert torch.equal(model.classifier.weight, state["classifier.weight"])


@pytest.mark.parametrize("prefix,naming", [("model.", "internal"), ("net.", "mmdnn"), ("backbone.body.", "internal"),
                                           ("module.model.", "internal"), ("model.module.", "mmdnn"),
                                           ("encoder.", "vggface2")])
def test_a_state_dict_under_any_single_prefix_loads(tmp_path, prefix, naming):
    """The issue's case: ``model.classifier.weight`` is there, so the file has a classifier."""
    if naming == "internal":
        state, classifier = internal_state(), "classifier.weight"
    elif naming == "mmdnn":
        state, classifier = mmdnn_state(*TINY, num_classes=7), "classifier_1.weight"
    else:
        state = {k: torch.from_numpy(v) for k, v in vggface2_arrays(mmdnn_state(*TINY, num_classes=7)).items()}
        classifier = "fc.weight"
    path = tmp_path / "weights.pt"
    torch.save({f"{prefix}{k}": v for k, v in state.items()}, path)
    with pytest.warns(MaferWarning, match="prefix"):
        weights = read_weight_file(path)
    assert weights.num_classes == 7 and weights.naming == naming
    assert weights.meta["stripped_prefix"] == prefix.removeprefix("module.").replace("module.", "")
    model = create_model("senet_tiny", 7)
    with pytest.warns(MaferWarning):
        load_pretrained(model, path)
    assert torch.equal(model.classifier.weight, state[classifier].reshape(7, -1))


def test_names_under_several_prefixes_are_refused_naming_them(tmp_path):
    state = {f"model.{k}": v for k, v in internal_state().items()}
    state["criterion.weight"] = torch.ones(7)
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.4.0"}, tmp_path / "mixed.ckpt")
    with pytest.raises(MaferError, match=r"mixed.ckpt: .*under the prefix 'model\.'.*'criterion\.' \(1\)"):
        read_weight_file(tmp_path / "mixed.ckpt")


def test_safetensors_files_are_read_through_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = internal_state()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    weights = read_weight_file(tmp_path / "model.safetensors")
    assert (weights.format, weights.num_classes) == ("safetensors", 7)
    mmdnn = mmdnn_state(*TINY, num_classes=7)
    save_file({f"model.{k}": v.contiguous() for k, v in mmdnn.items()}, tmp_path / "authors.safetensors")
    model = create_model("senet_tiny", 7)
    with pytest.warns(MaferWarning, match="prefix 'model.'"):
        load_pretrained(model, tmp_path / "authors.safetensors")
    assert torch.equal(model.classifier.weight, mmdnn["classifier_1.weight"].flatten(1))
    damaged = tmp_path / "cut.safetensors"
    damaged.write_bytes((tmp_path / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(MaferError, match="cut.safetensors: damaged safetensors file"):
        read_weight_file(damaged)
