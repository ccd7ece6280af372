"""moorage: a small, hardened REST daemon for the Docker containers and images of one host."""

__version__ = "0.1.0"
