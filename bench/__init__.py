"""Benchmarks: HumanAes's scoring path next to the released HumanAesExpert recipe, in the same run.

Run `python -m bench` from the repository root; see `bench/run.py` for the options.
"""
