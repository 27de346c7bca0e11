"""LM backends: `build_backend(settings)` gives a DSPy LM and its lm_id (remote, bundled local, or simulator);
`invoke()` runs one program call and measures it. Must not import the store or the API."""
