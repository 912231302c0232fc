#!/usr/bin/env bash
# Eventline's two commands.
#
#   ./dev.sh up     install what is missing, build, and run the whole system locally
#   ./dev.sh test   install what is missing and run every test
#
# Both say what they are doing. What they may install, once per machine:
#   - Apache Kafka (the jars of org.apache.kafka:kafka_2.13, from Maven Central with Maven, into
#     ~/.cache/eventline/kafka-<version>; a few seconds) and, where missing, Java 17 and Maven
#     from Debian's packages;
#   - test only: PostgreSQL from Debian's packages (started on 127.0.0.1:5432, local connections
#     trusted), cargo-nextest from crates.io (a few minutes; plain `cargo test` if that fails),
#     and a Python venv in .venv with confluent-kafka (the third-party client of the interop tests).
set -euo pipefail
cd "$(dirname "$0")"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' kafka/pom.xml)
KAFKA_HOME_DIR="${EVENTLINE_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/eventline/kafka-$KAFKA_VERSION}"
CONFLUENT_KAFKA_VERSION=2.16.1
NEXTEST_VERSION=0.9.151
PG_URL="${TESTKIT_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { echo "dev.sh: $*" >&2; exit 1; }

apt_updated=
apt_install() {
  command -v apt-get >/dev/null 2>&1 || fail "$* missing and this machine has no apt-get: install it by hand."
  [ "$(id -u)" = 0 ] || fail "$* missing; installing it needs root (apt-get install -y $*)."
  if [ -z "$apt_updated" ]; then
    say "Updating Debian's package lists (once)."
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  say "Installing from Debian's packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

require_cargo() {
  command -v cargo >/dev/null 2>&1 || fail "cargo is not installed: install Rust from your distribution or rustup first."
}

# rustfmt and clippy run in the test command; rustup installs them when the toolchain lacks them.
ensure_lint_tools() {
  if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
    return
  fi
  command -v rustup >/dev/null 2>&1 || fail "cargo fmt and cargo clippy are missing and there is no rustup to install them"
  say "Installing rustfmt and clippy (rustup component add)."
  rustup component add rustfmt clippy
}

java_major() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  "$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

ensure_java() {
  local major
  major=$(java_major || true)
  if [ -z "$major" ] || [ "$major" -lt 17 ]; then
    say "Java 17 or newer is needed for the local Apache Kafka broker (found: ${major:-none})."
    apt_install openjdk-17-jre-headless
    major=$(java_major || true)
    [ -n "$major" ] && [ "$major" -ge 17 ] || fail "Java 17+ still not found; set JAVA_HOME to a JDK 17 or newer."
  fi
  say "Java $major: $(command -v java)"
}

ensure_kafka() {
  ensure_java
  # What was fetched is named by a checksum of the Maven project (pom and launcher source), so a
  # fresh clone reuses the machine's copy and a changed project fetches again.
  local wanted
  wanted=$(cat kafka/pom.xml kafka/src/main/java/eventline/*.java | sha256sum | cut -d' ' -f1)
  if [ -f "$KAFKA_HOME_DIR/libs/eventline-local-kafka.jar" ] && [ "$(cat "$KAFKA_HOME_DIR/.fetched" 2>/dev/null)" = "$wanted" ]; then
    say "Apache Kafka $KAFKA_VERSION: ready in $KAFKA_HOME_DIR"
    return
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  command -v javac >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless
  say "Fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME_DIR (once per machine)."
  rm -rf "$KAFKA_HOME_DIR/libs"
  mkdir -p "$KAFKA_HOME_DIR/libs"
  mvn -q -B -f kafka/pom.xml package dependency:copy-dependencies -DoutputDirectory="$KAFKA_HOME_DIR/libs"
  cp kafka/target/eventline-local-kafka.jar "$KAFKA_HOME_DIR/libs/"
  echo "$wanted" > "$KAFKA_HOME_DIR/.fetched"
  say "Apache Kafka $KAFKA_VERSION: $(ls "$KAFKA_HOME_DIR/libs" | wc -l) jars in $KAFKA_HOME_DIR/libs"
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
    || fail "the Python venv is incomplete: confluent_kafka.schema_registry.avro does not import"
}

# The tests' PostgreSQL: a server at $PG_URL. When none answers, install Debian's (if missing),
# let local TCP connections in without a password, and start it.
ensure_postgres() {
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$PG_URL"; then
    say "PostgreSQL: answering at $PG_URL"
    return
  fi
  [ -n "${TESTKIT_PG_URL:-}" ] && fail "PostgreSQL does not answer at TESTKIT_PG_URL=$TESTKIT_PG_URL."
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    say "PostgreSQL is not installed."
    apt_install postgresql
  fi
  local version conf
  version=$(ls /etc/postgresql | sort -n | tail -n1)
  conf=/etc/postgresql/$version/main
  [ -d "$conf" ] || { say "Creating the PostgreSQL $version cluster."; pg_createcluster "$version" main >/dev/null; }
  if ! grep -q '^# eventline tests' "$conf/pg_hba.conf"; then
    say "PostgreSQL $version: trusting local connections on 127.0.0.1 and ::1 (test machine only)."
    { echo "# eventline tests: local connections need no password"
      echo "host all all 127.0.0.1/32 trust"
      echo "host all all ::1/128 trust"
      cat "$conf/pg_hba.conf"; } > "$conf/pg_hba.conf.new"
    mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf"
    chown postgres:postgres "$conf/pg_hba.conf" 2>/dev/null || true
    # Each test makes databases of its own, and many run at once.
    echo "max_connections = 400" > "$conf/conf.d/eventline-tests.conf"
    pg_ctlcluster --skip-systemctl-redirect "$version" main stop >/dev/null 2>&1 || true
  fi
  say "Starting PostgreSQL $version."
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -d "$PG_URL" && break; sleep 1; done
  pg_isready -q -d "$PG_URL" || fail "PostgreSQL is not reachable at $PG_URL; the tests need it."
  say "PostgreSQL: answering at $PG_URL"
}

ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return 0; fi
  say "cargo-nextest is not installed: building $NEXTEST_VERSION from crates.io (once per machine, a few minutes)."
  if cargo install cargo-nextest --version "$NEXTEST_VERSION" --locked --quiet; then return 0; fi
  say "cargo-nextest could not be installed; falling back to plain cargo test."
  return 1
}

# One Apache Kafka broker for the whole test run, shared by every test that does not need a
# broker of its own; it stops when this script exits (its launcher watches our pipe).
start_shared_kafka() {
  say "Building the test harness's broker starter."
  cargo build --locked --quiet -p eventline-testkit --bin testkit-kafka
  coproc SHARED_KAFKA { exec target/debug/testkit-kafka; }
  local line
  IFS= read -r -t 120 line <&"${SHARED_KAFKA[0]}" || fail "the shared Kafka broker did not start (see above)."
  case "$line" in
    bootstrap=*) export TESTKIT_KAFKA_BOOTSTRAP="${line#bootstrap=}" ;;
    *) fail "the shared Kafka broker said: $line" ;;
  esac
  # Its SASL_SSL listener and the certificates it was made with, then how long it took.
  while IFS= read -r -t 5 line <&"${SHARED_KAFKA[0]}"; do
    case "$line" in
      secure_bootstrap=*) export TESTKIT_KAFKA_SECURE_BOOTSTRAP="${line#secure_bootstrap=}" ;;
      certificates=*) export TESTKIT_KAFKA_CERTIFICATES="${line#certificates=}" ;;
      *) say "$line"; break ;;
    esac
  done
  say "Shared Apache Kafka $KAFKA_VERSION for the tests: $TESTKIT_KAFKA_BOOTSTRAP (SASL_SSL: ${TESTKIT_KAFKA_SECURE_BOOTSTRAP:-none})"
}

cmd_up() {
  require_cargo
  ensure_kafka
  say "Building eventline (release; the first build takes a few minutes)."
  cargo build --release --locked -p eventline-cli
  say "Starting the system: eventline up $*"
  exec target/release/eventline up "$@"
}

cmd_test() {
  require_cargo
  ensure_kafka
  ensure_python
  ensure_postgres
  ensure_lint_tools
  export TESTKIT_PYTHON="$PWD/.venv/bin/python"
  local started=$SECONDS
  say "Checking the formatting (cargo fmt --check)."
  cargo fmt --all --check
  say "Building the workspace and its tests."
  cargo build --workspace --locked --all-targets --quiet
  say "Linting (cargo clippy --all-targets -D warnings)."
  cargo clippy --workspace --locked --all-targets --quiet -- -D warnings
  start_shared_kafka
  if ensure_nextest; then
    say "Running doc tests."
    cargo test --workspace --locked --doc --quiet
    say "Running every test with cargo-nextest (against Apache Kafka; tests that stop a broker start their own)."
    cargo nextest run --workspace --locked --no-fail-fast
  else
    say "Running every test with cargo test (against Apache Kafka; tests that stop a broker start their own)."
    cargo test --workspace --locked --no-fail-fast
  fi
  say "Tests took $((SECONDS - started)) s after the installs."
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  test) shift; cmd_test "$@" ;;
  *) echo "usage: ./dev.sh up [eventline up options] | ./dev.sh test" >&2; exit 2 ;;
esac
