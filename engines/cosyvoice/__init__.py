"""cosyvoice engine."""
