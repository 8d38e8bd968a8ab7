# Sourced by the scripts/gpu-*.sh runners: step SECONDS LOG COMMAND... runs COMMAND with a time limit, its output
# to LOG and the terminal, then prints "[LOG] exit RC after N s" (noting a reached time limit), appends that line
# to the array step_lines (and to the file $step_summary when set), and sets status=1 when COMMAND failed.
status=0
step_lines=()
step() {
  local limit=$1 log=$2
  shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line="[$(basename "$log")] exit $rc after $(( $(date +%s) - t0 )) s"
  [ "$rc" = 124 ] && line+=" (time limit of $limit s reached)"
  echo "$line"
  step_lines+=("$line")
  [ -n "${step_summary:-}" ] && echo "$line" >> "$step_summary"
  [ "$rc" = 0 ] || status=1
}
