#!/bin/bash
# Writes server.properties from KAFKA_* env vars over single-node KRaft defaults, formats the
# log dir once (CLUSTER_ID, or a fixed id for a throwaway broker), then runs the broker.
set -euo pipefail
declare -A props=(
  [node.id]=1
  [process.roles]=broker,controller
  [listeners]=PLAINTEXT://:9092,CONTROLLER://:9093
  [advertised.listeners]=PLAINTEXT://localhost:9092
  [controller.listener.names]=CONTROLLER
  [controller.quorum.voters]=1@localhost:9093
  [inter.broker.listener.name]=PLAINTEXT
  [listener.security.protocol.map]=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  [log.dirs]=/var/lib/kafka/data
  [num.partitions]=3
  [offsets.topic.replication.factor]=1
  [offsets.topic.num.partitions]=3
  [transaction.state.log.replication.factor]=1
  [transaction.state.log.min.isr]=1
  [share.coordinator.state.topic.replication.factor]=1
  [group.initial.rebalance.delay.ms]=0
)
for var in $(compgen -e); do
  case $var in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS) continue ;;
    KAFKA_*)
      name=${var#KAFKA_}
      name=${name,,}
      name=${name//___/-}
      name=${name//__/@}
      name=${name//_/.}
      name=${name//@/_}
      props[$name]=${!var}
      ;;
  esac
done
config=/opt/kafka/config/server.properties
: > "$config"
for key in "${!props[@]}"; do printf '%s=%s\n' "$key" "${props[$key]}" >> "$config"; done
cp="/opt/kafka/libs/*"
if [ ! -f "${props[log.dirs]%%,*}/meta.properties" ]; then
  java -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-4L6g3nShT-eMCtK--X86sw}" -c "$config" >/dev/null
fi
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -Djava.awt.headless=true ${KAFKA_OPTS:-} \
  -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties -cp "$cp" kafka.Kafka "$config"
