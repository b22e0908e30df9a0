"""``python -m dev.es_server --port 9200 --major 8``."""

from dev.es_server.server import main

main()
