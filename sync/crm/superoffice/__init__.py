"""SuperOffice as a ``sync.crm.base.CrmConnector``: its REST and Agents API over httpx."""
