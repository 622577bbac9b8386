"""Matching against the enrolled faces, in memory: the exact index (``index``), its int8
pre-scan for large galleries (``scan``) and the optional approximate graph (``ann``)."""
