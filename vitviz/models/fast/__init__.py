"""Fast paths of the forward pass: compiled blocks, batch-first attention, the patch embedding as one product."""
