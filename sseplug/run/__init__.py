"""The application: ``sseplug run`` and the other commands (config -> runner -> cli, metrics, demo).

Built on the library (parser -> connection -> client); nothing in the library imports this package.
"""
