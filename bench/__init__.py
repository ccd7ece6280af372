"""moorage benchmarks: `.venv/bin/python -m bench.run` from the repository root."""
