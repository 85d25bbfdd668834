# Shared by the scripts that start and stop the test servers (Kafka, Redis,
# ClickHouse): one run directory per server holding its pid, port, config, data
# and log, a lock so concurrent starters do not race, and helpers to pick a free
# port and wait until the server answers. Source it, then call `service_init NAME
# RUN_DIR`. Progress goes to stderr; only the address goes to stdout.

service_init() {
  service_name=$1
  run=$2
  mkdir -p "$run"
  # One starter at a time per run directory (test binaries may race to start it).
  exec 9>"$run/lock"
  flock 9
}

log() { echo "$service_name: $*" >&2; }

# Whether something accepts TCP connections on 127.0.0.1:$1.
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether the process recorded in $run/pid is alive.
running() { [[ -f $run/pid ]] && kill -0 "$(cat "$run/pid")" 2>/dev/null; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The port stored in $run/$1, chosen (free) on the first start and kept after,
# so a restarted server comes back where its clients expect it.
stored_port() {
  [[ -f $run/$1 ]] || free_port >"$run/$1"
  cat "$run/$1"
}

# Installs Debian packages "$@" when command $1... is missing: `need_packages
# COMMAND PACKAGE...`. Needs root or sudo, as on CI and fresh machines.
need_packages() {
  local command=$1
  shift
  command -v "$command" >/dev/null && return 0
  [[ -x /usr/sbin/$command ]] && return 0
  log "installing Debian packages: $*"
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the packages' own services from starting: ours run in $run.
  { $sudo apt-get install -y --no-install-recommends "$@" >&2 ||
    { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "$@" >&2; }; } ||
    { log "could not install $*"; exit 1; }
}

# Starts "$@" in its own session (it outlives this script and the test that
# started it), with stdout/stderr appended to $run/server.log, and records its pid.
spawn() {
  setsid nohup "$@" >>"$run/server.log" 2>&1 </dev/null 9>&- &
  echo $! >"$run/pid"
}

# Waits up to $2 seconds (default 60) for port $1 to answer while the server lives.
wait_until_answers() {
  local port=$1 limit=$(( ${2:-60} * 2 ))
  for _ in $(seq 1 "$limit"); do
    if ! running; then
      log "the server exited while starting:"
      tail -30 "$run/server.log" >&2
      exit 1
    fi
    answers "$port" && { log "up on 127.0.0.1:$port"; return 0; }
    sleep 0.5
  done
  log "the server did not answer on port $port within ${2:-60} s:"
  tail -30 "$run/server.log" >&2
  exit 1
}

# Stops the server of $run (SIGTERM, then SIGKILL after 30 s); `--purge` also
# deletes its run directory (port and data). Used by every `stop` script.
stop_service() {
  if running; then
    local pid
    pid=$(cat "$run/pid")
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$run/pid"
  if [[ ${1:-} == --purge ]]; then rm -rf "$run"; fi
}
