"""Code shared by several method families (training loop, HF folder helpers)."""
