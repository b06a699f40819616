#!/usr/bin/env bash
# Stops the local stack: every process by its pid file, then the kernel state it left behind.
# Data (database, objects, IPFS repo, etcd) stays in $VTX_STATE for the next `up`;
# `dev/down.sh --purge` removes it too.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "the local stack needs root"

stop_part() {
  local name=$1 f="$PIDS/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    # Each part runs in its own session: signal the whole group (runuser, env and the like).
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 20s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

for ((i = ${#PARTS[@]} - 1; i >= 0; i--)); do stop_part "${PARTS[$i]}"; done
sweep_kernel_state
rm -f "$VTX_STATE/up.done"
if [ "${1:-}" = --purge ]; then
  rm -rf "$VTX_STATE"
  log "stack stopped and its data removed"
else
  log "stack stopped (data kept in $VTX_STATE)"
fi
