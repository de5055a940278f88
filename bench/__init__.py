"""Benchmarks: `python -m bench [NAME ...]` runs them and writes bench/results.json.

Each benchmark module `bench/<name>.py` defines `run() -> list[Entry]`, timing our code against a
peer measured in the same run; ratios (peer time / our time) are comparable across machines,
absolute seconds are not.
"""
