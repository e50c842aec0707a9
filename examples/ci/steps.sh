#!/usr/bin/env bash
# The steps of examples/ci/export-policy.yml as plain commands (run them by hand the same way):
#   steps.sh install               # this project with its export extra (CPU torch is enough)
#   steps.sh export SOURCE NAME    # SOURCE: a LeRobot checkpoint folder or a hub id org/name[@rev]
#   steps.sh check                 # python -m export.check: will the pinned Triton serve it?
# Settings (environment): PYTHON (python), PROJECT (.: where this project is checked out),
# REPOSITORY (model_repository), TRITON (26.07: the container you deploy), REPORT
# (export-check.json), EXPORT_ARGS (extra flags for python -m export, e.g. --dataset-info F).
set -euo pipefail
PYTHON=${PYTHON:-python}
PROJECT=${PROJECT:-.}
REPOSITORY=${REPOSITORY:-model_repository}
TRITON=${TRITON:-26.07}
REPORT=${REPORT:-export-check.json}

step=${1:-}
case "$step" in
  install)
    if "$PYTHON" -c "import export.check, lerobot" 2>/dev/null; then
      echo "the project and its export extra are already installed"
    else
      # CPU wheels of torch: the export runs on CPU and the CUDA ones are gigabytes.
      "$PYTHON" -m pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        "$PROJECT[export]"
    fi
    ;;
  export)
    [ $# -eq 3 ] || { echo "usage: $0 export SOURCE NAME" >&2; exit 2; }
    # shellcheck disable=SC2086  # EXPORT_ARGS is a list of flags
    "$PYTHON" -m export "$2" --repository "$REPOSITORY" --name "$3" ${EXPORT_ARGS:-}
    ;;
  check)
    # One line per problem and a non-zero exit when the container would not serve it.
    "$PYTHON" -m export.check "$REPOSITORY" --triton "$TRITON" --report "$REPORT"
    ;;
  *)
    echo "usage: $0 install | export SOURCE NAME | check" >&2
    exit 2
    ;;
esac
