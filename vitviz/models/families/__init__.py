"""ViTs from the libraries people study them in (timm, Hugging Face transformers, OpenCLIP),
each read from the model itself: input size, normalisation, prefix tokens, which layers play
which part and how its attention is computed by hand. Each module imports its library only
when used; the public face is `vitviz.from_timm`, `from_huggingface`, `from_open_clip` and the
names `timm:...`, `hf:...`, `open_clip:...` (`models/registry.py`)."""
