"""The HTTP API a CRM integration drives: the original routes, ``/v1``, status and controls."""
