"""jaxdeg: learned image-degradation synthesis in JAX/Flax."""

__version__ = "0.1.0"
