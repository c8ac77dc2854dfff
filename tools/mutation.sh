#!/usr/bin/env bash
# Mutation testing of one module: tools/mutation.sh NAME (targets: tools/mutation/targets/*.toml).
# Needs mutmut (in the test extra); runs in a scratch copy, never in the checkout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python}" "$here/mutation/run.py" "$@"
