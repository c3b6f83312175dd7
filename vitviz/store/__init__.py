"""Runs as data: requests, results, and the cache that serves each run once."""
