"""HTTP routes: thin handlers that parse, delegate to the router, and shape the answer."""
