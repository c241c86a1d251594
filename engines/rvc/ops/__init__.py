"""engines/rvc/ops"""
