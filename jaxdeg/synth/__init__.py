"""Dataset synthesis: clean images → degraded pairs in ArrayRecord shards (`--mode=synthesize`)."""
