"""Errors raised by sodlab. Each names the file, key or layer it is about."""
from __future__ import annotations


class SodlabError(Exception):
    """Base class for every error sodlab raises on purpose."""


class CheckpointError(SodlabError):
    """A checkpoint or configuration file cannot be read or does not fit the model."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for something other than numpy array reconstruction."""


class ConfigError(SodlabError, ValueError):
    """A channel configuration or recipe is malformed."""


class DataError(SodlabError):
    """A dataset folder or an image file is unusable."""


class ImageReadError(DataError):
    """An image file cannot be decoded."""


class NonFiniteError(SodlabError):
    """A model produced (or holds) NaN or inf where numbers were expected."""
