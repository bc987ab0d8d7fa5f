#!/usr/bin/env bash
# A real blue-green deploy with turnout: start the new version on the idle pool's
# servers, switch traffic to it, stop the old version gracefully; roll back on
# failure.
#
#   SERVERS_A='unix:/run/myapp/a.sock' SERVERS_B='unix:/run/myapp/b.sock' \
#   APP_CMD='gunicorn --bind unix:$SOCKET --workers 4 mysite.wsgi' VERSION=v42 \
#     scripts/deploy-example.sh
#
# Settings (environment):
#   APP_CMD      command that runs ONE app server in the foreground (required; run
#                through bash -c, so it may use these variables):
#                  $ADDRESS  the server as the turnout config writes it, less "unix:"
#                  $SOCKET   the socket path of a "unix:/path" server
#                  $PORT     the port of a "host:port" server
#                  $NETWORK  "unix" or "tcp"
#                  $VERSION  the version being deployed
#   VERSION      the version being deployed (shown in the history's reason)
#   SERVERS_A    pool A's servers as in the turnout config: "127.0.0.1:9001" or
#                "unix:/run/app-a.sock", space-separated (default: from PORTS_A)
#   SERVERS_B    pool B's servers (default: from PORTS_B)
#   PORTS_A      shorthand for SERVERS_A on 127.0.0.1 (default "9001 9002")
#   PORTS_B      shorthand for SERVERS_B (default "9101 9102")
#   RUN_DIR      where the app servers' pid files and logs live (default /run/myapp)
#   TURNOUT      the turnout command (default "turnout"; add --control … if needed)
#   TIMEOUT      how long the new version may take to become healthy (default 60s)
#   STOP_SIGNAL  the signal that stops an app server gracefully (default TERM:
#                gunicorn's graceful stop; uwsgi needs --die-on-term for it)
#   STOP_TIMEOUT how long a stopping server may take to finish its requests
#                before it is killed, in seconds (default 120s)
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
SERVERS_A=${SERVERS_A:-$(for p in $PORTS_A; do printf '127.0.0.1:%s ' "$p"; done)}
SERVERS_B=${SERVERS_B:-$(for p in $PORTS_B; do printf '127.0.0.1:%s ' "$p"; done)}
RUN_DIR=${RUN_DIR:-/run/myapp}
TURNOUT=${TURNOUT:-turnout}
TIMEOUT=${TIMEOUT:-60s}
STOP_SIGNAL=${STOP_SIGNAL:-TERM}
STOP_TIMEOUT=${STOP_TIMEOUT:-120s}

log() { echo "deploy: $*" >&2; }

servers_of() { if [ "$1" = A ]; then echo "$SERVERS_A"; else echo "$SERVERS_B"; fi; }

# key SERVER: a file name for SERVER's pid file and log.
key() { printf '%s' "$1" | tr -c 'A-Za-z0-9.-' '_'; }

# start_pool POOL: start one app server per server of POOL, in the background.
start_pool() {
  mkdir -p "$RUN_DIR"
  for server in $(servers_of "$1"); do
    local address=${server#unix:} socket="" port="" network=tcp
    if [ "$server" != "$address" ]; then socket=$address network=unix; else port=${server##*:}; fi
    ADDRESS=$address SOCKET=$socket PORT=$port NETWORK=$network VERSION=$VERSION \
      setsid bash -c "exec $APP_CMD" >>"$RUN_DIR/$1-$(key "$server").log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$1-$(key "$server").pid"
    log "started $VERSION on $server (pool $1, pid $!)"
  done
}

# serving_pool: the active pool according to `turnout status --json`; empty when
# turnout cannot be asked.
serving_pool() {
  $TURNOUT status --json 2>/dev/null | tr -d '\n' | sed -n 's/^[^"]*{[^{]*"active": *"\([^"]*\)".*/\1/p'
}

# stop_pool POOL: stop POOL's app servers gracefully (STOP_SIGNAL) and wait until
# they have finished their requests (STOP_TIMEOUT at most); refuses (status 5)
# when turnout says POOL serves, or cannot say which pool does.
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
  local pids=() servers=()
  for server in $(servers_of "$1"); do
    local pidfile="$RUN_DIR/$1-$(key "$server").pid"
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    rm -f "$pidfile"
    if kill "-$STOP_SIGNAL" "$pid" 2>/dev/null; then
      pids+=("$pid")
      servers+=("$server")
    fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  # Wait for every server of the pool together: each finishes the requests it
  # still has (a long upload, a slow report) before it exits.
  local deadline=$((SECONDS + ${STOP_TIMEOUT%s}))
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "${servers[$i]} (pool $1) still runs after $STOP_TIMEOUT: killing it"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
    log "stopped ${servers[$i]} (pool $1)"
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
