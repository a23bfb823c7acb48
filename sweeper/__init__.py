"""sweeper: Hydra-configured benchmark sweeps of transformer models (PyTorch and TensorFlow)."""

__version__ = "0.2.0"
