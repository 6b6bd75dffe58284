"""Kafka adapter: consumers, dead letters and the simulator (later issues)."""
