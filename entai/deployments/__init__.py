"""Ray Serve applications: thin translation layers between HTTP and the services."""
