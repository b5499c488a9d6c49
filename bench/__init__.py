"""Benchmarks of the gateway; each is a module run with `python -m bench.<name>`.

Not a package the gateway imports: benchmarks start the gateway and its fake
upstreams as separate processes and talk to them over loopback HTTP.
"""
