"""Benchmarks that print numbers (bench/README.md): run them from the repository root as
`python -m bench.<name>`; `./run bench` runs the peer comparison."""
