"""Entry points: thin command-line wrappers over the magajax library."""
