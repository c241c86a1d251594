"""engines/rvc/pitch"""
