"""Produces OrderPlaced events with confluent-kafka's own AvroSerializer (auto-registering the
schema with TopicRecordNameStrategy) and prints the schema id it used.

usage: produce_avro.py BOOTSTRAP REGISTRY_URL TOPIC SCHEMA_FILE COUNT
"""
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, topic, schema_file, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
with open(schema_file) as f:
    schema_str = f.read()
serializer = AvroSerializer(
    SchemaRegistryClient({"url": registry_url}),
    schema_str,
    conf={"auto.register.schemas": True, "subject.name.strategy": topic_record_subject_name_strategy},
)
producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
failures = []
schema_ids = set()
for i in range(count):
    order = {
        "order_id": f"py-order-{i}",
        "customer_id": f"py-cust-{i % 3}",
        "lines": [{"sku": f"SKU-{i}", "quantity": i + 1, "unit_price_minor": 100 * (i + 1)}],
        "currency": "EUR",
        "total_minor": (i + 1) * 100 * (i + 1),
        "placed_at": 1_795_000_000_000 + i,
    }
    value = serializer(order, SerializationContext(topic, MessageField.VALUE))
    schema_ids.add(int.from_bytes(value[1:5], "big"))
    producer.produce(topic, key=order["order_id"], value=value,
                     on_delivery=lambda err, msg: err and failures.append(str(err)))
producer.flush(30)
if failures:
    raise SystemExit(f"delivery failed: {failures}")
print(json.dumps({"schema_ids": sorted(schema_ids)}))
