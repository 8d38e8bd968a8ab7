#!/usr/bin/env bash
# Executes every notebooks/*.ipynb headless with Debian's Python (/usr/bin/python3, whose packages
# scripts/install-deps.sh --with-notebooks installs) and fails if any cell of any notebook fails. Without
# HIPPO_DB, it first builds the example database (scripts/example-db.sh). The executed copies go to a temporary
# folder (or $HIPPO_NOTEBOOK_OUT, kept), so the committed notebooks stay without outputs; figures go to
# notebooks/figures/ (or $HIPPO_FIGURES). Relative paths in these variables are taken from the caller's directory.
# Usage: scripts/run-notebooks.sh [HIPPO_BINARY]   (the binary builds the example database; default build/apps/hippo)
set -euo pipefail
# The kernels run in notebooks/: make the caller's relative paths absolute before leaving its directory.
for v in HIPPO_DB HIPPO_FIGURES HIPPO_NOTEBOOK_OUT; do
  if [[ -n "${!v:-}" ]]; then export "$v=$(realpath -m -- "${!v}")"; fi
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=/usr/bin/python3  # not the first python3 on PATH, which may be another interpreter without Debian's packages
if [[ ! -x "$py" ]] || ! "$py" -c "import nbconvert, ipykernel, pandas, matplotlib" 2>/dev/null; then
  echo "run-notebooks: $py lacks nbconvert, ipykernel, pandas or matplotlib:" \
    "run scripts/install-deps.sh --with-notebooks" >&2
  exit 2
fi
# Notebooks are committed without outputs, so that diffs show code and figures come from the database.
"$py" - notebooks/*.ipynb <<'PY'
import sys, nbformat
dirty = [p for p in sys.argv[1:] for c in nbformat.read(p, 4).cells
         if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
if dirty:
    sys.exit("run-notebooks: notebooks with outputs: " + " ".join(sorted(set(dirty)))
             + "; clear them: /usr/bin/python3 -m jupyter nbconvert --clear-output --inplace notebooks/*.ipynb")
PY
if [[ -z "${HIPPO_DB:-}" ]]; then
  scripts/example-db.sh "${1:-build/apps/hippo}"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="${HIPPO_NOTEBOOK_OUT:-$tmp/out}"
# A kernel spec of our own, first on JUPYTER_PATH, so that the kernel is Debian's Python whatever other
# python3 kernels are installed; the notebooks assert it through HIPPO_EXPECT_PYTHON.
mkdir -p "$tmp/jupyter/kernels/python3"
cat >"$tmp/jupyter/kernels/python3/kernel.json" <<JSON
{"argv": ["$py", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "Python 3 (Debian)", "language": "python"}
JSON
export JUPYTER_PATH="$tmp/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
export HIPPO_EXPECT_PYTHON="$py" MPLBACKEND=Agg PYDEVD_DISABLE_FILE_VALIDATION=1

failed=()
for nb in notebooks/*.ipynb; do
  echo "run-notebooks: $nb" >&2
  start=$SECONDS
  if "$py" -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.kernel_name=python3 \
      --ExecutePreprocessor.timeout=600 --output-dir "$out" "$nb"; then
    echo "run-notebooks: $nb ok ($((SECONDS - start)) s)" >&2
  else
    failed+=("$nb")
  fi
done
if ((${#failed[@]})); then
  echo "run-notebooks: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "run-notebooks: all notebooks ran (database: ${HIPPO_DB:-notebooks/example.db};" \
  "figures: ${HIPPO_FIGURES:-notebooks/figures/}${HIPPO_NOTEBOOK_OUT:+; executed notebooks: $out})" >&2
