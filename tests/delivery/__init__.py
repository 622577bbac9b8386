"""Delivery tests: CI script, smoke test, Dockerfile, compose, README."""
