"""engines/rvc/train"""
