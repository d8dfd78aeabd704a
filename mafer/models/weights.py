"""Every weight file users bring, read without running code from it.

Formats recognised by :func:`read_weight_file` (and so by :func:`load_pretrained`):

=====================  ==================================================================
``mafer``              this project's checkpoints (:mod:`mafer.models.checkpoint`)
``mafer-authors``      the MAFER authors' checkpoints: a ``torch.save`` dict with
                       ``model_state_dict`` in the MMdnn names, ``epoch``, ``best_acc`` ...
``vggface2-pickle``    ``senet50_ft_weight.pkl``: a (Python 2, latin1) pickle of a dict of
                       numpy arrays with torchvision-like names and an 8631-class ``fc``
``mmdnn-module``       ``senet50_ft_pytorch.pt``: a whole pickled ``MainModel.KitModel``
                       (``pickled-module`` for a pickled module of another class)
``state-dict``         a bare ``torch.save`` of a state dict in any of the three namings
``lightning``          a PyTorch Lightning checkpoint (``state_dict``, ``epoch``,
                       ``global_step``, ``pytorch-lightning_version`` ...); other dicts with a
                       ``state_dict`` entry are read as ``state-dict``
``safetensors``        a ``.safetensors`` file (read by the ``safetensors`` library, which
                       holds tensors only and runs no code), in any of the three namings
=====================  ==================================================================

Names. Wrappers' prefixes (``module.`` of DataParallel/DDP, ``_orig_mod.`` of
``torch.compile``) are removed, and so is any other single prefix that all names share before
this project's, the authors' or VGGFace2's names (``model.`` of a LightningModule that holds
the network as ``self.model``, ``backbone.``, ``net.`` ...): `WeightFile.meta` gives it as
``stripped_prefix``, and a `MaferWarning` says so. Names under several prefixes are refused
with a message that names them.

Safety. A checkpoint from the internet is untrusted input, and unpickling it naively can
run arbitrary code. Torch files are first read with ``torch.load(weights_only=True)``.
Files that this refuses (a pickled ``nn.Module`` names its classes) and numpy pickles go
through :class:`_RestrictedUnpickler`: it resolves only an allow-list of data constructors
(containers, numpy arrays and dtypes, tensor rebuilding re-implemented here), and maps any
other class to an inert placeholder that can be *created empty and given state* (what
pickling a plain object does) but never *called* (what every code-execution pickle needs).
Numpy pickles get no placeholders at all. Nothing from the file is ever imported.
"""

from __future__ import annotations

import codecs
import collections
import io
import json
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch
from torch import nn

from mafer.errors import MaferError, MaferWarning
from mafer.models.senet import internal_to_mmdnn, internal_to_vggface2, unwrap_model

__all__ = ["CHECKPOINT_FORMAT", "WeightFile", "read_weight_file", "load_pretrained", "load_weights"]

CHECKPOINT_FORMAT = "mafer-checkpoint"  # value of the "format" key in this project's checkpoints
AUTHORS_FORMAT = "mafer-authors"  # what `read_weight_file` calls the authors' checkpoints (model_state_dict, epoch, best_acc)
_EXPECTED = (
    "expected a checkpoint of this project, a MAFER authors' checkpoint, the VGGFace2 "
    "pickle (senet50_ft_weight.pkl), the MMdnn model (senet50_ft_pytorch.pt), or a state dict "
    "of these networks (torch.save, Lightning checkpoint or .safetensors)"
)
_METADATA_KEYS = ("epoch", "best_acc", "train_iter", "global_step")
_OWN_METADATA_KEYS = ("arch", "num_classes", "class_names", "mean_bgr", "config", "metrics", "extra")


def upgrade_own_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint dict of this project in the current key names (a new dict; tensors shared).

    Format version 1 named the architecture ``model_name`` and stored the training option as
    ``config["model"]``; both are ``arch`` now (timm's and torchvision's term), so that "model"
    only names the paper's four experimental models (base, CR, CR-Simplified, CR+AffWild2).
    Versions 1 and 2 numbered the Oulu-CASIA ``config["fold"]`` from 0; it counts from 1 now, as
    the authors' ``best_model_ckp_fold_<k>.pt`` files do.
    """
    out = dict(checkpoint)
    if "model_name" in out and "arch" not in out:
        out["arch"] = out.pop("model_name")
    config = out.get("config")
    if isinstance(config, dict) and "model" in config and "arch" not in config:
        out["config"] = config = {("arch" if k == "model" else k): v for k, v in config.items()}
    if (isinstance(config, dict) and out.get("format_version", 0) < 3 and isinstance(config.get("fold"), int)
            and not isinstance(config["fold"], bool)):
        out["config"] = {**config, "fold": config["fold"] + 1}
    return out


@dataclass
class WeightFile:
    """Tensors of a weight file in the file's own names, plus what is known about it."""

    path: Path
    format: str
    naming: str  # "internal" (this project), "mmdnn" or "vggface2"
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def file_key(self, key: str) -> str:
        """Name in this file of the model's state-dict ``key``."""
        return _TO_FILE_NAME[self.naming](key)

    @property
    def num_classes(self) -> int | None:
        """Outputs of the classifier stored in the file (None when it has none)."""
        weight = self.state_dict.get(self.file_key("classifier.weight"))
        return None if weight is None else int(weight.shape[0])


_TO_FILE_NAME: dict[str, Callable[[str], str]] = {
    "internal": lambda key: key,
    "mmdnn": internal_to_mmdnn,
    "vggface2": internal_to_vggface2,
}


# ---------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------
class _Refused(pickle.UnpicklingError):
    """The pickle asked for something a weight file never needs."""


class _Inert:
    """Stand-in for a class named in the file: keeps the pickled state, runs nothing."""

    _pickled_name = "?"
    _state: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Inert":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Reached only through REDUCE/INST/OBJ, i.e. the file wants to *call* the name.
        raise _Refused(f"the pickle calls {self._pickled_name}, which a weight file never needs")

    def __setstate__(self, state: Any) -> None:
        self._state = state

    # a pickled dict or list subclass (Lightning's AttributeDict of hyper-parameters) is filled
    # item by item after it is created: keep the items as data
    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_list", []).extend(values)


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


def _numpy_core(module: str):
    try:
        return __import__(f"numpy._core.{module}", fromlist=["_"])
    except ImportError:  # numpy < 2
        return __import__(f"numpy.core.{module}", fromlist=["_"])


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, "latin1").
    if codecs.lookup(encoding).name != "iso8859-1":
        raise _Refused(f"the pickle calls _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise _Refused("tensor data does not come from a storage record")
    return torch.as_strided(storage, tuple(size), tuple(stride), storage.storage_offset() + offset)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    return data


def _rebuild_from_type(func: Callable, _new_type: Any, args: tuple, _state: Any) -> Any:
    return func(*args)


_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_core("multiarray")._reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_core("multiarray").scalar,
    ("numpy.core.numeric", "_frombuffer"): _numpy_core("numeric")._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_CONTAINER_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("_codecs", "encode"): _encode_latin1,
}
_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Size"): torch.Size,
    # Modules pickled by torch <= 0.4 store their backend as this call; it carries no data.
    ("torch.nn.backends.thnn", "_get_thnn_function_backend"): lambda: None,
}
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


def _normalise(module: str, name: str) -> tuple[str, str]:
    module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
    module = re.sub(r"^numpy\._core\b", "numpy.core", module)
    return module, name


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves an allow-list only; see the module docstring.

    ``storage_reader(key, dtype, numel)`` returns the flat tensor of a torch storage record;
    without it, persistent ids (torch storages) are refused and no placeholders are made.
    """

    def __init__(self, file: BinaryIO, storage_reader: Callable[[str, torch.dtype, int], torch.Tensor] | None = None):
        super().__init__(file, encoding="latin1")
        self._storage_reader = storage_reader
        self._globals = {**_NUMPY_GLOBALS, **_CONTAINER_GLOBALS}
        if storage_reader is not None:
            self._globals.update(_TORCH_GLOBALS)
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = _normalise(module, name)
        if key in self._globals:
            return self._globals[key]
        if self._storage_reader is None:
            raise _Refused(f"the pickle asks for {module}.{name}; only numpy arrays and plain containers are allowed")
        if key[0] in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if key not in self._placeholders:
            self._placeholders[key] = type(name, (_Inert,), {"_pickled_name": f"{module}.{name}"})
        return self._placeholders[key]

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_reader is None or not isinstance(pid, tuple) or not pid:
            raise _Refused(f"unexpected persistent id {pid!r}")
        if pid[0] == "module" and len(pid) == 4:
            return pid[1]  # legacy torch.save records a module's class with its source: never run it
        if pid[0] != "storage" or len(pid) not in (5, 6) or not isinstance(pid[1], _StorageType):
            raise _Refused(f"unexpected persistent id {pid!r}")
        storage = self._storage_reader(str(pid[2]), pid[1].dtype, int(pid[4]))
        view = pid[5] if len(pid) == 6 else None
        if view is not None:  # legacy storage views: (view key, element offset, size)
            storage = storage[int(view[1]) : int(view[1]) + int(view[2])]
        return storage


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _flat_tensor(buffer: bytearray, dtype: torch.dtype) -> torch.Tensor:
    return torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)


def _read_torch_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise MaferError(f"{path}: zip file without a torch data.pkl record; {_EXPECTED}")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder") != b"little":
            raise MaferError(f"{path}: big-endian torch files are not supported")
        storages: dict[str, torch.Tensor] = {}

        def read_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            if key not in storages:
                record = archive.getinfo(f"{prefix}data/{key}")
                buffer = bytearray(record.file_size)
                with archive.open(record) as fh:
                    fh.readinto(buffer)
                if len(buffer) < numel * _element_size(dtype):
                    raise _Refused(f"storage record data/{key} is shorter than its {numel} elements")
                storages[key] = _flat_tensor(buffer, dtype)
            return storages[key]

        with archive.open(pickles[0]) as fh:
            return _RestrictedUnpickler(io.BytesIO(fh.read()), read_storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")


def _read_torch_legacy(path: Path) -> Any:
    with open(path, "rb") as f:
        header = [_RestrictedUnpickler(f).load() for _ in range(3)]  # magic, protocol, sys info
        if header[0] != _LEGACY_MAGIC or header[1] != 1001 or not isinstance(header[2], dict):
            raise MaferError(f"{path}: unsupported legacy torch file header; {_EXPECTED}")
        if not header[2].get("little_endian", True):
            raise MaferError(f"{path}: big-endian torch files are not supported")
        buffers: dict[str, tuple[bytearray, torch.Tensor]] = {}

        def allocate_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            # The data follows the pickle: hand out views of a buffer that is filled below.
            if key not in buffers:
                buffer = bytearray(numel * _element_size(dtype))
                buffers[key] = (buffer, _flat_tensor(buffer, dtype))
            return buffers[key][1]

        result = _RestrictedUnpickler(f, allocate_storage).load()
        keys = _RestrictedUnpickler(f).load()
        for key in keys:
            buffer, flat = buffers[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != flat.numel() or f.readinto(buffer) != len(buffer):
                raise MaferError(f"{path}: storage {key} is truncated or has the wrong size")
        return result


def _is_legacy_torch(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_LEGACY_PREFIX)) == _LEGACY_PREFIX


def _load_torch_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # objects outside torch's allow-list (e.g. a whole pickled module): read them inertly
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for damaged files
        raise MaferError(f"{path}: damaged or unreadable torch file ({exc}); {_EXPECTED}") from None
    return (_read_torch_zip if zipfile.is_zipfile(path) else _read_torch_legacy)(path)


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f).load()


def _is_safetensors(path: Path) -> bool:
    """Named ``.safetensors``, or starting as one: the 8-byte little-endian length of a JSON header."""
    if path.suffix.lower() == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the header's ``__metadata__`` of a safetensors file, read by the safetensors library."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise MaferError(f"{path}: damaged safetensors file ({exc}); {_EXPECTED}") from None


def _read_object(path: Path) -> Any:
    """Unpickle ``path`` safely, whatever the container (torch zip, legacy torch, pickle)."""
    torch_file = zipfile.is_zipfile(path) or _is_legacy_torch(path)
    try:
        return _load_torch_file(path) if torch_file else _load_pickle(path)
    except MaferError:
        raise
    except _Refused as exc:
        raise MaferError(f"{path}: refused to load: {exc} (it could run code)") from None
    except Exception as exc:  # any unpickling failure of a file that is not what we expect
        raise MaferError(f"{path}: cannot read it as a weight file ({type(exc).__name__}: {exc}); {_EXPECTED}") from None


# ---------------------------------------------------------------------------------------
# Interpreting what was read
# ---------------------------------------------------------------------------------------
def _plain_value(value: Any) -> Any:
    """Tensor/numpy scalars in metadata -> Python numbers."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)) and np.size(value) == 1:
        return value.item()
    return value


def _as_tensor(path: Path, key: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and (value.dtype.kind in "fiub"):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise MaferError(f"{path}: entry '{key}' is a {type(value).__name__}, expected a numeric array")


def _module_tensors(module: _Inert, prefix: str = "", seen: set[int] | None = None) -> dict[str, Any]:
    """``state_dict()`` of an inert pickled ``nn.Module`` (its ``_parameters``/``_buffers``/``_modules``)."""
    seen = set() if seen is None else seen
    state = module._state[0] if isinstance(module._state, tuple) else module._state
    if id(module) in seen or not isinstance(state, dict):
        return {}
    seen.add(id(module))
    skip = state.get("_non_persistent_buffers_set") or set()
    tensors = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is not None and name not in skip:
                tensors[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, _Inert):
            tensors.update(_module_tensors(child, f"{prefix}{name}.", seen))
    return tensors


def _naming(keys: list[str]) -> str | None:
    if any(k.startswith("conv1_7x7_s2") for k in keys):
        return "mmdnn"
    if "fc.weight" in keys or any(".conv4." in k for k in keys):
        return "vggface2"
    if "classifier.weight" in keys or any(".se.down." in k for k in keys):
        return "internal"
    return None


def _anchored(keys: list[str]) -> bool:
    """The names are one of the three namings from the root: the first convolution is there unprefixed."""
    naming = _naming(keys)
    return naming is not None and _TO_FILE_NAME[naming]("conv1.weight") in keys


# nn.DataParallel / DistributedDataParallel save every key under "module.", a torch.compile'd
# model under "_orig_mod."; a compiled DDP model (or the reverse) stacks both
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip_wrapper_prefix(state: dict[str, Any]) -> dict[str, Any]:
    stripped = True
    while state and stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def _strip_common_prefix(path: Path, state: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``state`` with the prefix that all its names share before a known naming removed, and that prefix.

    Wrapper prefixes go first (`_strip_wrapper_prefix`); then the shortest shared dotted prefix
    after which the names are anchored (`_anchored`). Names under several prefixes, one of which
    holds the network, are refused with a message naming the prefixes.
    """
    state = _strip_wrapper_prefix(state)
    keys = list(state)
    if not keys or _anchored(keys):
        return state, ""
    shared = keys[0].split(".")[:-1]
    for key in keys[1:]:
        parts = key.split(".")[:-1]
        n = 0
        while n < min(len(shared), len(parts)) and shared[n] == parts[n]:
            n += 1
        shared = shared[:n]
    for n in range(1, len(shared) + 1):
        prefix = ".".join(shared[:n]) + "."
        stripped = _strip_wrapper_prefix({k[len(prefix):]: v for k, v in state.items()})
        if _anchored(list(stripped)):
            return stripped, prefix
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.split(".")[0] + "." if "." in key else key, []).append(key)
    holding = [p for p, names in groups.items()
               if p.endswith(".") and _anchored(list(_strip_wrapper_prefix({k[len(p):]: None for k in names})))]
    if holding:
        others = ", ".join(f"'{p}' ({len(groups[p])})" for p in groups if p not in holding)
        raise MaferError(
            f"{path}: the network's parameters are under the prefix '{holding[0]}' ({len(groups[holding[0]])} names), "
            f"but other entries are not: {others}; save that part alone (e.g. torch.save(module.model.state_dict()))")
    return state, ""


def _interpret(path: Path, obj: Any, fmt_hint: str | None = None) -> WeightFile:
    meta: dict[str, Any] = {}
    if fmt_hint == "safetensors":
        fmt, (state, header) = "safetensors", obj
        meta.update({"safetensors_metadata": header} if header else {})
    elif isinstance(obj, _Inert):
        fmt = "mmdnn-module" if obj._pickled_name.endswith(".KitModel") else "pickled-module"
        state = _module_tensors(obj)
        meta["module_class"] = obj._pickled_name
    elif isinstance(obj, dict) and "model_state_dict" in obj:
        state = obj["model_state_dict"]
        if obj.get("format") == CHECKPOINT_FORMAT:
            fmt = "mafer"
            obj = upgrade_own_checkpoint(obj)
            meta.update({k: obj.get(k) for k in _OWN_METADATA_KEYS})
        else:
            fmt = AUTHORS_FORMAT
        meta.update({k: _plain_value(obj[k]) for k in _METADATA_KEYS if k in obj})
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        # PyTorch Lightning, and many other trainers, keep the weights under "state_dict"
        state = obj["state_dict"]
        fmt = "lightning" if any("lightning_version" in str(k) for k in obj) else "state-dict"
        meta.update({k: _plain_value(obj[k]) for k in _METADATA_KEYS if k in obj})
    elif isinstance(obj, dict) and obj and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values()):
        fmt, state = "state-dict", obj
    else:
        raise MaferError(f"{path}: unknown content ({type(obj).__name__}); {_EXPECTED}")
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise MaferError(f"{path}: 'model_state_dict' is not a dict of named tensors; {_EXPECTED}")
    state, prefix = _strip_common_prefix(path, state)
    if prefix:
        meta["stripped_prefix"] = prefix
        warnings.warn(f"{path}: read the parameters under the prefix '{prefix}' as the network's "
                      f"('{prefix}conv1.weight' as 'conv1.weight')", MaferWarning, stacklevel=2)
    naming = _naming(list(state))
    if naming is None:
        raise MaferError(f"{path}: parameter names {list(state)[:3]}... are not SE-ResNet names; {_EXPECTED}")
    if fmt == "state-dict" and naming == "vggface2" and not any(isinstance(v, torch.Tensor) for v in state.values()):
        fmt = "vggface2-pickle"
    tensors = {k: _as_tensor(path, k, v) for k, v in state.items()}
    return WeightFile(path=path, format=fmt, naming=naming, state_dict=tensors, meta=meta)


def read_weight_file(path: str | Path) -> WeightFile:
    """Detect the format of ``path`` and read its tensors safely (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MaferError(f"{path}: weight file not found")
    if path.stat().st_size == 0:
        raise MaferError(f"{path}: the file is empty; {_EXPECTED}")
    if _is_safetensors(path):
        return _interpret(path, _read_safetensors(path), "safetensors")
    return _interpret(path, _read_object(path))


# ---------------------------------------------------------------------------------------
# Copying into a model
# ---------------------------------------------------------------------------------------
def _fit_shape(weights: WeightFile, file_key: str, tensor: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if tensor.shape == target.shape:
        return tensor
    # Caffe conversions store some linear layers as 1x1 convs and vice versa.
    if tensor.numel() == target.numel() and [d for d in tensor.shape if d != 1] == [d for d in target.shape if d != 1]:
        return tensor.reshape(target.shape)
    hint = ""
    if file_key == weights.file_key("classifier.weight"):
        hint = (
            f" (the file has {tensor.shape[0]} classes, the model {target.shape[0]}: "
            "use head=False to keep a new classifier)"
        )
    raise MaferError(
        f"{weights.path}: shape mismatch for '{file_key}': file has {list(tensor.shape)}, "
        f"model expects {list(target.shape)}{hint}"
    )


def load_weights(model: nn.Module, weights: WeightFile, head: bool = True) -> dict[str, Any]:
    """Copy ``weights`` into ``model``; all names and shapes are checked before anything is copied."""
    own = unwrap_model(model).state_dict()
    new: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, target in own.items():
        file_key = weights.file_key(key)
        if key.startswith("classifier.") and not head:
            used.add(file_key)
            continue
        if file_key not in weights.state_dict:
            if key.endswith("num_batches_tracked"):  # absent from Caffe conversions; unused in eval
                continue
            hint = " (use head=False to keep the model's classifier)" if key.startswith("classifier.") else ""
            raise MaferError(
                f"{weights.path}: missing key '{file_key}' (for the model's '{key}') in a {weights.format} file{hint}"
            )
        new[key] = _fit_shape(weights, file_key, weights.state_dict[file_key], target)
        used.add(file_key)
    unexpected = [k for k in weights.state_dict if k not in used]
    if unexpected:
        raise MaferError(
            f"{weights.path}: unexpected key '{unexpected[0]}' ({len(unexpected)} in all) in a "
            f"{weights.format} file: it does not hold this architecture"
        )
    with torch.no_grad():
        for key, tensor in new.items():
            own[key].copy_(tensor)
    return {**weights.meta, "format": weights.format, "path": str(weights.path), "head_loaded": head,
            "num_classes_in_file": weights.num_classes}


def load_pretrained(model: nn.Module, path: str | Path, head: bool = True) -> dict[str, Any]:
    """Load any supported weight file into ``model`` and return the metadata found in it.

    ``head=False`` keeps the model's freshly initialised classifier (e.g. 8631 VGGFace2
    identities -> 7 expressions). Unknown formats, missing or unexpected keys and shape
    mismatches raise :class:`MaferError` naming the file and the key. The returned dict
    holds ``format``, ``path``, ``head_loaded``, ``num_classes_in_file`` and whatever the
    file records (``epoch``, ``best_acc``, ``train_iter``; for this project's checkpoints
    also ``arch``, ``class_names``, ``mean_bgr``, ``config``, ``metrics``, ``extra``).
    """
    return load_weights(model, read_weight_file(path), head=head)
