"""Offline training package: prepare → train → evaluate → export."""
