"""Machine learning the harness shares: datasets, networks, the trainer, checkpoints, presets,
augmentation and model weights. Knows nothing of schemes, stores or runs."""
