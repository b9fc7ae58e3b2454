#!/usr/bin/env bash
# Prints the content-addressed tag of ModelFleet's images: the first 12 hex digits of a SHA-256 over
# the git blobs of everything a build reads (lock, sources, Dockerfiles). The same inputs always
# give the same tag, whatever the commit message or branch; any change to an input gives a new one,
# so a tag never names two different images. Refuses when an input has uncommitted changes, since
# the tag would then describe something the build does not see.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
inputs=(pyproject.toml uv.lock .dockerignore libs services deploy/docker)
if [ -n "$(git status --porcelain -- "${inputs[@]}")" ]; then
  echo "image-tag: uncommitted changes in the build inputs; commit them first:" >&2
  git status --short -- "${inputs[@]}" >&2
  exit 1
fi
git ls-tree -r HEAD -- "${inputs[@]}" | sha256sum | cut -c1-12
