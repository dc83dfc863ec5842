"""The ``ipbench`` command line."""
