#!/usr/bin/env bash
# Eventline's two commands.
#
#   ./dev.sh up     install what is missing, build, and run the whole system locally
#   ./dev.sh test   install what is missing and run every test
#
# Both say what they are doing. What they may install, once per machine:
#   - the Tansu broker 0.6.0 from crates.io (about 16 minutes on 2 cores),
#   - a Python venv in .venv with confluent-kafka (the third-party client of the interop tests; test only).
# PostgreSQL is expected at 127.0.0.1:5432 for the tests (trust auth; TESTKIT_PG_URL overrides).
set -euo pipefail
cd "$(dirname "$0")"

TANSU_VERSION=0.6.0
CONFLUENT_KAFKA_VERSION=2.16.1

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install Rust from your distribution or rustup first." >&2
    exit 1
  fi
}

ensure_tansu() {
  if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then return; fi
  if command -v tansu >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tansu" ]; then
    say "Tansu broker: found $(command -v tansu || echo "$HOME/.cargo/bin/tansu")"
    return
  fi
  say "Tansu broker $TANSU_VERSION is not installed: building it from crates.io."
  say "This happens once per machine and takes about 16 minutes on 2 cores; the binary goes to ~/.cargo/bin."
  cargo install tansu --version "$TANSU_VERSION" --locked --features libsql,postgres,dynostore
}

ensure_python() {
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import confluent_kafka.schema_registry.avro" 2>/dev/null; then
    say "Python interop venv: ready (.venv)"
    return
  fi
  say "Creating the Python venv for interop tests (.venv: confluent-kafka $CONFLUENT_KAFKA_VERSION with its Avro serializer and schema-registry client)."
  python3 -m venv .venv
  # confluent-kafka 2.16.1 pins certifi>=2026.10.19, newer than the package index serves; the
  # tests only talk to loopback, so install it without that pin and its other requirements as declared.
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
  .venv/bin/pip install --quiet --disable-pip-version-check \
    "attrs>=21.2.0" "cachetools>=5.5.0" certifi "httpx2>=2.0" "authlib>=1.8.0" "fastavro>=1.5.4,<2" requests "avro>=1.11.1,<2"
  .venv/bin/python -c "import confluent_kafka.schema_registry.avro" \
    || { echo "the Python venv is incomplete: confluent_kafka.schema_registry.avro does not import" >&2; exit 1; }
}

ensure_postgres() {
  local url="${TESTKIT_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -d "$url"; then
    say "PostgreSQL does not answer at $url; trying to start the local cluster."
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 30); do pg_isready -q -d "$url" && break; sleep 1; done
    pg_isready -q -d "$url" || { echo "PostgreSQL is not reachable at $url; the tests need it." >&2; exit 1; }
  fi
  say "PostgreSQL: answering at $url"
}

cmd_up() {
  require_cargo
  ensure_tansu
  say "Building eventline (release; the first build takes a few minutes)."
  cargo build --release --locked -p eventline-cli
  say "Starting the system: eventline up $*"
  exec target/release/eventline up "$@"
}

cmd_test() {
  require_cargo
  ensure_tansu
  ensure_python
  ensure_postgres
  export TESTKIT_PYTHON="$PWD/.venv/bin/python"
  if cargo nextest --version >/dev/null 2>&1; then
    say "Running doc tests."
    cargo test --workspace --locked --doc --quiet
    say "Running every test with cargo-nextest (each test starts its own Tansu broker and database)."
    cargo nextest run --workspace --locked --no-fail-fast
  else
    say "cargo-nextest is not installed; running every test with cargo test."
    cargo test --workspace --locked --no-fail-fast
  fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  test) shift; cmd_test "$@" ;;
  *) echo "usage: ./dev.sh up [eventline up options] | ./dev.sh test" >&2; exit 2 ;;
esac
