"""engines/rvc/content"""
