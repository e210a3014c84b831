"""Training: the config (config.py), the loop and its bookkeeping (trainer.py), the
progress bar and data-parallel ranks (distributed.py)."""
