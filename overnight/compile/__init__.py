"""Compile: candidates from a signature's search space, evaluated cheaply (successive halving on train), the
finalists and the incumbent scored paired on holdout, content-addressed artifacts. Must not import the API."""
