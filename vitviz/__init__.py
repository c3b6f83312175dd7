"""vitviz: feature visualisation for Vision Transformers (and CNNs) that works."""
__version__ = "0.1.0"
