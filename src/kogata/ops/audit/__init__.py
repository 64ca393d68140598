"""The tamper-evident audit log: a hash chain in the store database plus Ed25519-signed checkpoints.

``chain`` says how a row is hashed and checks a stream of rows; ``checkpoint`` signs and checks the
checkpoint file; ``log`` is the :class:`AuditLog` a server appends to; ``export`` writes rows as JSONL/CSV.
"""

from kogata.ops.audit.log import AuditEntry, AuditLog, AuditRecord, VerifyReport

__all__ = ["AuditEntry", "AuditLog", "AuditRecord", "VerifyReport"]
