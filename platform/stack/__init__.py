"""The server-mode stack without Docker: the same processes as docker-compose.yml, run by honcho."""
