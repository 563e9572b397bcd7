"""Benchmarks: ``make bench`` (= ``python -m benchmarks``) prints tables and writes JSON/CSV."""
