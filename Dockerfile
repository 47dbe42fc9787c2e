# Face-verification service: FastAPI + ONNX Runtime on CPU. No OpenCV, no torch.
#   docker build -t mobileid-face .
#   docker run --rm -p 8000:8000 --cpus 2 -e FACE_THREADS=2 mobileid-face
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml's runtime list only (no [training] or [dev] extras): this layer is
# rebuilt when the dependencies change, not on every code or model change.
COPY pyproject.toml ./
# The [postgres] extra too: the same image serves the embedded gallery and a shared PostgreSQL one.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# jemalloc instead of glibc malloc: after a burst of large uploads handled by many threads, glibc keeps freed
# memory in per-thread arenas; jemalloc gives it back by itself and peaks lower (bench/allocator.py: 16 threads
# decoding 13.5 MP images, peak 787 vs 979 MiB, idle 120 vs 308 MiB). Without it (pip install outside Docker)
# the service calls malloc_trim when its pixel budget empties (idle 148 MiB in the same test).
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/* \
    && ln -s "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /usr/local/lib/libjemalloc.so.2
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2

# Code, then the models (manifest + ONNX files; start-up checks each file's sha256 against the manifest).
COPY service/ service/
COPY models/ models/

RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin face \
    && mkdir /data && chown face:face /data
USER face
# The embedded gallery's file (mount a volume here: the container's root is read-only in docker-compose.yml).
VOLUME /data

ENV FACE_HOST=0.0.0.0 \
    FACE_PORT=8000 \
    FACE_GALLERY_URL=sqlite:////data/gallery.db
EXPOSE 8000

# Liveness with the interpreter the image already has (slim images have no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; port = os.environ.get('FACE_PORT') or '8000'; sys.exit(0 if u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

CMD ["python", "-m", "service"]
