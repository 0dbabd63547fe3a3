"""Flax Linen modules only: no losses, no training logic."""
