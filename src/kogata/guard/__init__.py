"""Guardrails: a YAML policy of checks (pii, terms, injection, grounding, format, confidence) on model input and
output, each with an action (allow, flag, redact, hold, block); verdicts carry every hit's span.

``Policy.load(path).check_output(text, GuardContext(...))`` for whole texts, ``policy.stream(ctx)`` for token
streams. The server calls these in its request path; ``kogata guard check`` runs them from the command line.
"""

from kogata.guard.checks import CHECKS, Check, CheckOptions, register_check
from kogata.guard.policy import Policy, PolicyCheck, redact
from kogata.guard.stream import StreamGuard
from kogata.guard.verdict import ACTIONS, CheckResult, GuardContext, Hit, Verdict

__all__ = ["ACTIONS", "CHECKS", "Check", "CheckOptions", "CheckResult", "GuardContext", "Hit", "Policy", "PolicyCheck",
           "StreamGuard", "Verdict", "redact", "register_check"]
