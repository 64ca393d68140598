"""Compression and adaptation methods: each a config dataclass + ``apply()``, registered by name."""
