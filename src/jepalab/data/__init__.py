"""Data: built-in image sets, real-file loaders, batched views."""
from jepalab.data.images import ImageData, Split, load_images

__all__ = ["ImageData", "Split", "load_images"]
