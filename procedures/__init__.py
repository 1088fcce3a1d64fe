"""Operator procedures and the ``xbar`` command line."""
