"""Backends chosen per run, heavy imports inside: analyzers, face transfer, typesetting."""
