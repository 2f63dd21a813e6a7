#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft) on 127.0.0.1, with no Docker and no download site:
# the broker jars come from Maven Central (cached once), the log dir is formatted with
# Kafka's own storage tool.
#
#   deploy/kafka/kafka.sh fetch     resolve the jars into the cache (once)
#   deploy/kafka/kafka.sh start     fetch if needed, format if needed, start, wait until it answers
#   deploy/kafka/kafka.sh stop      stop the broker this script started
#   deploy/kafka/kafka.sh status    say whether it runs and where
#   deploy/kafka/kafka.sh classpath print the classpath (for Kafka's CLI tools)
#
# Settings (env): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (port+1), KAFKA_STATE_DIR
# (.local/kafka-$KAFKA_PORT under the repo), KAFKA_CACHE_DIR (~/.cache/dcsp/kafka),
# KAFKA_BROKER_PARTITIONS (3: default for auto-created topics), KAFKA_HEAP (512m).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
port=${KAFKA_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
state=${KAFKA_STATE_DIR:-$repo/.local/kafka-$port}
cache=${KAFKA_CACHE_DIR:-$HOME/.cache/dcsp/kafka}/$version
partitions=${KAFKA_BROKER_PARTITIONS:-3}
heap=${KAFKA_HEAP:-512m}

log() { printf '[kafka.sh] %s\n' "$*" >&2; }

fetch() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install -y maven)"; exit 1; }
  command -v java >/dev/null || { log "java not found: install a JRE 17+ (apt-get install -y openjdk-17-jre-headless)"; exit 1; }
  log "resolving Apache Kafka $version from Maven Central into $cache (once)"
  rm -rf "$cache" && mkdir -p "$cache/libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$cache/libs" -DincludeScope=runtime >&2
  touch "$cache/.complete"
}

classpath() { printf '%s/libs/*' "$cache"; }

pid_alive() { [ -f "$state/broker.pid" ] && kill -0 "$(cat "$state/broker.pid")" 2>/dev/null; }

answers() {
  # A TCP connect is not enough: wait for the broker to serve metadata.
  java -cp "$(classpath)" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
}

start() {
  fetch
  if pid_alive; then log "already running (pid $(cat "$state/broker.pid")) on 127.0.0.1:$port"; return 0; fi
  mkdir -p "$state/data" "$state/logs"
  cat > "$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=$partitions
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
PROPS
  if [ ! -f "$state/data/meta.properties" ]; then
    log "formatting KRaft log dir $state/data"
    java -cp "$(classpath)" kafka.tools.StorageTool format \
      -t "$(java -cp "$(classpath)" kafka.tools.StorageTool random-uuid)" \
      -c "$state/server.properties" >"$state/logs/format.log" 2>&1 \
      || { cat "$state/logs/format.log" >&2; exit 1; }
  fi
  log "starting broker on 127.0.0.1:$port (state $state)"
  nohup java -Xms256m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$state/logs" "-Dlog4j2.configurationFile=$here/log4j2.properties" \
    -cp "$(classpath)" kafka.Kafka "$state/server.properties" \
    >"$state/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$state/broker.pid"
  for _ in $(seq 1 120); do
    if answers; then log "ready on 127.0.0.1:$port"; return 0; fi
    if ! pid_alive; then log "broker exited during start-up:"; tail -30 "$state/logs/stdout.log" "$state/logs/server.log" >&2 || true; exit 1; fi
    sleep 0.5
  done
  log "broker did not answer within 60 s; see $state/logs"; exit 1
}

stop() {
  if ! pid_alive; then log "not running"; rm -f "$state/broker.pid"; return 0; fi
  local pid; pid=$(cat "$state/broker.pid")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$state/broker.pid"
  log "stopped"
}

status() {
  if pid_alive && answers; then echo "running on 127.0.0.1:$port (pid $(cat "$state/broker.pid"), state $state)";
  elif pid_alive; then echo "process $(cat "$state/broker.pid") alive but not answering on 127.0.0.1:$port"; exit 1;
  else echo "not running"; exit 3; fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  classpath) fetch; classpath; echo ;;
  *) echo "usage: $0 {fetch|start|stop|status|classpath}" >&2; exit 2 ;;
esac
