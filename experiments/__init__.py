"""Entry points: thin command-line wrappers over the magajax library (`python -m experiments.X --help`).

Each entry point's `main()` sets up the process (malloc tuning, see `magajax.host_memory`) before
JAX creates its backend; importing this package changes nothing.
"""
