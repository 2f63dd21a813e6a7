#!/usr/bin/env bash
# A 3-broker Apache Kafka (KRaft) cluster on 127.0.0.1, for fault tests: every node is broker and
# controller (a 3-voter quorum), topics get replication factor 3 and min.insync.replicas=2, so
# losing any one node loses nothing that was acknowledged with acks=all. The jars come from
# deploy/kafka/kafka.sh (same cache); the approach is the same (format with the storage tool, start
# kafka.Kafka), with one state dir per node.
#
#   deploy/kafka/cluster.sh start          format if needed, start every node, wait until all answer
#   deploy/kafka/cluster.sh stop           stop every node
#   deploy/kafka/cluster.sh status         each node: running or not
#   deploy/kafka/cluster.sh bootstrap      print the bootstrap servers
#   deploy/kafka/cluster.sh start-node N   start node N (1..3) and wait until it answers
#   deploy/kafka/cluster.sh stop-node N    stop node N cleanly (SIGTERM)
#   deploy/kafka/cluster.sh kill-node N    SIGKILL node N (a crash: no controlled shutdown)
#   deploy/kafka/cluster.sh pid N          print node N's pid
#
# Settings (env): KAFKA_CLUSTER_PORT (39092: node N listens on port+2(N-1), its controller on the
# port after), KAFKA_CLUSTER_STATE_DIR (.local/kafka-cluster-$KAFKA_CLUSTER_PORT under the repo),
# KAFKA_CACHE_DIR (as kafka.sh), KAFKA_BROKER_PARTITIONS (3), KAFKA_HEAP (384m per node).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
base_port=${KAFKA_CLUSTER_PORT:-39092}
state=${KAFKA_CLUSTER_STATE_DIR:-$repo/.local/kafka-cluster-$base_port}
partitions=${KAFKA_BROKER_PARTITIONS:-3}
heap=${KAFKA_HEAP:-384m}
nodes=(1 2 3)

log() { printf '[cluster.sh] %s\n' "$*" >&2; }

classpath() { "$here/kafka.sh" classpath; }

port_of() { echo $((base_port + 2 * ($1 - 1))); }
controller_port_of() { echo $(($(port_of "$1") + 1)); }
dir_of() { echo "$state/node-$1"; }

bootstrap() {
  local out=() n
  for n in "${nodes[@]}"; do out+=("127.0.0.1:$(port_of "$n")"); done
  (IFS=,; echo "${out[*]}")
}

voters() {
  local out=() n
  for n in "${nodes[@]}"; do out+=("$n@127.0.0.1:$(controller_port_of "$n")"); done
  (IFS=,; echo "${out[*]}")
}

pid_alive() { [ -f "$(dir_of "$1")/broker.pid" ] && kill -0 "$(cat "$(dir_of "$1")/broker.pid")" 2>/dev/null; }

answers() {
  java -cp "$CP" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$(port_of "$1")" >/dev/null 2>&1
}

write_config() {
  local n=$1 dir; dir=$(dir_of "$n")
  mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(port_of "$n"),CONTROLLER://127.0.0.1:$(controller_port_of "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port_of "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=$partitions
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
auto.create.topics.enable=true
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
PROPS
}

format_all() {
  local id n
  id=$(cat "$state/cluster.id" 2>/dev/null || true)
  if [ -z "$id" ]; then
    mkdir -p "$state"
    id=$(java -cp "$CP" kafka.tools.StorageTool random-uuid)
    echo "$id" > "$state/cluster.id"
  fi
  for n in "${nodes[@]}"; do
    write_config "$n"
    if [ ! -f "$(dir_of "$n")/data/meta.properties" ]; then
      log "formatting node $n ($(dir_of "$n")/data)"
      java -cp "$CP" kafka.tools.StorageTool format -t "$id" -c "$(dir_of "$n")/server.properties" \
        >"$(dir_of "$n")/logs/format.log" 2>&1 || { cat "$(dir_of "$n")/logs/format.log" >&2; exit 1; }
    fi
  done
}

launch() {
  local n=$1 dir; dir=$(dir_of "$n")
  if pid_alive "$n"; then log "node $n already running (pid $(cat "$dir/broker.pid"))"; return 0; fi
  write_config "$n"
  log "starting node $n on 127.0.0.1:$(port_of "$n")"
  nohup java -Xms128m "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$dir/logs" "-Dlog4j2.configurationFile=$here/log4j2.properties" \
    -cp "$CP" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/broker.pid"
}

wait_answers() {
  local n=$1
  for _ in $(seq 1 180); do
    if answers "$n"; then log "node $n ready on 127.0.0.1:$(port_of "$n")"; return 0; fi
    if ! pid_alive "$n"; then
      log "node $n exited during start-up:"; tail -30 "$(dir_of "$n")/logs/stdout.log" >&2 || true; exit 1
    fi
    sleep 0.5
  done
  log "node $n did not answer within 90 s; see $(dir_of "$n")/logs"; exit 1
}

stop_node() {
  local n=$1 sig=${2:-TERM} dir pid; dir=$(dir_of "$n")
  if ! pid_alive "$n"; then rm -f "$dir/broker.pid"; return 0; fi
  pid=$(cat "$dir/broker.pid")
  kill "-$sig" "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/broker.pid"
  log "node $n stopped ($sig)"
}

check_node() {
  case "${1:-}" in 1|2|3) ;; *) echo "node must be 1, 2 or 3" >&2; exit 2 ;; esac
}

cmd=${1:-}
case "$cmd" in
  start|start-node|status) CP=$(classpath) ;;
esac

case "$cmd" in
  start)
    format_all
    # All voters must be up for the quorum to elect a leader: launch all, then wait for each.
    for n in "${nodes[@]}"; do launch "$n"; done
    for n in "${nodes[@]}"; do wait_answers "$n"; done
    log "cluster ready: $(bootstrap)" ;;
  stop) for n in "${nodes[@]}"; do stop_node "$n"; done ;;
  status)
    rc=0
    for n in "${nodes[@]}"; do
      if pid_alive "$n" && answers "$n"; then echo "node $n running on 127.0.0.1:$(port_of "$n") (pid $(cat "$(dir_of "$n")/broker.pid"))"
      else echo "node $n not running"; rc=3; fi
    done
    exit $rc ;;
  bootstrap) bootstrap ;;
  start-node) check_node "${2:-}"; format_all; launch "$2"; wait_answers "$2" ;;
  stop-node) check_node "${2:-}"; stop_node "$2" TERM ;;
  kill-node) check_node "${2:-}"; stop_node "$2" KILL ;;
  pid) check_node "${2:-}"; cat "$(dir_of "$2")/broker.pid" ;;
  *) echo "usage: $0 {start|stop|status|bootstrap|start-node N|stop-node N|kill-node N|pid N}" >&2; exit 2 ;;
esac
