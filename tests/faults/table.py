"""Print the README's fault table from the figures a run of the fault suite recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str) -> int:
    file = Path(path)
    if not file.exists():
        print(f"{path}: no figures (did the fault suite run?)", file=sys.stderr)
        return 1
    print("| fault | window | uploads | lost | duplicated | time to heal |")
    print("|---|---|---|---|---|---|")
    for line in file.read_text().splitlines():
        row = json.loads(line)
        print(
            f"| {row['fault']} | {row['window']} | {row.get('uploads', '')} |"
            f" {row.get('lost', '')} | {row.get('duplicated', '')} | {row['heal_s']} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
