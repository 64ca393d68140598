"""kogata (小型): make language models small and cheap to run, and prove they still do the job."""

__version__ = "0.1.0"
