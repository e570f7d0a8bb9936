"""Model definitions: gOctConv, CSNet, the CSF head, CSF+Res2Net, and the registry.

Importing this package imports every model module, and each registers its own names and
family (`sodlab.models._registry`): adding a model means adding its module here.
"""
from . import classifier, csf_res2net, csnet  # noqa: F401  (registration on import)
from ._registry import create_model, list_models, model_descriptions, register_family, register_model
from .csnet import CSNet, CSNetConfig, csnet_config, preset_config

__all__ = ["CSNet", "CSNetConfig", "csnet_config", "create_model", "list_models", "model_descriptions", "preset_config",
           "register_family", "register_model"]
