"""Model definitions: gOctConv, CSNet, the CSF head, CSF+Res2Net, and the registry."""
from .csnet import CSNet, CSNetConfig, csnet_config
from .registry import create_model, list_models, preset_config, register_family, register_model

__all__ = ["CSNet", "CSNetConfig", "csnet_config", "create_model", "list_models", "preset_config", "register_family", "register_model"]
