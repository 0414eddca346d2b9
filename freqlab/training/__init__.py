"""What the two trainings share: the monitor of a training run and weight averaging (EMA, lookahead)."""
