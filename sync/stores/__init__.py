"""The calendar side behind one contract: CalDAV, its quirks, sign-in and discovery."""
