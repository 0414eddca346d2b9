"""Is this set of images distinguishable from that one, and in which band? A two-sample comparison, band by band,
calibrated against the data's own spread, with controls that must fail and one that must pass."""
