#!/usr/bin/env bash
# One line per part of the local stack: running or not, its pid, memory (RSS of its process
# group) and its log; then the node.
. "$(dirname "$0")/lib.sh"
rc=0 total=0
printf '%-24s %-8s %-8s %8s  %s\n' PART STATE PID RSS_MB LOG
for p in "${PARTS[@]}"; do
  if pid_alive "$p"; then
    state=running; pid=$(cat "$PIDS/$p.pid")
    rss=$(ps -eo pgid=,rss= | awk -v g="$pid" '$1 == g {s += $2} END {print int(s / 1024)}')
    total=$((total + rss))
  else
    state=stopped; pid=-; rss=-; rc=1
  fi
  printf '%-24s %-8s %-8s %8s  %s\n' "$p" "$state" "$pid" "$rss" "$LOGS/$p.log"
done
shims=$(ps -eo rss=,args= | awk -v a="$CONTAINERD_SOCK" 'index($0, a) && /containerd-shim/ {s += $1} END {print int(s / 1024)}')
printf '%-24s %-8s %-8s %8s\n' "pod shims" - - "$shims"
printf '%-24s %-8s %-8s %8s\n' total - - "$((total + shims))"
if [ "$rc" -eq 0 ]; then
  kctl get nodes -o wide 2>/dev/null | sed 's/^/  /' || true
fi
exit "$rc"
