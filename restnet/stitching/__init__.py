"""Stitching layers and stitched models."""
from restnet.stitching.layers import FeatureSpec, StitchLayer, feature_spec
from restnet.stitching.model import DIRECTIONS, StitchedModel, StitchPoint

__all__ = ["DIRECTIONS", "FeatureSpec", "StitchLayer", "StitchPoint", "StitchedModel", "feature_spec"]
