"""Reads N messages from a topic with confluent-kafka's own AvroDeserializer and prints them as JSON.

usage: consume_avro.py BOOTSTRAP REGISTRY_URL TOPIC PARTITIONS COUNT
"""
import datetime
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, topic, partitions, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "python-interop", "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])

records = []
deadline = time.time() + 60
while len(records) < count and time.time() < deadline:
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        raise SystemExit(f"consume error: {message.error()}")
    value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE, message.headers()))
    records.append({
        "key": message.key().decode(),
        "partition": message.partition(),
        "offset": message.offset(),
        "schema_id": int.from_bytes(message.value()[1:5], "big"),
        "headers": {k: v.decode() for k, v in (message.headers() or [])},
        "value": value,
    })
consumer.close()


def plain(o):
    if isinstance(o, datetime.datetime):
        return int(o.timestamp() * 1000)
    raise TypeError(f"cannot print {type(o)}")


print(json.dumps(records, default=plain))
