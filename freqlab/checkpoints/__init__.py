"""Checkpoints: save, load and discover them (freqlab folders, diffusers folders, EDM pickles, the Hub cache), and
their content fingerprints."""
