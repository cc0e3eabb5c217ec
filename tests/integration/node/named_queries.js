// node-postgres named queries ({name, text, values}) from several clients at
// once, for tests/integration/test_prepared.py. node-postgres sends Parse
// with the name the first time a client uses it and only Bind/Execute after
// that, so through a transaction pooler every later use may land on a server
// connection where the name was never prepared.
//
// Connection settings come from the usual libpq variables (PGHOST, PGPORT,
// PGUSER, PGPASSWORD, PGDATABASE); CLIENTS and ITERATIONS size the run.
// Prints one JSON object on stdout:
//   {"clients", "iterations", "ok", "failures": [...], "pids", "prepared": [...]}
// and exits 0 when every check passed, 1 otherwise.

'use strict';

const { Client } = require('pg');

const CLIENTS = parseInt(process.env.CLIENTS || '8', 10);
const ITERATIONS = parseInt(process.env.ITERATIONS || '40', 10);

const failures = [];
const pids = new Set();
let ok = 0;

function check(k, what, got, want) {
  if (JSON.stringify(got) === JSON.stringify(want)) {
    ok += 1;
  } else if (failures.length < 50) {
    failures.push({ client: k, what, got, want });
  }
}

async function runClient(k) {
  const client = new Client({ connectionTimeoutMillis: 10000, statement_timeout: 20000 });
  await client.connect();
  try {
    for (let i = 0; i < ITERATIONS; i++) {
      // Same name, same text in every client.
      let r = await client.query({ name: 'sum', text: 'SELECT $1::int + $2::int AS s', values: [i, k] });
      check(k, 'sum', r.rows, [{ s: i + k }]);

      // Same name in every client, but a different text in each one.
      r = await client.query({ name: 'tag', text: `SELECT $1::text || ':${k}' AS t`, values: [`c${k}-${i}`] });
      check(k, 'tag', r.rows, [{ t: `c${k}-${i}:${k}` }]);

      // A name of this client only.
      r = await client.query({
        name: `own_${k}`,
        text: 'SELECT $1::int * 3 AS m, pg_backend_pid() AS pid',
        values: [i],
      });
      check(k, 'own', r.rows.map((row) => row.m), [3 * i]);
      if (r.rows.length === 1) pids.add(r.rows[0].pid);

      // Several rows and two parameters of different types.
      r = await client.query({
        name: 'series',
        text: 'SELECT g, $2::text AS label FROM generate_series(1, $1::int) g ORDER BY g',
        values: [1 + (i % 4), `L${k}`],
      });
      const want = [];
      for (let g = 1; g <= 1 + (i % 4); g++) want.push({ g, label: `L${k}` });
      check(k, 'series', r.rows, want);

      if (i % 5 === 0) {
        // Named statements inside an explicit transaction.
        await client.query('BEGIN');
        r = await client.query({ name: 'sum', text: 'SELECT $1::int + $2::int AS s', values: [100, k] });
        check(k, 'sum in transaction', r.rows, [{ s: 100 + k }]);
        r = await client.query({ name: 'tag', text: `SELECT $1::text || ':${k}' AS t`, values: ['tx'] });
        check(k, 'tag in transaction', r.rows, [{ t: `tx:${k}` }]);
        await client.query('COMMIT');
      }

      if (i % 8 === 0) {
        // A run-time error in a named statement does not remove it.
        r = await client.query({ name: 'div', text: 'SELECT 12 / $1::int AS d', values: [2] });
        check(k, 'div', r.rows, [{ d: 6 }]);
        let code = null;
        try {
          await client.query({ name: 'div', text: 'SELECT 12 / $1::int AS d', values: [0] });
        } catch (e) {
          code = e.code;
        }
        check(k, 'div by zero sqlstate', code, '22012');
        r = await client.query({ name: 'div', text: 'SELECT 12 / $1::int AS d', values: [4] });
        check(k, 'div after error', r.rows, [{ d: 3 }]);
      }
    }
    return null;
  } finally {
    if (k === 0) {
      // What the server this client is on now has prepared (names only).
      const r = await client.query({
        name: 'list_prepared',
        text: 'SELECT name FROM pg_prepared_statements ORDER BY name',
      });
      module.exports.prepared = r.rows.map((row) => row.name);
    }
    await client.end();
  }
}

async function main() {
  const results = await Promise.allSettled(
    Array.from({ length: CLIENTS }, (_, k) => runClient(k)),
  );
  results.forEach((res, k) => {
    if (res.status === 'rejected') {
      failures.push({
        client: k,
        what: 'exception',
        got: String(res.reason && (res.reason.stack || res.reason)),
        code: res.reason && res.reason.code,
      });
    }
  });
  const out = {
    clients: CLIENTS,
    iterations: ITERATIONS,
    ok,
    failures,
    pids: pids.size,
    prepared: module.exports.prepared || null,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(failures.length === 0 ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e.stack || e) }) + '\n');
  process.exit(2);
});
