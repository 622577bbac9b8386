"""Face identification REST service."""
