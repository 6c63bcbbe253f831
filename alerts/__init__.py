"""Telling people: alert rules, the directory, routing, the durable outbox, delivery and channels."""
