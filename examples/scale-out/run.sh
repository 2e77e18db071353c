#!/usr/bin/env bash
# Three milterkit instances sharing greylisting state in Redis, behind HAProxy, on loopback
# (docs/scaling.rst). Needs redis-server running, haproxy, and pip install 'milterkit[redis,metrics]'.
#
#   examples/scale-out/run.sh                 # Postfix: smtpd_milters = inet:127.0.0.1:10025
#
# Environment (defaults in brackets): FILTER [examples/greylist.py], GREYLIST_STORE
# [redis://127.0.0.1:6379/0], GREYLIST_DELAY [300], MILTER_FRONTEND [127.0.0.1:10025],
# MILTER_1..3 [127.0.0.1:10031..10033], HEALTH_1..3 [9101..9103], HAPROXY_SOCKET [a temp dir].
# Ctrl-C or SIGTERM stops everything: each instance shuts down gracefully.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
filter="${FILTER:-$here/../greylist.py}"
export GREYLIST_STORE="${GREYLIST_STORE:-redis://127.0.0.1:6379/0}"
export MILTER_FRONTEND="${MILTER_FRONTEND:-127.0.0.1:10025}"
export HAPROXY_SOCKET="${HAPROXY_SOCKET:-$(mktemp -d)/haproxy.sock}"
milterkit="${MILTERKIT:-milterkit}"

pids=()
stop() {
    trap - EXIT INT TERM
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait || true
}
trap stop EXIT INT TERM

for n in 1 2 3; do
    address_var="MILTER_$n" health_var="HEALTH_$n"
    address="${!address_var:-127.0.0.1:1003$n}" health="${!health_var:-910$n}"
    export "MILTER_$n=$address" "HEALTH_$n=$health"
    # milterkit writes inet:PORT@HOST where HAProxy writes HOST:PORT.
    $milterkit run "$filter" --listen "inet:${address##*:}@${address%:*}" \
        --metrics-listen "${address%:*}:$health" --shutdown-timeout 30 &
    pids+=("$!")
done
haproxy -db -f "$here/haproxy.cfg" &
pids+=("$!")
echo "run.sh: milter on $MILTER_FRONTEND, HAProxy admin socket $HAPROXY_SOCKET" >&2
# Whichever process ends first (an instance that failed to start, or haproxy), stop the rest.
wait -n
