"""dataset engine."""
