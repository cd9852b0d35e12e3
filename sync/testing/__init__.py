"""Stand-ins for the outside systems the service talks to, for tests and the demo.

Nothing in the service imports this package; it sits above every other layer (see .importlinter).
"""
