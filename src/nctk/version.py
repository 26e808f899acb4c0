"""nctk's version, in a module of its own so that any layer can read it without importing
the package root (which registers the demo's spec kinds)."""

__version__ = "0.1.0"
