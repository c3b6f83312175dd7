"""Offline pretrained models built from weights that registry packages ship."""
