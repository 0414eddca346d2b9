"""Figures: one module per figure family, a registry that draws every figure of a results directory."""
