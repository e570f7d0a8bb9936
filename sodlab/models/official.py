"""The authors' formats in and out: key maps and safe reading of their files.

Nothing here executes code from a file: ``.pth.tar`` goes through ``torch.load(...,
weights_only=True)`` and the ``.bin`` layer configuration (a pickle of numpy arrays) through
an unpickler that only reconstructs numpy arrays.
"""
from __future__ import annotations

import io
import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, UnsafePickleError
from .csnet import CSNet, CSNetConfig

PathLike = str | Path

# The only globals a layer_config pickle may name: numpy array reconstruction.
_NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to load: the pickle asks for {module}.{name}, "
            "but a layer configuration may only contain numpy arrays and numbers"
        )


def read_layer_config(source: PathLike | Sequence[Any]) -> list:
    """The authors' layer_config from a list, their ``.bin`` pickle or a JSON file of the list."""
    if not isinstance(source, (str, Path)):
        return list(source)
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read layer configuration ({exc.strerror or exc})") from exc
    if path.suffix.lower() == ".json" or raw[:1] in (b"[", b"{"):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
        return list(data["layer_config"] if isinstance(data, dict) else data)
    try:
        data = _NumpyOnlyUnpickler(io.BytesIO(raw), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # a damaged pickle fails in many ways; all mean the same to a user
        raise CheckpointError(f"{path}: not a readable layer configuration pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, list):
        raise CheckpointError(f"{path}: expected a list (the authors' layer_config), found {type(data).__name__}")
    return data


def _to_plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def csnet_config_from_official(layer_config: PathLike | Sequence[Any]) -> CSNetConfig:
    """Our `CSNetConfig` from the authors' layer_config (list, ``.bin`` or JSON path)."""
    return CSNetConfig.from_layer_config(_to_plain(read_layer_config(layer_config)))


# Official key -> ours. Applied in order to every key.
_KEY_RULES: list[tuple[str, str]] = [
    (r"^stage0\.0\.", "stem."),
    (r"\.conv1x1\.", ".conv."),
    (r"\.conv3x3_1\.", ".dw1."),
    (r"\.conv3x3_2\.", ".dw2."),
    (r"^oct_fuse\.fuse1x1\.", "csf.merge."),
    (r"^oct_fuse\.fuse\.", "csf.fuse."),
    (r"^oct_fuse\.ms\.convs\.(\d+)\.msconv\.(\d+)\.", r"csf.ms.\1.convs.\2."),
    (r"^oct_fuse\.ms\.convs\.(\d+)\.bn\.", r"csf.ms.\1.norm."),
    (r"^oct_fuse\.ms\.convs\.(\d+)\.prelu\.", r"csf.ms.\1.act."),
    (r"\.bns\.", ".norms."),
    (r"\.prelus\.", ".acts."),
    (r"^cls_layer\.", "classifier."),
]
_REVERSE_RULES: list[tuple[str, str]] = [
    (r"^stem\.", "stage0.0."),
    (r"^(stage\d\.\d+)\.conv\.", r"\1.conv1x1."),
    (r"\.dw1\.", ".conv3x3_1."),
    (r"\.dw2\.", ".conv3x3_2."),
    (r"^csf\.merge\.", "oct_fuse.fuse1x1."),
    (r"^csf\.fuse\.", "oct_fuse.fuse."),
    (r"^csf\.ms\.(\d+)\.convs\.(\d+)\.", r"oct_fuse.ms.convs.\1.msconv.\2."),
    (r"^csf\.ms\.(\d+)\.norm\.", r"oct_fuse.ms.convs.\1.bn."),
    (r"^csf\.ms\.(\d+)\.act\.", r"oct_fuse.ms.convs.\1.prelu."),
    (r"\.norms\.", ".bns."),
    (r"\.acts\.", ".prelus."),
    (r"^classifier\.", "cls_layer."),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pat, rep in rules:
        key = re.sub(pat, rep, key)
    return key


def official_key_to_ours(key: str) -> str:
    return _rename(key[7:] if key.startswith("module.") else key, _KEY_RULES)


def our_key_to_official(key: str) -> str:
    return _rename(key, _REVERSE_RULES)


def _as_tensor(v: Any, key: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    try:
        return torch.as_tensor(np.asarray(v))
    except Exception as exc:
        raise CheckpointError(f"official weight {key!r} is not an array ({type(v).__name__})") from exc


def load_mapped_state(
    model: nn.Module,
    official: Mapping[str, Any],
    key_map,
    what: str,
    ignore: Sequence[str] = (),
) -> nn.Module:
    """Copy ``official`` weights into ``model`` through ``key_map`` (official key -> ours),
    raising a `CheckpointError` that names the layer when anything does not fit."""
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for k, v in official.items():
        if any(re.search(p, k) for p in ignore):
            continue
        nk = key_map(k)
        if nk not in ours:
            unexpected.append(k)
            continue
        t = _as_tensor(v, k)
        if tuple(t.shape) != tuple(ours[nk].shape):
            raise CheckpointError(
                f"{what}: layer {k!r} (ours: {nk}) has shape {tuple(t.shape)} in the checkpoint but "
                f"{tuple(ours[nk].shape)} in the model built from the configuration: "
                "the weights and the layer configuration do not belong together"
            )
        mapped[nk] = t.to(ours[nk].dtype)
    missing = [k for k in ours if k not in mapped]
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing for {len(missing)} layers, first {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown keys, first {unexpected[:3]}")
        raise CheckpointError(f"{what}: weights do not fit the configuration: " + "; ".join(parts))
    model.load_state_dict(mapped, strict=True)
    return model


def csnet_from_official(state_dict: Mapping[str, Any], layer_config: PathLike | Sequence[Any]) -> CSNet:
    """A `CSNet` holding the authors' weights.

    Args:
        state_dict: their parameter names (``stage0.0.conv1x1.conv.weight``, ...; a
            ``module.`` prefix from DataParallel is accepted) to tensors or numpy arrays.
        layer_config: their list, a path to their ``.bin`` or to a JSON of the list.
    """
    config = csnet_config_from_official(layer_config)
    model = CSNet(config)
    where = layer_config if isinstance(layer_config, (str, Path)) else "layer_config"
    return load_mapped_state(model, state_dict, official_key_to_ours, f"CSNet from {where}").eval()


def read_official_checkpoint(path: PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an authors' ``.pth.tar`` (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint, or one that holds code ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict' of tensors (the authors' format)")
    return sd


def load_official_csnet(
    checkpoint_path: PathLike,
    layer_config_path: Optional[PathLike] = None,
    preset: Optional[str] = None,
) -> CSNet:
    """The authors' released CSNet from their ``.pth.tar`` and ``.bin`` (or JSON) files.

    ``layer_config_path`` may be omitted when ``preset`` names a registry entry whose
    configuration is the released one (``csnet-L-x1``, ``csnet-L-x2``).
    """
    sd = read_official_checkpoint(checkpoint_path)
    if layer_config_path is not None:
        lc: Any = layer_config_path
    elif preset is not None:
        from .registry import preset_config

        lc = preset_config(preset).to_layer_config()
    else:
        raise CheckpointError(f"{checkpoint_path}: give the layer configuration (.bin or JSON) or a preset name")
    try:
        return csnet_from_official(sd, lc)
    except CheckpointError as exc:
        raise CheckpointError(f"{checkpoint_path}: {exc}") from exc


def csnet_to_official(model: CSNet) -> tuple[dict[str, torch.Tensor], list]:
    """Our CSNet in the authors' format: (state_dict, layer_config list)."""
    sd = {our_key_to_official(k): v.detach().clone() for k, v in model.state_dict().items()}
    return sd, model.config.to_layer_config()


# --- CSF+Res2Net -------------------------------------------------------------------------
# Their CSFNet key -> ours (`CSFRes2Net`). Applied in order; the backbone keeps its names.
_CSF_RES2NET_RULES: list[tuple[str, str]] = [
    (r"^module\.", ""),
    (r"^base\.", "backbone."),
    (r"^fuse1x1\.", "head.merge."),
    (r"^fuse\.", "head.fuse."),
    (r"^ms\.convs\.(\d+)\.msconv\.(\d+)\.", r"head.ms.\1.convs.\2."),
    (r"^ms\.convs\.(\d+)\.bn\.", r"head.ms.\1.norm."),
    (r"^ms\.convs\.(\d+)\.prelu\.", r"head.ms.\1.act."),
    (r"^(head\.(?:fuse|merge)\.conv)\.weights$", r"\1.weight"),
    (r"^(head\.(?:fuse|merge))\.bns\.", r"\1.norms."),
    (r"^(head\.(?:fuse|merge))\.prelus\.", r"\1.acts."),
    (r"^cls_layer\.", "classifier."),
]
# Their released checkpoint still carries the ImageNet classifier of the backbone.
_CSF_RES2NET_IGNORE = (r"^(module\.)?(base\.)?fc\.(weight|bias)$",)


def csf_res2net_key_to_ours(key: str) -> str:
    return _rename(key, _CSF_RES2NET_RULES)


def csf_res2net_from_official(state_dict: Mapping[str, Any]) -> nn.Module:
    """A `CSFRes2Net` (eval mode) holding the weights of the authors' CSFNet
    (``base.layer1.0.convs.0.weight``, ``fuse.conv.weights``, ``ms.convs.0.msconv.0.weight``,
    ``cls_layer.bias``, ...; stray ``fc`` keys are ignored, a ``module.`` prefix accepted)."""
    from .csf_res2net import CSFRes2Net

    model = CSFRes2Net()
    return load_mapped_state(model, state_dict, csf_res2net_key_to_ours, "CSF+Res2Net", ignore=_CSF_RES2NET_IGNORE).eval()


def load_official_csf_res2net(checkpoint_path: PathLike) -> nn.Module:
    """The authors' CSF+Res2Net from their checkpoint file (read with ``weights_only=True``)."""
    sd = read_official_checkpoint(checkpoint_path)
    try:
        return csf_res2net_from_official(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{checkpoint_path}: {exc}") from exc
