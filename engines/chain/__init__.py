"""Chains of operations across both engines (CosyVoice speech converted through an RVC voice).

This area sits on the layer of ``engines.ab``: it may use ``engines.rvc`` and
``engines.cosyvoice`` (and below), and nothing under it imports this.
"""
