"""The home page (dashboard) and the health check."""
