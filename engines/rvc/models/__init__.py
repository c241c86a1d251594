"""engines/rvc/models"""
