"""Models behind one interface, ``D(x_σ, σ) -> x̂0``: the denoisers, the linear references, EDM's sampler, UNet
blocks."""
