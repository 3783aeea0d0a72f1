"""The result folder: what the backend hands to Blender and to users (docs/result-format.md)."""

from .format import DepthPreview, ResultFrames, load_result, save_result

__all__ = ["DepthPreview", "ResultFrames", "load_result", "save_result"]
