#!/usr/bin/env python3
"""Sweep files over the paper's Table 2 induction-head config (H3.md 6.4), for the GPU speed scripts.

Usage: table2_sweep.py DRY_RUN_TXT LAYERS OUT_YAML NAME GRID_JSON [EXTRA_FIXED_JSON]
DRY_RUN_TXT: the output of `hippo reproduce table2 --dry-run` (one canonical run config per line); LAYERS:
comma-separated layers whose configs are merged into the sweep's fixed settings (the first to set a key wins);
GRID_JSON: the sweep's grid; EXTRA_FIXED_JSON: fixed settings added on top. Keys in the grid leave `fixed`.
Writes OUT_YAML (JSON, which is YAML). Exits non-zero naming the layers the dry run lacks.
"""
import json
import sys


def main(argv):
    if len(argv) not in (6, 7):
        sys.exit(__doc__)
    dry_run, layers, out, name, grid = argv[1], argv[2].split(","), argv[3], argv[4], json.loads(argv[5])
    extra = json.loads(argv[6]) if len(argv) == 7 else {}
    configs = {}
    for line in open(dry_run):
        if "induction_head" in line and "{" in line:
            c = json.loads(line[line.index("{"):])
            configs[c["layers"][0]] = c
    missing = sorted(set(layers) - set(configs))
    if missing:
        sys.exit(f"{dry_run}: no induction_head config for {missing}; it has {sorted(configs)}")
    fixed = {}
    for layer in layers:  # canonical config -> a sweep's settings: train keys at the top, options under names
        c = configs[layer]
        raw = dict(c["train"], task=c["task"], **{c["task"]: c["task_options"]}, **c["layer_options"])
        for k, v in raw.items():
            fixed.setdefault(k, v)
    fixed.update(extra)
    fixed = {k: v for k, v in fixed.items() if k not in grid}
    with open(out, "w") as fh:
        json.dump({"name": name, "fixed": fixed, "grid": grid}, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv)
