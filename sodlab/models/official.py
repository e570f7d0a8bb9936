"""CSNet in the authors' formats, in and out: their key names and their layer configuration.

Nothing here executes code from a file: ``.pth.tar`` goes through ``torch.load(...,
weights_only=True)`` and the ``.bin`` layer configuration (a pickle of numpy arrays) through
an unpickler that only reconstructs numpy arrays (`sodlab.models._weights`). CSF+Res2Net's
key rules live with that model (`sodlab.models.csf_res2net`); they are re-exported here,
the path they had before.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import CheckpointError, UnsafePickleError
from ._weights import load_mapped_state, read_foreign_state_dict, rename, strip_module_prefix, unpickle_numpy_only
from .csf_res2net import csf_res2net_from_official, csf_res2net_key_to_ours, load_official_csf_res2net
from .csnet import CSNet, CSNetConfig, preset_config

__all__ = [
    "csf_res2net_from_official", "csf_res2net_key_to_ours", "csnet_config_from_official", "csnet_from_official",
    "csnet_to_official", "load_mapped_state", "load_official_csf_res2net", "load_official_csnet",
    "official_key_to_ours", "our_key_to_official", "read_layer_config", "read_official_checkpoint",
]

PathLike = str | Path
# The authors' state_dicts are plain dicts of tensors; the generic reader is the one for them.
read_official_checkpoint = read_foreign_state_dict


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
        data = unpickle_numpy_only(raw, str(path), "a layer configuration")
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


def official_key_to_ours(key: str) -> str:
    return rename(strip_module_prefix(key), _KEY_RULES)


def our_key_to_official(key: str) -> str:
    return rename(key, _REVERSE_RULES)


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
