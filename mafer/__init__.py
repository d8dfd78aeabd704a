"""MAFER companion: multi-resolution facial expression recognition, reproducibly."""

__version__ = "0.1.0"
