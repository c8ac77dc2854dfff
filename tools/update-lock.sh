#!/usr/bin/env bash
# Move the lock to the newest releases within pyproject.toml's ranges, on purpose and only green.
#
#   tools/update-lock.sh            resolve, test, and rewrite requirements.lock if the suite passes
#   tools/update-lock.sh --check    resolve and show what would change; test nothing, write nothing
#
# 1. uv (pinned below, in a throwaway virtualenv) resolves every dependency and the `test`
#    extra for all platforms and Python >= 3.10 at once (a universal lock: one file, with
#    environment markers where a platform or a Python version needs another release).
#    pip's configured constraint file, if this machine has one, applies: a lock that this
#    machine's pip refuses to install is no lock.
# 2. .ci/run installs the candidate exactly as the README does, into a fresh virtualenv, and
#    runs the whole suite (the PyInstaller bundle and its frozen self-test included) with
#    CI=true, as CI does.
# 3. Only when that run passes is requirements.lock replaced; otherwise it is left as it was
#    and the candidate and the log are kept for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
UV_VERSION=0.13.10
PY=${PYTHON:-python3}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/studio-lock.XXXXXX")
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

echo "== uv $UV_VERSION"
"$PY" -m venv "$WORK/uv"
"$WORK/uv/bin/python" -m pip install -q "uv==$UV_VERSION"

constraint=${PIP_CONSTRAINT:-$("$PY" -m pip config list 2>/dev/null | sed -n "s/^global\.constraint='\(.*\)'$/\1/p" | tail -n 1)}
args=(pip compile pyproject.toml --extra test --universal --python-version 3.10 --upgrade
      --quiet --no-header --output-file "$WORK/requirements.lock")
[ -n "$constraint" ] && [ -f "$constraint" ] && args+=(--constraint "$constraint")
echo "== resolving the newest versions (constraint file: ${constraint:-none})"
"$WORK/uv/bin/uv" "${args[@]}"
{
  echo "# The versions Studio is tested with: the README's set-up command installs them."
  echo "# Made by tools/update-lock.sh (uv pip compile --universal) on $(date -u +%Y-%m-%d);"
  echo "# change it only with that script, which rewrites it after the whole suite passes."
  # The constraint file's path is this machine's, not the project's.
  sed "s|-c ${constraint:-/dev/null}\$|-c (pip's configured constraint file)|" "$WORK/requirements.lock"
} > "$WORK/candidate.lock"

if [ -f requirements.lock ]; then
  diff <(grep -v '^#' requirements.lock) <(grep -v '^#' "$WORK/candidate.lock") \
    && echo "== no version changes" || true
fi
if [ "${1:-}" = "--check" ]; then
  exit 0
fi

echo "== the suite with the candidate lock (.ci/run, a fresh virtualenv)"
# CI=true as on CI: a test that skips for want of something fails there, so it fails here.
if CI=true STUDIO_LOCK="$WORK/candidate.lock" bash .ci/run 2>&1 | tee "$WORK/ci.log"; then
  cp "$WORK/candidate.lock" "$ROOT/requirements.lock"
  echo "== green: requirements.lock updated (review with git diff, then commit)"
else
  KEEP=1
  echo "== red: requirements.lock unchanged; candidate and log kept in $WORK" >&2
  exit 1
fi
