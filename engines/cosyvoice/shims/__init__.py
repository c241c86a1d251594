"""Modules our launcher puts on upstream CosyVoice's ``PYTHONPATH`` (never imported by the studio).

``torchaudio/`` is a small stand-in for the few torchaudio calls upstream
makes. It is used only where ``import torchaudio`` fails or torchaudio is
absent (checked in a subprocess by ``engines.cosyvoice.runtime``); a working
torchaudio is always used as it is.
"""
