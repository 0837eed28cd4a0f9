#!/usr/bin/env bash
# The main job end to end, no network: train a small RAViT on generated images,
# evaluate its exits (accuracy vs MACs), convert to int8 submodels and run the
# early-exit scheduler over the test images. Output in runs/demo/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ravit demo --out "${1:-runs/demo}"
