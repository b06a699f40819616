#!/usr/bin/env bash
# Stops the local stack: every process by its pid file, then the kernel state it left behind.
# Data (database, objects, IPFS repo, etcd) stays in $VTX_STATE for the next `up`;
# `dev/down.sh --purge` removes it too.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "the local stack needs root"

# stop_parts PART...: signal the parts at once (each runs in its own session: signal its whole
# group), then wait for each. PostgreSQL gets SIGINT, its "fast" shutdown: SIGTERM would wait
# for clients to leave.
stop_parts() {
  local -A pids=()
  local p pid sig deadline
  for p in "$@"; do
    pid_alive "$p" || { rm -f "$PIDS/$p.pid"; continue; }
    pid=$(cat "$PIDS/$p.pid"); pids[$p]=$pid
    sig=TERM; [ "$p" = postgres ] && sig=INT
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + 20))
  for p in "${!pids[@]}"; do
    while pid_alive "$p" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if pid_alive "$p"; then
      log "$p did not stop within 20s; killing it"
      kill -KILL -- "-${pids[$p]}" 2>/dev/null || kill -KILL "${pids[$p]}" 2>/dev/null || true
    fi
    rm -f "$PIDS/$p.pid"
  done
}
# etcd last: the API server's graceful shutdown needs it.
stop_parts "${NODE2_PARTS[@]}"  # whether or not this up had two nodes
stop_parts "${PARTS[@]:1}"
stop_parts etcd
sweep_kernel_state
rm -f "$VTX_STATE/up.done"
if [ "${1:-}" = --purge ]; then
  rm -rf "$VTX_STATE"
  log "stack stopped and its data removed"
else
  log "stack stopped (data kept in $VTX_STATE)"
fi
