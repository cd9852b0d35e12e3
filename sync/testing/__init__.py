"""Test doubles shipped with the package (as python-caldav's ``caldav/testing.py``).

``dav_server``: an in-process CalDAV collection behind DavCalendar's ``Sender`` seam;
``followups``: realistic CRM follow-ups in any number; ``superoffice``: a stateful SuperOffice
CRM stand-in on 127.0.0.1, checked against SuperOffice's published API descriptions. Tests and
benchmarks import them from here; production code never does.
"""
