"""The measurement's fixed choices, each defined once: the window of every spectrum, the thresholds of the
cutoffs and of a matched band. Imports nothing heavy (the command line builds its help from it); the bands
themselves are :data:`freqlab.spectral.DEFAULT_BANDS` (pure maths, below the measurement core)."""

__all__ = ["WINDOW", "CUTOFF_DB", "COHERENCE_THRESHOLD", "MATCH_DB", "DEFAULT_BAND_EDGES"]

#: The window of every radial spectrum freqlab reports (each image's mean removed first).
WINDOW = "hann"
#: ``f_c`` is the lowest non-DC frequency where ``|relative_power_db|`` exceeds this (dB).
CUTOFF_DB = 3.0
#: ``coherence_cutoff`` is the lowest non-DC frequency where the coherence with the clean image falls below this.
COHERENCE_THRESHOLD = 0.5
#: A band is *matched* (produced, reached) when its log-spectral distance to the data is at most this (dB).
MATCH_DB = 3.0
#: The edges of the default low / mid / high bands (cycles/pixel), for help texts; tested equal to
#: ``freqlab.spectral.DEFAULT_BANDS``, which the maths uses.
DEFAULT_BAND_EDGES = (0.0, 0.125, 0.25, 0.5)
