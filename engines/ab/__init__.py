"""engines/ab"""
