"""The yardstick for `make bench`: a bare aiokafka relay that consumes a topic and publishes each
record to another, with no validation and no store (at-least-once: commit after the sends).

    python -m bench.bare_relay BOOTSTRAP SOURCE_TOPIC DEST_TOPIC GROUP
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def relay(bootstrap: str, source: str, dest: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            futures = [
                await producer.send(dest, r.value, key=r.key, headers=list(r.headers))
                for records in batches.values()
                for r in records
            ]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(relay(*sys.argv[1:5]))
