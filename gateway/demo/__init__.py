"""Demo mode: simulated upstreams so a new user sees routing, streaming and costs with no keys."""
