"""Device-side toolkit (never imports torch)."""
