"""Where job lifecycle events go besides PostgreSQL: Kafka, when enabled (SPEC §12).

`topics` names the topics; `message` is what a producer sends; `kafka_producer` holds the
client settings and the producer that reports, per message, whether the broker acknowledged it
(the one module that imports the Kafka client). What is published, and when, is the
server's business (jobq.server.event_publisher reads the event outbox). Kafka is never on the
critical path: an event waits in PostgreSQL until the broker has it.

`tansu` finds the Kafka-protocol broker that `make cluster`, the tests and the bench run on
loopback; jq-server never imports it.
"""
