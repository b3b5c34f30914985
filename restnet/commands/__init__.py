"""CLI verbs, one module per group of verbs."""
