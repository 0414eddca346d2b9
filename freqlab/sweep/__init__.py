"""The sweep: one-step (and N-step) outputs across σ × checkpoints, measured against the data, as an xarray Dataset."""
