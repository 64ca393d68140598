"""Drift and quality monitoring over served traffic (the audit log): ``window`` reads the exchanges, ``signals``
holds one test per signal, ``monitor`` runs them and says what they mean. ``kogata monitor check | report``."""

from kogata.ops.drift.monitor import DriftReport, check, reference_from_files, rolling
from kogata.ops.drift.signals import Signal, Thresholds
from kogata.ops.drift.window import Exchange, from_texts, served

__all__ = ["DriftReport", "Exchange", "Signal", "Thresholds", "check", "from_texts", "reference_from_files", "rolling", "served"]
