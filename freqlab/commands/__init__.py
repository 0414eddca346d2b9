"""One module per ``freqlab`` sub-command; each defines ``register(subparsers)``."""
