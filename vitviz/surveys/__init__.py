"""Many runs at once: a layer's atlas, its static site, and the quality report across presets."""
