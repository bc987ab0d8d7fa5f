#!/usr/bin/env bash
# A real blue-green deploy with turnout: start the new version on the idle pool's
# ports, switch traffic to it, stop the old version; roll back on failure.
#
#   APP_CMD='./myapp --port $PORT' VERSION=v42 scripts/deploy-example.sh
#
# Settings (environment):
#   APP_CMD      command that runs ONE app server; $PORT and $VERSION are set for it
#                (required; run through bash -c, so it may use them)
#   VERSION      the version being deployed (shown in the history's reason)
#   PORTS_A      the ports of pool A's servers, as in the turnout config (default "9001 9002")
#   PORTS_B      the ports of pool B's servers (default "9101 9102")
#   RUN_DIR      where the app servers' pid files live (default /run/myapp)
#   TURNOUT      the turnout command (default "turnout"; add --control … if needed)
#   TIMEOUT      how long the new version may take to become healthy (default 60s)
#
# Exit codes: 0 deployed; 1 the new version never became healthy (rolled back, the
# old version keeps serving); 4 someone else switched meanwhile (rolled back);
# 5 a pool was left running because turnout says it serves, or could not say which
# pool serves (check `turnout status` and stop it by hand once idle); anything else:
# turnout could not be asked (nothing was switched).
#
# Whatever an exit code says, a pool is stopped only after `turnout status` names
# another pool as active: the pool that serves is never stopped.
set -euo pipefail

: "${APP_CMD:?set APP_CMD to the command that runs one app server on \$PORT}"
VERSION=${VERSION:-$(date +%Y%m%d%H%M%S)}
PORTS_A=${PORTS_A:-"9001 9002"}
PORTS_B=${PORTS_B:-"9101 9102"}
RUN_DIR=${RUN_DIR:-/run/myapp}
TURNOUT=${TURNOUT:-turnout}
TIMEOUT=${TIMEOUT:-60s}

log() { echo "deploy: $*" >&2; }

ports_of() { if [ "$1" = A ]; then echo "$PORTS_A"; else echo "$PORTS_B"; fi; }

# start_pool POOL: start one app server per port of POOL, in the background.
start_pool() {
  mkdir -p "$RUN_DIR"
  for port in $(ports_of "$1"); do
    PORT=$port VERSION=$VERSION setsid bash -c "exec $APP_CMD" >>"$RUN_DIR/$1-$port.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$1-$port.pid"
    log "started $VERSION on port $port (pool $1, pid $!)"
  done
}

# serving_pool: the active pool according to `turnout status --json`; empty when
# turnout cannot be asked.
serving_pool() {
  $TURNOUT status --json 2>/dev/null | tr -d '\n' | sed -n 's/^[^"]*{[^{]*"active": *"\([^"]*\)".*/\1/p'
}

# stop_pool POOL: stop POOL's app servers gracefully (SIGTERM), wait for them;
# refuses (status 5) when turnout says POOL serves, or cannot say which pool does.
stop_pool() {
  local serving
  serving=$(serving_pool) || true
  if [ -z "$serving" ]; then
    log "cannot ask turnout which pool serves: leaving pool $1 running"
    return 5
  fi
  if [ "$serving" = "$1" ]; then
    log "pool $1 serves traffic (turnout status): leaving it running"
    return 5
  fi
  for port in $(ports_of "$1"); do
    local pidfile="$RUN_DIR/$1-$port.pid"
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    log "stopped pool $1 server on port $port"
  done
}

status=$($TURNOUT status --json)
active=$(printf '%s' "$status" | tr -d '\n' | sed -n 's/^[^"]*{[^{]*"active": *"\([^"]*\)".*/\1/p')
[ -n "$active" ] || { log "cannot tell the active pool from 'turnout status --json'"; exit 3; }
pools=$(printf '%s' "$status" | tr -d '\n' | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
idle=$(printf '%s\n' $pools | grep -vx "$active" | head -1)
log "active pool $active, deploying $VERSION to $idle"

stop_pool "$idle"   # leftovers of an earlier failed deploy
start_pool "$idle"

set +e
$TURNOUT switch "$idle" --expect-active "$active" --timeout "$TIMEOUT" --reason "deploy $VERSION"
rc=$?
set -e
if [ "$rc" -eq 0 ]; then
  # The old pool is drained (or drain_timeout passed: turnout said how many
  # requests were still in flight); stopping it gracefully lets those finish.
  stop_pool "$active"
  log "deployed $VERSION on pool $idle"
  exit 0
fi
log "switch failed (exit $rc): rolling back, $active keeps serving"
stop_pool "$idle"
exit "$rc"
