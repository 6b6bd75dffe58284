"""The domain core: grid hierarchy, staff, spatial rules and the reference dataset.

Nothing in here knows about FastAPI or Kafka; the adapters call into it.
"""
