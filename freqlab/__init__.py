"""freqlab: the frequency-domain study of diffusion models as one-step generators."""

__version__ = "0.1.0"
