"""Image-quality and grain metrics."""
