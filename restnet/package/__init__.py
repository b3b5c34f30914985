"""Per-device packages: the folder a firmware team ships (see docs/package-format.md)."""
