"""Data curation: read company documents, normalise, scrub PII, filter, deduplicate, select and split.

The entry point is :func:`kogata.data.prepare.prepare` (``kogata data prepare`` on the command line);
``docs/data-curation.md`` explains each stage and the dataset folder it writes.
"""

from __future__ import annotations

from kogata.data.prepare import PrepareConfig, load_dataset, parse_split, prepare

__all__ = ["PrepareConfig", "load_dataset", "parse_split", "prepare"]
