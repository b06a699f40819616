#!/usr/bin/env bash
# One line per part of the local stack: running or not, its pid and its log.
. "$(dirname "$0")/lib.sh"
rc=0
printf '%-24s %-9s %-8s %s\n' PART STATE PID LOG
for p in "${PARTS[@]}"; do
  if pid_alive "$p"; then state=running; pid=$(cat "$PIDS/$p.pid"); else state=stopped; pid=-; rc=1; fi
  printf '%-24s %-9s %-8s %s\n' "$p" "$state" "$pid" "$LOGS/$p.log"
done
if [ "$rc" -eq 0 ]; then
  kctl get nodes -o wide 2>/dev/null | sed 's/^/  /' || true
fi
exit "$rc"
