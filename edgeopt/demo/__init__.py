"""Built-in models and datasets that ship offline (no downloads at run time)."""
