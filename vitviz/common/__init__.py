"""What every layer may use: the user folder, stable hashes, constant tensors, the CPU slot."""
