"""`python -m arena_server --host 127.0.0.1 --port 8000`."""

from .server import main

main()
