"""Face identification REST service."""

import os

# Gallery search is one small matrix-vector product per request, run from several threads:
# OpenBLAS's own thread pool makes each one many times slower (thread wake-up
# dominates; docs/BENCHMARKS.md) and fights the detector and the model for the cores.
# Set before NumPy is first imported; an operator's explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
