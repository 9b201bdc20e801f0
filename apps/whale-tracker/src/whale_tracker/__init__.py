"""Whale tracker: ingest large on-chain transfers, score them, serve them read-only."""
