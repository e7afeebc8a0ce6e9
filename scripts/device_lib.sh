# Shell helpers the device scripts share (sourced; no side effects).

# step NAME LIMIT_S CMD...: runs CMD with a time limit into $LOGS/NAME.log; appends a row (name, exit
# status, seconds) to SUMMARY, prints the log's last $TAIL_LINES lines (default 30; 0: only on
# failure), and returns CMD's status.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  SUMMARY+=("$(printf '%-34s rc=%-4s %5ss' "$name" "$rc" "$((SECONDS - t0))")")
  local lines=${TAIL_LINES:-30}
  if [ "$lines" != 0 ] || [ $rc != 0 ]; then
    echo "=== $name (rc $rc, $((SECONDS - t0)) s): tail of $LOGS/$name.log"
    tail -n "$([ "$lines" = 0 ] && echo 8 || echo "$lines")" "$LOGS/$name.log"
  fi
  return $rc
}

# serve_until_ready LOG PORT LOOM_SERVE_ARGS...: starts `loom serve` (the arguments after PORT, which
# must include the binary) in the background with stderr into LOG; sets serve_pid and returns once
# the server has answered a one-token completion (status 1 when it exits first or takes 5 minutes).
serve_until_ready() {
  local log=$1 port=$2
  shift 2
  "$@" --port "$port" 2>"$log" &
  serve_pid=$!
  for _ in $(seq 1 3000); do
    curl -sf -m 5 "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
      -d '{"prompt": [1, 2, 3], "max_tokens": 1}' >/dev/null 2>&1 && return 0
    kill -0 $serve_pid 2>/dev/null || { tail "$log"; return 1; }
    sleep 0.1
  done
  return 1
}
