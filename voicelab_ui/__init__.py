"""VoiceLab's Gradio layer: one module per tab plus shared widgets. No ML code here."""
