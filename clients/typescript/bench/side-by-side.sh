#!/usr/bin/env bash
# The side-by-side drain of issue 19: a Node worker with the TypeScript client at concurrency
# 50 draining no-op jobs from `stoker serve` (SQLite, and PostgreSQL when DATABASE_URL is set),
# with the fast protocol (batched acks + reserve-with-ack, with and without prefetch) and the
# one-job-per-request one,
# the Python client's AsyncWorker and threaded Worker on the fast protocol, against BullMQ's
# worker draining as many from Redis, in one run on one machine.
#
#   JOBS=50000 SINGLE_JOBS=10000 CONCURRENCY=50 DATABASE_URL=postgres://... BULLMQ_DIR=/work/scratch/bullmq \
#     bash clients/typescript/bench/side-by-side.sh
#
# Needs a built `stoker` ($STOKER_BIN, else $CARGO_TARGET_DIR or target/debug|release), the
# client built (`npm run build`), and for BullMQ a Redis at $REDIS_HOST:$REDIS_PORT and BullMQ
# installed in $BULLMQ_DIR (it is no dependency of the repository).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
JOBS="${JOBS:-50000}"
CONCURRENCY="${CONCURRENCY:-50}"
# The one-job-per-request protocol is an order of magnitude slower: fewer jobs keep it short.
SINGLE_JOBS="${SINGLE_JOBS:-$JOBS}"
STOKER_BIN="${STOKER_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/stoker}"
[ -x "$STOKER_BIN" ] || STOKER_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/stoker"
work="$(mktemp -d)"
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

# Starts `stoker serve` with the given database arguments; prints its base URL.
serve() {
    local name="$1"; shift
    local token="bench-token-0123456789abcdef"
    STOKER_API_TOKEN="$token" "$STOKER_BIN" serve "$@" --bind 127.0.0.1:0 \
        > "$work/$name.out" 2> "$work/$name.err" &
    echo $! > "$work/$name.pid"
    for _ in $(seq 1 300); do
        if grep -q "API:" "$work/$name.out"; then
            grep -o '^ *API: *[^ ]*' "$work/$name.out" | head -1 | awk '{print $2}' | sed 's#/v1$##'
            return
        fi
        sleep 0.1
    done
    echo "stoker serve ($name) did not start" >&2; cat "$work/$name.err" >&2; exit 1
}

stop() { kill "$(cat "$work/$1.pid")"; wait "$(cat "$work/$1.pid")" 2>/dev/null || true; rm "$work/$1.pid"; }

# Each store: the fast protocol with the Worker's default prefetch, the same without prefetch
# (`prefetch` 0: reserves only for free slots, as before issue 19's PostgreSQL work), and the
# one-job-per-request calls.
drains() {
    local store="$1" url="$2"
    node "$here/stoker-drain.mjs" "$url" bench-token-0123456789abcdef "$JOBS" "$CONCURRENCY" batch | sed "s/^/{\"store\":\"$store\",/; s/,{/,/"
    node "$here/stoker-drain.mjs" "$url" bench-token-0123456789abcdef "$JOBS" "$CONCURRENCY" batch 0 | sed "s/^/{\"store\":\"$store\",/; s/,{/,/"
    node "$here/stoker-drain.mjs" "$url" bench-token-0123456789abcdef "$SINGLE_JOBS" "$CONCURRENCY" single | sed "s/^/{\"store\":\"$store\",/; s/,{/,/"
}

url="$(serve sqlite --database-url "sqlite://$work/bench.sqlite3")"
drains sqlite "$url"
for mode in async threads; do
    python3 "$repo/clients/python/bench/drain.py" "$url" bench-token-0123456789abcdef "$JOBS" "$CONCURRENCY" "$mode" | sed 's/^{/{"store":"sqlite",/'
done
stop sqlite

if [ -n "${DATABASE_URL:-}" ]; then
    schema="bench_$$"
    url="$(serve postgres --database-url "$DATABASE_URL" --database-schema "$schema")"
    drains postgres "$url"
    for mode in async threads; do
        python3 "$repo/clients/python/bench/drain.py" "$url" bench-token-0123456789abcdef "$JOBS" "$CONCURRENCY" "$mode" | sed 's/^{/{"store":"postgres",/'
    done
    stop postgres
    psql "$DATABASE_URL" -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" > /dev/null 2>&1 || true
fi

if [ -n "${BULLMQ_DIR:-}" ]; then
    BULLMQ_DIR="$BULLMQ_DIR" node "$here/bullmq-drain.mjs" "${REDIS_HOST:-127.0.0.1}" "${REDIS_PORT:-6379}" "$JOBS" "$CONCURRENCY" \
        | sed 's/^/{"store":"redis",/; s/,{/,/'
fi
