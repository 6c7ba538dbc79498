# Sourced by the CLI tests: locations, skipping without ../shared, and failing with a message.
set -euo pipefail
: "${ENDLESS_BIN:?ENDLESS_BIN must point at the built endless binary}"
: "${ENDLESS_SOURCE_DIR:?ENDLESS_SOURCE_DIR must point at the repository}"
SHARED="${ENDLESS_SHARED:-$ENDLESS_SOURCE_DIR/../shared}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Exit 77 (ctest: skipped) when a file from ../shared is absent.
require_shared() {
  for f in "$@"; do
    if [ ! -e "$SHARED/$f" ]; then
      echo "SKIP: ../shared/$f is absent (data not available)"
      exit 77
    fi
  done
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
