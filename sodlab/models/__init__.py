"""Model definitions: gOctConv, CSNet, the CSF head, CSF+Res2Net, and the registry.

Importing this package imports every model module, and each registers its own names and
family (`sodlab.models._registry`): adding a model means adding its module here.
"""
from . import classifier, csf_res2net, csnet, res2net_family  # noqa: F401  (registration on import)
from ._registry import create_model, list_models, model_descriptions, register_family, register_model
from .csnet import CSNet, CSNetConfig, csnet_config, preset_config
from .res2net import Res2Net, Res2NetConfig
from .res2net_family import Res2NetClassifier, Res2NetClassifierConfig, res2net_mini_config
from .transfer import TransferReport, transfer_backbone

__all__ = ["CSNet", "CSNetConfig", "Res2Net", "Res2NetClassifier", "Res2NetClassifierConfig", "Res2NetConfig",
           "TransferReport", "csnet_config", "create_model", "list_models", "model_descriptions", "preset_config",
           "register_family", "register_model", "res2net_mini_config", "transfer_backbone"]
