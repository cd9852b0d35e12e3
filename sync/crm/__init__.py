"""CRM connectors: follow-ups read from the CRM itself, calendar edits written back to it.

``base`` is the contract a CRM implements; ``superoffice`` implements it for SuperOffice;
``reconcile`` runs one pass between a CRM and the follow-up store (docs/how-to/superoffice.md).
"""
