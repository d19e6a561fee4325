"""Stage 2: model resolution and loading; the tiny model factory for tests."""
