"""The measurement core: analyses and accumulators of spectra, the variable registry, the references, the σ grid,
data spectra."""
