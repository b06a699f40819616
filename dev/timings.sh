#!/usr/bin/env bash
# Where `make demo`'s time went, one line: each stage that took a second or more, those that
# ran beside the foreground marked "beside", and the rest (the venv, make itself) as "other".
# Usage: dev/timings.sh reset|summary
. "$(dirname "$0")/lib.sh"
case ${1:-} in
  reset) mkdir -p "$VTX_STATE"; echo "begin $(date +%s)" >"$TIMINGS" ;;
  summary)
    [ -s "$TIMINGS" ] || exit 0
    awk -v now="$(date +%s)" '
      function hms(s) { return s >= 60 ? sprintf("%dm%02ds", s / 60, s % 60) : sprintf("%ds", s) }
      $1 == "begin" { begin = $2; next }
      { t[$1] += $2; bg[$1] = ($3 == "bg"); if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
      END {
        total = now - begin; fg = 0; line = ""
        for (i = 1; i <= n; i++) {
          k = order[i]
          if (!bg[k]) fg += t[k]
          if (t[k] < 1) continue
          line = line sprintf("%s%s %s%s", line == "" ? "" : " · ", k, hms(t[k]), bg[k] ? " (beside)" : "")
        }
        if (total - fg >= 1) line = line sprintf(" · other %s", hms(total - fg))
        printf "\033[1m[vtx]\033[0m where the time went (%s in all): %s\n", hms(total), line
      }' "$TIMINGS" >&2
    ;;
  *) die "usage: $0 reset|summary" ;;
esac
