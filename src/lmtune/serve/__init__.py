"""Stage 6b: serve a model folder over an OpenAI-compatible HTTP API, or chat with it in a terminal."""
