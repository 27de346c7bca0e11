"""Pure logic of overnight: models, hashing, decisions. No I/O, no clock, no SQL, no HTTP, no DSPy."""
