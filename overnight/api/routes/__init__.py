"""Thin routes: parse, call one store verb, return a pydantic model. No SQL, no gate logic."""
