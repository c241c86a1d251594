"""engines/rvc/infer"""
