"""Entry points: thin command-line wrappers over the magajax library.

Importing this package (every `python -m experiments.X` does, before JAX creates its CPU client)
sets glibc's malloc to reuse freed memory: see `magajax.host_memory`.
"""

from magajax.host_memory import reuse_freed_memory

reuse_freed_memory()
