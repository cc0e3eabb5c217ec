#!/usr/bin/python3
"""asyncpg sessions recorded by capture.sh: its extended-protocol use
(every query prepared, named statements, Describe, binary formats),
executemany, COPY both ways, cursors inside a transaction, savepoints,
errors, a timeout that cancels. Connection from PGMUX_CAPTURE_HOST/PORT/
USER/PASSWORD/DB."""

import asyncio
import io
import os


async def main():
    import asyncpg

    kw = dict(
        host=os.environ["PGMUX_CAPTURE_HOST"],
        port=int(os.environ["PGMUX_CAPTURE_PORT"]),
        user=os.environ["PGMUX_CAPTURE_USER"],
        password=os.environ["PGMUX_CAPTURE_PASSWORD"],
        database=os.environ["PGMUX_CAPTURE_DB"],
        ssl=False,
    )
    conn = await asyncpg.connect(**kw)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS capture_apg (id int PRIMARY KEY, v text, ts timestamptz)")
        await conn.fetch("SELECT $1::int + $2::int AS s, $3::text AS t", 1, 2, "x")
        await conn.fetchrow("SELECT now(), $1::jsonb, $2::bytea", '{"a": [1]}', b"\x00\xff")
        stmt = await conn.prepare("SELECT v FROM capture_apg WHERE id = $1")
        for i in range(3):
            await stmt.fetchval(i)
        await conn.executemany(
            "INSERT INTO capture_apg (id, v) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(i, "r%d" % i) for i in range(15)],
        )
        await conn.copy_records_to_table("capture_apg", records=[(1000 + i, "c", None) for i in range(20)], columns=["id", "v", "ts"])
        buf = io.BytesIO()
        await conn.copy_from_query("SELECT * FROM capture_apg ORDER BY id", output=buf, format="csv")
        async with conn.transaction():
            await conn.execute("UPDATE capture_apg SET v = 'u' WHERE id = 1")
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO capture_apg (id, v) VALUES (1, 'dup')")
            except asyncpg.UniqueViolationError:
                pass
            async for _ in conn.cursor("SELECT id FROM capture_apg", prefetch=5):
                pass
        try:
            await conn.fetch("SELECT * FROM no_such_table_asyncpg")
        except asyncpg.PostgresError:
            pass
        try:
            await conn.fetch("SELECT pg_sleep(3)", timeout=0.3)
        except asyncio.TimeoutError:
            pass
        await conn.execute("SET application_name = 'capture-asyncpg'; SELECT 1; SELECT 2")
        await conn.execute("DELETE FROM capture_apg WHERE id >= 1000")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
