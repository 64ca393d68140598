"""Operations: the tamper-evident audit log (``ops.audit``) and the human review queue (``ops.review``).

Both live in the store's database (tables in :mod:`kogata.ops.tables`, created by migration ``0003``).
Review items are computed from audit rows, never from a second logging path.
"""
