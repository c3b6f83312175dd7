"""Making a picture: objectives, image parameterisations, augmentations, presets, the loop and its speed levers, and the priors."""
