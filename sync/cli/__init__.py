"""The ``followup-sync`` command line: one module per command group."""
