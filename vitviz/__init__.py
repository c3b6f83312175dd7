"""vitviz: feature visualisation for Vision Transformers (and CNNs) that works."""
__version__ = "0.1.0"

from vitviz.api import visualise  # noqa: E402
from vitviz.exported import load_exported, save_exported  # noqa: E402
from vitviz.models import load_model, wrap  # noqa: E402

__all__ = ["__version__", "load_exported", "load_model", "save_exported", "visualise", "wrap"]
