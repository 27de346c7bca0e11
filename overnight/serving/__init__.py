"""Serving: predict (pick an arm, run the program, write the receipt), canaries, promote and rollback.

Must not import the API.
"""
