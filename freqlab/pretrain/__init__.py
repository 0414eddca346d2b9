"""Pre-training: EDM's denoising loss, the run's settings and presets, the training loop."""
