"""A stateful SuperOffice CRM stand-in: a real HTTP server that keeps to SuperOffice's documented
behaviour and published API descriptions. See docs/reference/superoffice-standin.md.
"""
