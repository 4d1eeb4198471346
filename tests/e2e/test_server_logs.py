"""jq-server's JSON log lines carry job_id, worker_id and the caller's correlation id."""

from __future__ import annotations

import json

from support.payloads import job_payload
from support.processes import ServerFactory
from support.protocol_worker import ProtocolWorker
from support.server_harness import client_for

from jobq.rpc._gen import job_service_pb2 as jpb


async def test_log_lines_carry_job_worker_and_correlation_ids(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_LOGGING_LEVEL": "debug"})
    client = client_for(server.grpc_port)
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"x")),
        metadata=(("x-correlation-id", "corr-77"),),
        timeout=5,
    )
    worker = await ProtocolWorker(client).start()
    [assignment] = await worker.take(1)
    await worker.run([assignment])
    await worker.close()
    await client.channel.close()
    assert server.terminate() == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    for line in lines:
        assert {"timestamp", "level", "service", "message"} <= line.keys()
        assert line["service"] == "jq-server"
    submitted = [line for line in lines if line.get("action") == "job.submitted"]
    assert submitted
    assert submitted[0]["job_id"] == reply.job_id
    assert submitted[0]["correlation_id"] == "corr-77"
    completed = [line for line in lines if line.get("action") == "job.completed"]
    assert completed[0]["job_id"] == reply.job_id
    assert completed[0]["worker_id"] == worker.worker_id
    assert completed[0]["correlation_id"]  # the worker's report had a generated one
    opened = [line for line in lines if line.get("action") == "worker.stream_opened"]
    assert opened[0]["worker_id"] == worker.worker_id
