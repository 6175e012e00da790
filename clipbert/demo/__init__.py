"""The embedded demo dataset: synthetic shape videos with colour/shape/count/motion questions."""

from clipbert.demo.generate import DemoPaths, ensure_demo_dataset

__all__ = ["DemoPaths", "ensure_demo_dataset"]
