#!/usr/bin/env bash
# The last lines of every part's log, or follow one: dev/logs.sh [PART] [-f]
. "$(dirname "$0")/lib.sh"
if [ -n "${1:-}" ]; then
  [ -f "$LOGS/$1.log" ] || die "no log for '$1' (parts: ${PARTS[*]})"
  exec tail -n "${LINES:-100}" ${2:+-f} "$LOGS/$1.log"
fi
for p in "${PARTS[@]}"; do
  [ -f "$LOGS/$p.log" ] || continue
  printf '\n==> %s <==\n' "$LOGS/$p.log"
  tail -n "${LINES:-15}" "$LOGS/$p.log"
done
