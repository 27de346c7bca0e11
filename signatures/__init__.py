"""One module per signature: its DSPy Signature class, input and output models, instructions, search space,
reward and budget, exported as `SIGNATURE`. `overnight.registry` discovers them."""
