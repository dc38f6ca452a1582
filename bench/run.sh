#!/usr/bin/env bash
# ferry's side-by-side benchmark: ferry, nginx and HAProxy behind the same
# upstream, on the same machine, in the same run. See docs/performance.md.
#
#   bench/run.sh                      # nginx haproxy ferry, 3 rounds, 10 s per test
#   bench/run.sh ferry nginx          # a subset (nginx stays the ratio baseline when present)
#   ROUNDS=1 DURATION=2 IDLE_SOCKETS=500 bench/run.sh    # a quick smoke run
#
# Environment (defaults in brackets):
#   ROUNDS [3]          rounds; each round runs every test for every proxy, alternating
#   DURATION [10]       seconds measured per test per proxy
#   WARMUP [2]          seconds of unmeasured load before tests 1, 2, 4, 5
#   IDLE_SOCKETS [10000] idle WebSockets in test 6 (capped by the open-files limit)
#   FIXED_RPS [10000]   offered rate of test 8 (proxy CPU per request)
#   STARTUP_REPS [3]    start-ups measured per proxy per round (test 7)
#   TESTS               subset and order of: startup h1 h2 tls_full tls_resumed bulk ws_echo ws_echo_h2 fixed_rate ws_idle
#                       static_small static_large compress (these three are not in the default set)
#   COMPRESS_RPS [200]  offered rate of the compress test (proxy CPU per compressed response)
#   GZIP_LEVEL [1] BROTLI_LEVEL [3]   nginx's gzip_comp_level and brotli_comp_level in the
#                       compress test: ferry's built-in levels (HAProxy's libslz has no levels)
#   PROXY_CPU [1] LOAD_CPU [0]   CPUs for the proxy and for load generator + upstream
#   PORT [18443] UPSTREAM_PORT [18080]   loopback ports
#   SKIP_BUILD=1        use the existing release binaries
#   FERRY_REV           benchmark this committed revision (e.g. HEAD) instead of the work
#                       tree: exported with git archive and built under target/bench-rev/
#   NOTE                a sentence added to the report (e.g. "machine shared with a compile")
#   RESULTS_DIR [bench/results]  where the report goes (smoke runs: somewhere outside the repo)
#   NOISE_MAX [0.25] ATTEMPTS [3]  a throughput measurement during which other processes
#                       used more than NOISE_MAX of the proxy's CPU is repeated, up to ATTEMPTS runs
#
# Writes bench/results/<timestamp>.md and .json, and the raw tool output to
# bench/results/raw/<timestamp>/.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
IDLE_SOCKETS=${IDLE_SOCKETS:-10000}
FIXED_RPS=${FIXED_RPS:-10000}
COMPRESS_RPS=${COMPRESS_RPS:-200}
GZIP_LEVEL=${GZIP_LEVEL:-1}
BROTLI_LEVEL=${BROTLI_LEVEL:-3}
STARTUP_REPS=${STARTUP_REPS:-3}
TESTS=${TESTS:-"startup h1 h2 tls_full tls_resumed bulk ws_echo ws_echo_h2 fixed_rate ws_idle"}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PORT=${PORT:-18443}
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
NOTE=${NOTE:-}
NOISE_MAX=${NOISE_MAX:-0.25}
ATTEMPTS=${ATTEMPTS:-3}

if [[ $# -gt 0 ]]; then PROXIES=("$@"); else PROXIES=(nginx haproxy ferry); fi
for p in "${PROXIES[@]}"; do
  case $p in ferry|nginx|haproxy) ;; *) echo "unknown proxy: $p (ferry, nginx, haproxy)" >&2; exit 2 ;; esac
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has() { local x; for x in "${PROXIES[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }

# ---------------------------------------------------------------- tools
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
command -v pgrep >/dev/null || need+=(procps)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if has nginx && ! command -v nginx >/dev/null; then need+=(nginx); fi
if has haproxy && ! command -v haproxy >/dev/null; then need+=(haproxy); fi
if [[ ${#need[@]} -gt 0 ]]; then
  log "installing from Debian: ${need[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi

# The tools build under the main crate's (git-ignored) target directory.
TOOLS_TARGET=${CARGO_TARGET_DIR:-$REPO/target}/bench-tools
FERRY_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/ferry
if [[ -n ${FERRY_REV:-} ]]; then
  # A committed revision, exported and built apart from the work tree.
  FERRY_REV_SHORT=$(git -C "$REPO" rev-parse --short "$FERRY_REV^{commit}")
  REV_SRC=$REPO/target/bench-rev/src
  REV_TARGET=$REPO/target/bench-rev/target
  FERRY_BIN=$REV_TARGET/release/ferry
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  if has ferry && [[ -n ${FERRY_REV:-} ]]; then
    log "building ferry $FERRY_REV_SHORT (git archive + cargo build --release in $REV_SRC)"
    rm -rf "$REV_SRC"
    mkdir -p "$REV_SRC"
    git -C "$REPO" archive "$FERRY_REV_SHORT" | tar -x -C "$REV_SRC"
    (cd "$REV_SRC" && cargo build --release --locked --target-dir "$REV_TARGET")
    echo "$FERRY_REV_SHORT" >"$REPO/target/bench-rev/built-rev"
  elif has ferry; then
    log "building ferry (cargo build --release)"
    (cd "$REPO" && cargo build --release)
  fi
  log "building bench tools"
  (cd "$BENCH/tools" && cargo build --release --locked --target-dir "$TOOLS_TARGET")
fi
TOOLS_DIR=$TOOLS_TARGET/release
CLIENT=$TOOLS_DIR/bench-client
UPSTREAM=$TOOLS_DIR/bench-upstream
for b in "$CLIENT" "$UPSTREAM"; do [[ -x $b ]] || { echo "missing $b" >&2; exit 1; }; done
if has ferry && [[ ! -x $FERRY_BIN ]]; then echo "missing $FERRY_BIN" >&2; exit 1; fi

# Open files: the proxy holds two sockets per idle WebSocket. No more than
# test 6 needs: nginx and HAProxy size their tables by this limit.
want=$(( 2 * IDLE_SOCKETS + 1000 ))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && (( hard < want )); then want=$hard; fi
ulimit -n "$want"
NOFILE=$(ulimit -n)
MAX_IDLE=$(( (NOFILE - 300) / 2 ))
if (( IDLE_SOCKETS > MAX_IDLE )); then
  log "open-files limit is $NOFILE (hard): test 6 uses $MAX_IDLE idle WebSockets instead of $IDLE_SOCKETS"
  IDLE_SOCKETS=$MAX_IDLE
fi
PROXY_MAXCONN=$(( NOFILE / 2 - 50 ))

# ---------------------------------------------------------------- state, cleanup
TS=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=${RESULTS_DIR:-$BENCH/results}
RAW=$RESULTS/raw/$TS
mkdir -p "$RAW"
TMP=$(mktemp -d /tmp/ferry-bench.XXXXXX)
JSONL=$RAW/records.jsonl
: >"$JSONL"
CLK_TCK=$(getconf CLK_TCK)
PROXY_PID=
UPSTREAM_PID=
CHILD_PID=
FILES=
START_TIME=$(date +%s)

tree_pids() { # pid and its descendants
  local p=$1 c
  [[ -n $p && -d /proc/$p ]] || return 0
  echo "$p"
  for c in $(pgrep -P "$p" || true); do tree_pids "$c"; done
}

kill_tree() {
  local pid=$1 pids i
  [[ -n $pid && -d /proc/$pid ]] || return 0
  pids=$(tree_pids "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    [[ -d /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  kill_tree "$CHILD_PID"
  kill_tree "$PROXY_PID"
  kill_tree "$UPSTREAM_PID"
  rm -rf "$TMP" "${FILES:-}"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- certificate
# ECDSA P-256 leaf for localhost and 127.0.0.1, signed by a throwaway CA.
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/ca.key" 2>/dev/null
openssl req -x509 -new -key "$TMP/ca.key" -sha256 -days 7 -subj "/CN=ferry bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$TMP/ca.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/leaf.key" 2>/dev/null
openssl req -new -key "$TMP/leaf.key" -subj "/CN=localhost" -out "$TMP/leaf.csr" 2>/dev/null
cat >"$TMP/leaf.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier=keyid
EOF
openssl x509 -req -in "$TMP/leaf.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
  -days 7 -sha256 -extfile "$TMP/leaf.ext" -out "$TMP/leaf.pem" 2>/dev/null
cat "$TMP/leaf.pem" "$TMP/leaf.key" >"$TMP/haproxy.pem"

# ---------------------------------------------------------------- configurations
# Equivalent everywhere: TLS 1.3 (ferry also offers 1.2; every client here
# negotiates 1.3), ECDSA P-256, ALPN h2 + http/1.1, a keep-alive pool to the
# upstream, X-Forwarded-For/-Proto/-Host and X-Real-IP, no access log, one
# worker.
#
# The static and compress tests use a second configuration of each proxy
# (ferry-files.toml, nginx-files.conf, haproxy-files.cfg): the same plus the
# file and compression routes, so that the other tests run exactly as before.
# The files live in a directory of their own that nginx's worker (www-data) can
# read; $TMP, with the keys, stays private.
FILES=$(mktemp -d /tmp/ferry-bench-www.XXXXXX)
chmod 755 "$FILES"
ferry_conf() { # extra routes, put before the catch-all route
  cat <<EOF
[server]
workers = 1
shutdown_grace = "1s"
max_connections = $PROXY_MAXCONN

[[listen]]
addr = "127.0.0.1:$PORT"
tls = true

[[certificate]]
cert = "$TMP/leaf.pem"
key = "$TMP/leaf.key"

[upstream.bench]
servers = ["127.0.0.1:$UPSTREAM_PORT"]
$1
[[route]]
path_prefix = "/"
upstream = "bench"
EOF
}
ferry_conf "" >"$TMP/ferry.toml"
# nginx's root semantics in both: /files/1k.txt is $FILES/files/1k.txt.
ferry_conf "
[[route]]
path_prefix = \"/files\"
static = { root = \"$FILES\" }

[[route]]
path_prefix = \"/json\"
upstream = \"bench\"
compress = true
" >"$TMP/ferry-files.toml"

mkdir -p "$TMP/nginx"
nginx_conf() { # extra main-context lines, extra server-context lines
  cat <<EOF
$1
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $TMP/nginx/nginx.pid;
error_log stderr warn;
# Connection slots beyond the open-files limit: nginx counts an idle
# WebSocket as two connections and starts dropping new ones ("worker_connections
# are not enough, reusing connections") before the descriptors run out.
events { worker_connections $(( NOFILE + 10000 )); }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 1000000;   # default 1000 would re-handshake under load
  upstream bench {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 256;   # idle connections kept, as ferry's pool_max_idle (h2 test: 160 streams in flight)
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$PORT ssl http2;   # nginx 1.22: http2 on the listen line
    ssl_certificate $TMP/leaf.pem;
    ssl_certificate_key $TMP/leaf.key;
    ssl_protocols TLSv1.3;
    # ferry's cipher order (AES-128-GCM first, server's choice), so every
    # proxy does the same crypto; nginx's default follows the client's order.
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    proxy_http_version 1.1;
    proxy_max_temp_file_size 0;   # stream, never spool to disk
    location / {
      proxy_pass http://bench;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
    }
    location /ws {
      proxy_pass http://bench;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
$2
  }
}
EOF
}
nginx_conf "" "" >"$TMP/nginx.conf"
# Debian's brotli filter for nginx (package libnginx-mod-http-brotli-filter), if installed.
NGINX_BROTLI_SO=/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so
NGINX_BROTLI=0
NGINX_BROTLI_MAIN=
NGINX_BROTLI_LOC=
if has nginx && [[ -f $NGINX_BROTLI_SO ]]; then
  NGINX_BROTLI=1
  NGINX_BROTLI_MAIN="load_module $NGINX_BROTLI_SO;"
  NGINX_BROTLI_LOC="brotli on; brotli_comp_level $BROTLI_LEVEL; brotli_window 1m; brotli_types application/json;"
fi
# Files: root + try_files as a frontend's nginx serves them, with the two
# headers ferry adds to every file (nosniff, its default Cache-Control).
# Compression: gzip (and brotli) of the proxied JSON at ferry's levels.
nginx_conf "$NGINX_BROTLI_MAIN" "
    location /files/ {
      root $FILES;
      try_files \$uri =404;
      include /etc/nginx/mime.types;
      default_type application/octet-stream;
      charset utf-8;
      sendfile on;
      gzip_static on;
      add_header X-Content-Type-Options nosniff;
      add_header Cache-Control \"public, max-age=300, must-revalidate\";
    }
    location /json/ {
      proxy_pass http://bench;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      gzip on;
      gzip_types application/json;
      gzip_comp_level $GZIP_LEVEL;
      gzip_proxied any;
      gzip_vary on;
      $NGINX_BROTLI_LOC
    }" >"$TMP/nginx-files.conf"

haproxy_conf() { # extra backend lines
  cat <<EOF
global
  nbthread 1
  maxconn $PROXY_MAXCONN

defaults
  mode http
  maxconn $PROXY_MAXCONN
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 75s
  timeout tunnel 1h
  option forwardfor
  http-reuse always

frontend fe
  bind 127.0.0.1:$PORT ssl crt $TMP/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3 ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend be

backend be
  server up 127.0.0.1:$UPSTREAM_PORT
$1
EOF
}
haproxy_conf "" >"$TMP/haproxy.cfg"
# HAProxy serves no files; its compression is gzip by libslz (no levels, no brotli).
haproxy_conf "  compression algo gzip
  compression type application/json" >"$TMP/haproxy-files.cfg"

# The files: 1 KiB of text and 1 MiB of binary, under $FILES/files/.
mkdir -m 755 -p "$FILES/files"
head -c 1024 /dev/urandom | base64 -w 64 | head -c 1023 >"$FILES/files/1k.txt"
echo >>"$FILES/files/1k.txt"
head -c 1048576 /dev/urandom >"$FILES/files/1m.bin"
chmod 644 "$FILES/files/1k.txt" "$FILES/files/1m.bin"

proxy_cmd() { # name [variant: "" or "-files"]; sets CMD
  local v=${2:-}
  case $1 in
    ferry) CMD=(env FERRY_LOG=warn "$FERRY_BIN" -c "$TMP/ferry$v.toml") ;;
    nginx) CMD=(nginx -e stderr -p "$TMP/nginx/" -c "$TMP/nginx$v.conf" -g "daemon off;") ;;
    haproxy) CMD=(haproxy -db -f "$TMP/haproxy$v.cfg") ;;
  esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

URL=https://127.0.0.1:$PORT
TLSARGS=(--pin "$TMP/leaf.pem" --sni localhost)

start_proxy() { # name logfile [variant]; sets PROXY_PID; fails if not serving within 10 s
  local name=$1 logf=$2 i
  for i in $(seq 1 100); do port_open "$PORT" || break; sleep 0.1; done
  proxy_cmd "$name" "${3:-}"
  taskset -c "$PROXY_CPU" "${CMD[@]}" >>"$logf" 2>&1 </dev/null &
  PROXY_PID=$!
  "$CLIENT" probe --url "$URL/small" "${TLSARGS[@]}" --timeout 10 >/dev/null 2>&1
}

stop_proxy() {
  kill_tree "$PROXY_PID"
  PROXY_PID=
}

start_upstream() {
  taskset -c "$LOAD_CPU" "$UPSTREAM" --addr "127.0.0.1:$UPSTREAM_PORT" >>"$RAW/upstream.log" 2>&1 </dev/null &
  UPSTREAM_PID=$!
  local i
  for i in $(seq 1 100); do port_open "$UPSTREAM_PORT" && return 0; sleep 0.05; done
  echo "upstream did not start; see $RAW/upstream.log" >&2
  exit 1
}

# ---------------------------------------------------------------- measurement
proc_ticks() { # utime+stime of the given pids, in ticks
  local t=0 p s
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    t=$(( t + ${12} + ${13} ))
  done
  echo "$t"
}

cpu_busy_total() { # "busy total busy-in-processes" ticks of one CPU from /proc/stat
  # busy-in-processes leaves out irq and softirq time, which the kernel does
  # not charge to any process (loopback traffic is largely softirq work).
  awk -v c="cpu$1" '$1==c { t=0; for (i=2;i<=NF;i++) t+=$i; print t-$5-$6, t, $2+$3+$4+$9 }' /proc/stat
}

log_errors() { # new error lines in a proxy log since byte offset: "N lines, first: ..."
  local name=$1 logf=$2 off=$3 pat n first
  [[ -f $logf ]] || return 0
  case $name in
    ferry) pat=' (WARN|ERROR) ' ;;
    nginx) pat='\[(warn|error|crit|alert|emerg)\]' ;;
    haproxy) pat='\[(WARNING|ALERT)\]' ;;
  esac
  n=$(tail -c +"$((off + 1))" "$logf" | grep -cE "$pat" || true)
  if (( n > 0 )); then
    # the most frequent messages, without timestamps
    first=$(tail -c +"$((off + 1))" "$logf" | grep -E "$pat" | cut -c1-300 \
      | sed -E 's/^[0-9]{4}-[0-9-]+T[0-9:.]+Z +//; s/^\[[A-Z]+\] +\([0-9]+\) *: *//; s/ [a-z_.]+=.*//' \
      | sort | uniq -c | sort -rn | head -n 3 | sed -E 's/^ *([0-9]+) /\1× /' | paste -sd';' | sed 's/;/; /g')
    echo "$n warning/error lines: $first"
  fi
}

# run_load SECONDS OUTFILE cmd... : cmd on LOAD_CPU with a time limit; sets RC.
# In the background and waited for, so that a signal stops the script at once.
run_load() {
  local limit=$1 outf=$2
  shift 2
  RC=0
  timeout -k 5 "$limit" taskset -c "$LOAD_CPU" "$@" >"$outf" 2>&1 </dev/null &
  CHILD_PID=$!
  wait "$CHILD_PID" || RC=$?
  CHILD_PID=
}

# measure TEST PROXY ROUND KIND LOGFILE cmd... : run cmd on LOAD_CPU, record it.
# Throughput tests are repeated (up to ATTEMPTS runs) while other processes
# took more than NOISE_MAX of the proxy's CPU.
measure() {
  local test=$1 proxy=$2 round=$3 kind=$4 logf=$5
  shift 5
  local out=$RAW/r$round-$test-$proxy.out pids off attempt=1 retry=no
  case $test in startup|ws_idle) ;; *) retry=yes ;; esac
  [[ -e $out ]] && out=$RAW/r$round-$test-$proxy-$(date +%s%N).out
  pids=$(tree_pids "$PROXY_PID")
  local c0 l0 p0 t0 c1 l1 p1 t1 alive wall cpu cpu0 cpu1 noise
  while :; do
    off=$(stat -c %s "$logf" 2>/dev/null || echo 0)
    # shellcheck disable=SC2086
    c0=$(proc_ticks $pids); l0=$(cpu_busy_total "$LOAD_CPU"); p0=$(cpu_busy_total "$PROXY_CPU"); t0=$(date +%s.%N)
    run_load "$((DURATION + 180))" "$out" "$@"
    # shellcheck disable=SC2086
    c1=$(proc_ticks $pids); l1=$(cpu_busy_total "$LOAD_CPU"); p1=$(cpu_busy_total "$PROXY_CPU"); t1=$(date +%s.%N)
    alive=yes
    [[ -z $PROXY_PID || -d /proc/$PROXY_PID ]] || alive=no
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / hz }')
    cpu0=$(awk -v a="$l0" -v b="$l1" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.3f", (d > 0 ? (y[1] - x[1]) / d : 0) }')
    cpu1=$(awk -v a="$p0" -v b="$p1" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.3f", (d > 0 ? (y[1] - x[1]) / d : 0) }')
    # other processes on the proxy's CPU: its process time minus the proxy's
    noise=$(awk -v a="$p0" -v b="$p1" -v c="$cpu" -v hz="$CLK_TCK" 'BEGIN { split(a, x, " "); split(b, y, " ");
      d = y[2] - x[2]; n = d > 0 ? ((y[3] - x[3]) - c * hz) / d : 0; printf "%.3f", (n > 0 ? n : 0) }')
    if [[ $retry == yes && $alive == yes ]] && (( attempt < ATTEMPTS )) \
      && awk -v n="$noise" -v m="$NOISE_MAX" 'BEGIN { exit !(n > m) }'; then
      log "  $test $proxy: other processes took ${noise} of CPU $PROXY_CPU; repeating"
      attempt=$((attempt + 1))
      continue
    fi
    break
  done
  python3 "$BENCH/report.py" record --jsonl "$JSONL" --test "$test" --proxy "$proxy" --round "$round" \
    --kind "$kind" --out "$out" --rc "$RC" --wall "$wall" --proxy-cpu "$cpu" --cpu0 "$cpu0" --cpu1 "$cpu1" \
    --noise "$noise" --attempts "$attempt" \
    --proxy-alive "$alive" --log-errors "$(log_errors "$proxy" "$logf" "$off")"
}

record_failure() { # test proxy round message
  local out=$RAW/r$3-$1-$2.out
  printf '{"ok": false, "error": "failed: %s"}\n' "$4" >"$out"
  python3 "$BENCH/report.py" record --jsonl "$JSONL" --test "$1" --proxy "$2" --round "$3" --kind json --out "$out"
}

warm() { run_load "$((WARMUP + 60))" /dev/null "$@"; }

run_test() { # test proxy round
  local test=$1 proxy=$2 round=$3 logf=$RAW/r$3-$1-$2.log
  if [[ $test == startup ]]; then
    local rep
    proxy_cmd "$proxy"
    for rep in $(seq 1 "$STARTUP_REPS"); do
      for i in $(seq 1 100); do port_open "$PORT" || break; sleep 0.1; done
      PROXY_PID=
      measure startup "$proxy" "$round" json "$logf" \
        "$CLIENT" startup --url "$URL/small" "${TLSARGS[@]}" --timeout 10 --settle-ms 1000 -- \
        taskset -c "$PROXY_CPU" "${CMD[@]}"
    done
    return
  fi
  local variant=
  case $test in
    static_small|static_large)
      if [[ $proxy == haproxy ]]; then
        record_failure "$test" "$proxy" "$round" "HAProxy does not serve files"
        return
      fi
      variant=-files ;;
    compress) variant=-files ;;
  esac
  if ! start_proxy "$proxy" "$logf" "$variant"; then
    record_failure "$test" "$proxy" "$round" "proxy did not start: $(tail -n1 "$logf" | cut -c1-200)"
    stop_proxy
    return
  fi
  local ws=wss://127.0.0.1:$PORT/ws
  case $test in
    h1)
      warm wrk -t1 -c64 -d"${WARMUP}s" "$URL/small"
      measure h1 "$proxy" "$round" wrk "$logf" wrk -t1 -c64 -d"${DURATION}s" --latency "$URL/small" ;;
    h2)
      warm h2load -t1 -c16 -m10 -D "$WARMUP" "$URL/small"
      measure h2 "$proxy" "$round" h2load "$logf" h2load -t1 -c16 -m10 -D "$DURATION" "$URL/small" ;;
    tls_full)
      measure tls_full "$proxy" "$round" json "$logf" \
        "$CLIENT" conn --url "$URL/small" "${TLSARGS[@]}" --concurrency 32 --duration "$DURATION" ;;
    tls_resumed)
      measure tls_resumed "$proxy" "$round" json "$logf" \
        "$CLIENT" conn --url "$URL/small" "${TLSARGS[@]}" --concurrency 32 --duration "$DURATION" --resume ;;
    bulk)
      warm wrk -t1 -c8 -d"${WARMUP}s" "$URL/1m"
      measure bulk "$proxy" "$round" wrk "$logf" wrk -t1 -c8 -d"${DURATION}s" "$URL/1m" ;;
    ws_echo)
      warm "$CLIENT" ws-echo --url "$ws" "${TLSARGS[@]}" --connections 64 --size 128 --duration "$WARMUP"
      measure ws_echo "$proxy" "$round" json "$logf" \
        "$CLIENT" ws-echo --url "$ws" "${TLSARGS[@]}" --connections 64 --size 128 --duration "$DURATION" ;;
    ws_echo_h2)
      warm "$CLIENT" ws-echo --h2 --url "$ws" "${TLSARGS[@]}" --connections 64 --size 128 --duration "$WARMUP"
      measure ws_echo_h2 "$proxy" "$round" json "$logf" \
        "$CLIENT" ws-echo --h2 --per-connection 16 --url "$ws" "${TLSARGS[@]}" --connections 64 --size 128 --duration "$DURATION" ;;
    fixed_rate)
      measure fixed_rate "$proxy" "$round" h2load "$logf" \
        h2load --h1 -t1 -c16 -m1 --rps "$(( FIXED_RPS / 16 ))" -D "$DURATION" "$URL/small" ;;
    static_small)
      warm wrk -t1 -c64 -d"${WARMUP}s" "$URL/files/1k.txt"
      measure static_small "$proxy" "$round" wrk "$logf" wrk -t1 -c64 -d"${DURATION}s" --latency "$URL/files/1k.txt" ;;
    static_large)
      warm wrk -t1 -c8 -d"${WARMUP}s" "$URL/files/1m.bin"
      measure static_large "$proxy" "$round" wrk "$logf" wrk -t1 -c8 -d"${DURATION}s" "$URL/files/1m.bin" ;;
    compress)
      # proxy CPU per compressed response at a fixed offered rate, as in test 8
      local enc
      for enc in gzip br; do
        if [[ $enc == br && $proxy == haproxy ]]; then
          record_failure compress_br "$proxy" "$round" "HAProxy 2.6 has no brotli"
        elif [[ $enc == br && $proxy == nginx && $NGINX_BROTLI == 0 ]]; then
          record_failure compress_br "$proxy" "$round" "no brotli module in this nginx"
        else
          measure "compress_$enc" "$proxy" "$round" h2load "$logf" \
            h2load --h1 -t1 -c4 -m1 --rps "$(( COMPRESS_RPS / 4 ))" -D "$DURATION" \
            -H "Accept-Encoding: $enc" "$URL/json/100k"
        fi
      done ;;
    ws_idle)
      local pids
      pids=$(tree_pids "$PROXY_PID" | paste -sd,)
      measure ws_idle "$proxy" "$round" json "$logf" \
        "$CLIENT" ws-idle --url "$ws" "${TLSARGS[@]}" --count "$IDLE_SOCKETS" --concurrency 128 \
        --pids "$pids" --settle 2 --timeout 120 ;;
    *) echo "unknown test $test" >&2; exit 2 ;;
  esac
  stop_proxy
}

# ---------------------------------------------------------------- run
for p in $PORT $UPSTREAM_PORT; do
  if port_open "$p"; then echo "port $p is already in use (set PORT / UPSTREAM_PORT)" >&2; exit 1; fi
done
start_upstream
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

# What each proxy forwards (checked once; kept with the raw results).
for p in "${PROXIES[@]}"; do
  if start_proxy "$p" "$RAW/headers-$p.log"; then
    "$CLIENT" probe --url "$URL/headers" "${TLSARGS[@]}" --print >/dev/null 2>"$RAW/headers-$p.txt" || true
    h2load -n1 -c1 "$URL/small" 2>&1 | grep -E "TLS Protocol|Cipher|Server Temp Key|Application protocol|status codes" >>"$RAW/headers-$p.txt" || true
  else
    echo "did not start" >"$RAW/headers-$p.txt"
  fi
  stop_proxy
done
# What the file and compression routes answer (status, headers, body size), once.
case " $TESTS " in
  *" static_small "*|*" static_large "*|*" compress "*)
    for p in "${PROXIES[@]}"; do
      if start_proxy "$p" "$RAW/files-$p.log" -files; then
        urls=("/json/100k gzip" "/json/100k br")
        [[ $p == haproxy ]] || urls=("/files/1k.txt" "/files/1m.bin" "${urls[@]}")
        for u in "${urls[@]}"; do
          # shellcheck disable=SC2086
          set -- $u
          echo "== GET $1${2:+ (Accept-Encoding: $2)}"
          curl -s --http1.1 --max-time 10 --cacert "$TMP/ca.pem" --resolve "localhost:$PORT:127.0.0.1" \
            ${2:+-H "Accept-Encoding: $2"} -o /dev/null -D - -w 'body bytes: %{size_download}\n' \
            "https://localhost:$PORT$1" | tr -d '\r' || true
        done >"$RAW/files-$p.txt" 2>&1
      else
        echo "did not start" >"$RAW/files-$p.txt"
      fi
      stop_proxy
    done ;;
esac

log "proxies: ${PROXIES[*]}; rounds: $ROUNDS; ${DURATION}s per test; tests: $TESTS"
n=${#PROXIES[@]}
for round in $(seq 1 "$ROUNDS"); do
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${PROXIES[$(( (i + round - 1) % n ))]}"); done
  log "round $round/$ROUNDS: ${order[*]}"
  for test in $TESTS; do
    if [[ -z $UPSTREAM_PID || ! -d /proc/$UPSTREAM_PID ]]; then
      log "upstream died; restarting (see $RAW/upstream.log)"
      start_upstream
    fi
    for proxy in "${order[@]}"; do
      run_test "$test" "$proxy" "$round"
    done
  done
done
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
ver() { "$@" 2>&1 | head -n1 || true; }
if [[ -n ${FERRY_REV:-} ]]; then
  # with SKIP_BUILD=1, the revision that was last built there
  FERRY_COMMIT=$(cat "$REPO/target/bench-rev/built-rev" 2>/dev/null || echo "$FERRY_REV_SHORT")
  FERRY_DIRTY=0
else
  FERRY_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  FERRY_DIRTY=$([[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo 1 || echo 0)
fi
export COMPRESS_RPS GZIP_LEVEL BROTLI_LEVEL NGINX_BROTLI
export TS ROUNDS DURATION WARMUP IDLE_SOCKETS FIXED_RPS PROXY_CPU LOAD_CPU NOTE NOISE_MAX ATTEMPTS FERRY_COMMIT FERRY_DIRTY \
  LOADAVG_START LOADAVG_END RAW
export PROXIES_STR="${PROXIES[*]}"
export V_NGINX V_HAPROXY V_FERRY V_WRK V_H2LOAD V_OPENSSL V_RUSTC
V_NGINX=$(has nginx && ver nginx -v | sed 's/^nginx version: //' || echo -)
V_HAPROXY=$(has haproxy && ver haproxy -v | sed -E 's/^HAProxy version ([^ ]+).*/\1/' || echo -)
V_FERRY=$(has ferry && ver "$FERRY_BIN" --version || echo -)
V_H2LOAD=$(ver h2load --version)
V_WRK=$(ver wrk --version | sed -E 's/ Copyright.*//')
V_OPENSSL=$(ver openssl version | sed -E 's/ \(Library.*//')
V_RUSTC=$(ver rustc --version)
ELAPSED=$(( $(date +%s) - START_TIME ))
export ELAPSED
python3 - "$RAW/meta.json" <<'EOF'
import json, os, platform, sys
e = os.environ
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
headers = {}
for p in e["PROXIES_STR"].split():
    try:
        lines = open(os.path.join(e["RAW"], "headers-%s.txt" % p)).read().splitlines()
    except OSError:
        lines = []
    headers[p] = [l for l in lines if l.lower().startswith(("x-", "host:", "via:", "forwarded:", "get ", "application protocol", "status codes"))]
meta = {
    "date": e["TS"], "ferry_commit": e["FERRY_COMMIT"], "ferry_dirty": e["FERRY_DIRTY"] == "1",
    "note": e.get("NOTE", ""), "proxies": e["PROXIES_STR"].split(),
    "rounds": int(e["ROUNDS"]), "duration": e["DURATION"], "warmup": e["WARMUP"],
    "idle_sockets": int(e["IDLE_SOCKETS"]), "fixed_rps": int(e["FIXED_RPS"]),
    "compress_rps": int(e["COMPRESS_RPS"]), "nginx_gzip_level": int(e["GZIP_LEVEL"]),
    "nginx_brotli_level": int(e["BROTLI_LEVEL"]) if e["NGINX_BROTLI"] == "1" else None,
    "noise_max": e["NOISE_MAX"], "attempts": int(e["ATTEMPTS"]),
    "proxy_cpu": e["PROXY_CPU"], "load_cpu": e["LOAD_CPU"],
    "nproc": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
    "loadavg_start": e["LOADAVG_START"], "loadavg_end": e["LOADAVG_END"],
    "elapsed_s": int(e["ELAPSED"]),
    "versions": {k: e.get(v, "-") for k, v in [("nginx", "V_NGINX"), ("haproxy", "V_HAPROXY"), ("ferry", "V_FERRY"),
        ("wrk", "V_WRK"), ("h2load", "V_H2LOAD"), ("openssl", "V_OPENSSL"), ("rustc", "V_RUSTC")]},
    "forwarded_headers_seen_by_upstream": headers,
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
python3 "$BENCH/report.py" summarize --jsonl "$JSONL" --meta "$RAW/meta.json" --out "$RESULTS/$TS" >/dev/null
log "done in ${ELAPSED}s: $RESULTS/$TS.md, $RESULTS/$TS.json (raw output in $RAW)"
cat "$RESULTS/$TS.md"
