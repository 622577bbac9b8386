# Face identification service image.
#   docker build -t faceid .                                  (CPU TensorFlow, the default)
#   docker build -t faceid:gpu --build-arg TF_EXTRA=gpu .     (CUDA TensorFlow; run with --gpus all)
#   docker run -p 8000:8000 -v faceid-gallery:/data faceid
# Configuration is by FACEID_* environment variables (README, "Configuration").
ARG PYTHON_VERSION=3.11.14

# ---- builder: a virtual environment with the pinned dependencies from pyproject.toml ----
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
# Which TensorFlow build: the pyproject extra "cpu" (tensorflow-cpu) or "gpu" (tensorflow[and-cuda]).
# With "cpu" the serving process runs on LiteRT (ai-edge-litert, a base dependency) and never
# loads TensorFlow; TensorFlow is still installed for the short-lived child process that
# converts the SavedModel on a cold start (the result is cached in /data/engine-cache).
ARG TF_EXTRA=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# Only pyproject.toml feeds this layer, so editing the code does not reinstall TensorFlow.
# Then what serving never loads leaves the venv (docs/BENCHMARKS.md, "Image"): TensorFlow's C++
# headers (~290 MB, for compiling custom ops; some files in it twice), libclang (~60 MB, used
# by TensorFlow's own build, never imported) and pip. No compilers, no pip cache, no extras
# beyond the TensorFlow one: the runtime stage copies only this venv.
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extra = sys.argv[1]; deps = p['dependencies'] + p['optional-dependencies'][extra]; \
print('\n'.join(deps))" "${TF_EXTRA}" > requirements.txt \
 && cat requirements.txt \
 && pip install --no-cache-dir -r requirements.txt \
 && rm -rf "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tensorflow/include" \
 && pip uninstall --yes --quiet libclang pip

# ---- runtime: the venv, the service code and the shipped model, run as a non-root user ----
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 faceid \
 && useradd --system --uid 10001 --gid faceid --create-home --home-dir /home/faceid faceid \
 && mkdir -p /data \
 && chown faceid:faceid /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /srv/faceid
COPY pyproject.toml ./
COPY app/ ./app/
COPY faces/ ./faces/
COPY model_store/ ./model_store/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    FACEID_HOST=0.0.0.0 \
    FACEID_PORT=8000 \
    FACEID_DATA_DIR=/data \
    FACEID_MODEL_DIR=/srv/faceid/model_store/faceid/2
# The gallery (SQLite: embeddings and metadata, never photos) lives here.
VOLUME /data
USER 10001:10001
EXPOSE 8000
# No curl in the slim image: ask /health with Python. 503 (model still loading) fails it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FACEID_PORT', '8000'), timeout=4)"]
# The same start command as `make run` and the CI smoke test (.ci/run).
CMD ["python", "-m", "app"]
