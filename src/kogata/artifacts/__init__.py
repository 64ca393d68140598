"""Bringing models in: the built-in catalog, artifacts and their manifests, loading for torch."""
