"""The REST API (FastAPI): job submission and status, corpora, questions."""
