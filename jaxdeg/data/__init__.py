"""Grain sources and pipelines, image IO, bundled sample photos."""
