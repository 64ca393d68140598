"""Thin route modules: each parses a request, calls the library, shapes the answer."""
