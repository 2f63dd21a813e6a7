#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft) whose clients must use SASL/SCRAM-SHA-512 over TLS
# (SASL_SSL), for the transport-security tests and for trying the services' KAFKA_SECURITY_*
# settings locally. The jars are the ones deploy/kafka/kafka.sh caches; the certificates (a CA
# and a broker certificate for 127.0.0.1/localhost) are made here with openssl; the SCRAM users
# are created when the log dir is formatted (kafka-storage format --add-scram).
#
#   deploy/kafka/secure.sh start    make certificates and users, format, start, wait until it answers
#   deploy/kafka/secure.sh stop     stop the broker this script started
#
# Settings (env): SECURE_KAFKA_PORT (9192), SECURE_KAFKA_CONTROLLER_PORT (port+1),
# SECURE_KAFKA_STATE_DIR (.local/kafka-secure-$port under the repo),
# SECURE_KAFKA_USER / SECURE_KAFKA_PASSWORD (the services' user; dcsp / a random password written
# to $state/client.password), SECURE_KAFKA_ADMIN_PASSWORD (the broker's own user, random).
# Clients: KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512
# KAFKA_SASL_USERNAME=$SECURE_KAFKA_USER KAFKA_SASL_PASSWORD_FILE=$state/client.password
# KAFKA_SSL_CAFILE=$state/tls/ca.crt
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
port=${SECURE_KAFKA_PORT:-9192}
controller_port=${SECURE_KAFKA_CONTROLLER_PORT:-$((port + 1))}
state=${SECURE_KAFKA_STATE_DIR:-$repo/.local/kafka-secure-$port}
user=${SECURE_KAFKA_USER:-dcsp}

log() { printf '[secure.sh] %s\n' "$*" >&2; }
random() { openssl rand -hex 16; }

pid_alive() { [ -f "$state/broker.pid" ] && kill -0 "$(cat "$state/broker.pid")" 2>/dev/null; }

certificates() {
  local tls=$state/tls
  [ -f "$tls/broker.p12" ] && return 0
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=dcsp-test-ca" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/san.ext"
  openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 30 -extfile "$tls/san.ext" -out "$tls/broker.crt" 2>/dev/null
  openssl rand -hex 16 > "$tls/keystore.password"
  openssl pkcs12 -export -in "$tls/broker.crt" -inkey "$tls/broker.key" -certfile "$tls/ca.crt" \
    -name broker -out "$tls/broker.p12" -passout "file:$tls/keystore.password"
  chmod 600 "$tls"/*.key "$tls/keystore.password"
}

start() {
  "$here/kafka.sh" fetch
  local cp; cp=$("$here/kafka.sh" classpath)
  if pid_alive; then log "already running (pid $(cat "$state/broker.pid")) on 127.0.0.1:$port"; return 0; fi
  mkdir -p "$state/data" "$state/logs"
  certificates
  [ -f "$state/client.password" ] || printf '%s' "${SECURE_KAFKA_PASSWORD:-$(random)}" > "$state/client.password"
  [ -f "$state/admin.password" ] || printf '%s' "${SECURE_KAFKA_ADMIN_PASSWORD:-$(random)}" > "$state/admin.password"
  chmod 600 "$state/client.password" "$state/admin.password"
  local admin_password; admin_password=$(cat "$state/admin.password")
  local keystore_password; keystore_password=$(cat "$state/tls/keystore.password")
  cat > "$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=SASL_SSL://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
ssl.keystore.type=PKCS12
ssl.keystore.location=$state/tls/broker.p12
ssl.keystore.password=$keystore_password
ssl.key.password=$keystore_password
ssl.truststore.type=PEM
ssl.truststore.location=$state/tls/ca.crt
ssl.client.auth=none
log.dirs=$state/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
PROPS
  chmod 600 "$state/server.properties"
  if [ ! -f "$state/data/meta.properties" ]; then
    log "formatting KRaft log dir $state/data with SCRAM users admin and $user"
    java -cp "$cp" kafka.tools.StorageTool format \
      -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" -c "$state/server.properties" \
      --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_password]" \
      --add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$state/client.password")]" \
      >"$state/logs/format.log" 2>&1 || { cat "$state/logs/format.log" >&2; exit 1; }
  fi
  log "starting SASL_SSL broker on 127.0.0.1:$port (state $state)"
  nohup java -Xms128m -Xmx384m -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$state/logs" "-Dlog4j2.configurationFile=$here/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$state/server.properties" >"$state/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$state/broker.pid"
  cat > "$state/client.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
ssl.truststore.type=PEM
ssl.truststore.location=$state/tls/ca.crt
PROPS
  chmod 600 "$state/client.properties"
  for _ in $(seq 1 120); do
    if java -cp "$cp" org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$port" \
      --command-config "$state/client.properties" >/dev/null 2>&1; then
      log "ready on 127.0.0.1:$port (SASL_SSL, SCRAM-SHA-512)"; return 0
    fi
    if ! pid_alive; then log "broker exited during start-up:"; tail -30 "$state/logs/stdout.log" >&2 || true; exit 1; fi
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

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 {start|stop}" >&2; exit 2 ;;
esac
