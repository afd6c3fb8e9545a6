"""Symbolic derivations (sympy) of what asyncsim measures, with fast numeric versions.

This package never imports :mod:`asyncsim`: predictions and measurements meet in tests, notebooks and
figures.
"""
