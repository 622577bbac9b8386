"""The gallery of enrolled faces: durable storage (``storage``), in-memory matching
(``search``), and ``service``, which keeps the two consistent and follows other
processes' changes. Identity names (``names``), new faces (``records``) and kept crops
(``crops``) are its rules."""
