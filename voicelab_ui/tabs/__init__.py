"""One module per tab; each has ``build(ctx)`` called inside its ``gr.Tab``."""
