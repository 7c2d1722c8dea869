#!/usr/bin/env bash
# Packaging check: build the sdist, and the wheel from it (what `python -m build` does), install the
# wheel alone into a fresh virtual environment (its dependencies from the registry, no extras, the
# source tree not on the path) and run the main job's import path there. A file left out of the
# wheel, a wrong entry point or a missing dependency fails here, not on a user's machine.
# Run alone: `.ci/check_wheel.sh` with a Python that has `build` (the [dev] extra); .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== build sdist and wheel"
if ! python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1; then
  cat "$work/build.log"; exit 1
fi
python .ci/wheel_contents.py "$work"/dist/*.tar.gz "$work"/dist/*.whl

echo "== install the wheel into a clean virtual environment"
python=$(python -c "import sys; print(sys.executable)")
if command -v uv >/dev/null 2>&1; then
  # uv (in the [dev] extra) resolves and installs the ~100 dependencies in seconds where pip takes
  # minutes; it is told to use this Python, never to download one.
  UV_PYTHON_DOWNLOADS=never uv venv -q --python "$python" "$work/venv"
  uv pip install -q --python "$work/venv/bin/python" "$work"/dist/*.whl
else
  "$python" -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q "$work"/dist/*.whl
fi

echo "== the main job's import path, from the installed wheel"
cd "$work"  # nothing may come from the source tree
"$work/venv/bin/python" "$repo/.ci/wheel_smoke.py" "$repo/examples/local_model.py"
"$work/venv/bin/rlm" --help >/dev/null
"$work/venv/bin/rlm" ask --help >/dev/null
echo "== wheel check passed in $((SECONDS - start)) s"
