"""Evaluation: tasks and suites (quality), metrics with confidence intervals.

Entry points: :func:`kogata.eval.suite.load_suite`, :func:`kogata.eval.quality.evaluate_quality`,
:data:`kogata.eval.tasks.TASK_TYPES`.
"""
