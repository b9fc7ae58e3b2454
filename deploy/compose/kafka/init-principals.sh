#!/bin/sh
# The `kafka-principals` job of docker-compose.yml: one SCRAM-SHA-512 principal per service and the
# least ACLs it needs (fleet_core.topics.ACCESS; docs/operations.md, "Kafka ACLs per service
# principal"). Idempotent: credentials are overwritten, existing ACLs are left as they are.
# Runs in the apache/kafka image as the `admin` super user (SASL/PLAIN, the broker's own user).
set -eu

BOOTSTRAP=kafka:9092
BIN=/opt/kafka/bin
ADMIN_CONFIG=$(mktemp)
trap 'rm -f "$ADMIN_CONFIG"' EXIT
cat > "$ADMIN_CONFIG" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
EOF

# principal password
user() {
  "$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --alter \
    --entity-type users --entity-name "$1" --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]"
}

acl() {
  "$BIN/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add --force "$@"
}

# principal topic...: publish (Write, Describe) to each topic
produce() {
  principal=$1
  shift
  for topic in "$@"; do
    acl --allow-principal "User:$principal" --operation Write --operation Describe --topic "$topic"
  done
}

# principal group|- topic...: read each topic (in the consumer group, or without one) and publish
# what fails to its dead-letter twin
consume() {
  principal=$1
  group=$2
  shift 2
  if [ "$group" != "-" ]; then
    acl --allow-principal "User:$principal" --operation Read --group "$group"
  fi
  for topic in "$@"; do
    acl --allow-principal "User:$principal" --operation Read --operation Describe --topic "$topic"
    if [ "$group" != "-" ]; then
      produce "$principal" "$topic.dlq"
    fi
  done
}

user registry "$FLEET_REGISTRY_KAFKA_PASSWORD"
user deployer "$FLEET_DEPLOYER_KAFKA_PASSWORD"
user gateway "$FLEET_GATEWAY_KAFKA_PASSWORD"
user monitor "$FLEET_MONITOR_KAFKA_PASSWORD"
user retrainer "$FLEET_RETRAINER_KAFKA_PASSWORD"

produce registry model.registered dataset.updated version.checked
consume registry registry audit.recorded model.registered version.checked rollout.updated rollout.analysis drift.detected anomaly.detected retrain.completed dataset.updated
produce deployer rollout.updated audit.recorded
consume deployer deployer model.registered version.checked rollout.requested inference.logged rollout.analysis anomaly.detected
produce gateway inference.logged inference.feedback outcome.recorded audit.recorded
consume gateway - rollout.updated
produce monitor rollout.analysis drift.detected anomaly.detected audit.recorded
consume monitor monitor inference.logged inference.feedback model.registered rollout.updated retrain.completed version.checked outcome.recorded
produce retrainer rollout.requested retrain.completed audit.recorded
consume retrainer retrainer drift.detected retrain.requested dataset.updated model.registered

echo "kafka-principals: 5 service principals and their ACLs are in place"
