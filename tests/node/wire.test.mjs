// Wire compatibility: a stock gRPC client (@grpc/grpc-js, the reference
// Node.js implementation) talks to ink-coordinator over mutual TLS using
// nothing but the .proto files. If this passes, the coordinator speaks real
// gRPC (HTTP/2 framing, status trailers, TLS client auth), not something
// that only our own C client understands.
//
//   cd tests/node && npm ci && node --test wire.test.mjs
//
// INK_COORDINATOR overrides the binary (default: ../../build/coordinator/ink-coordinator).
// The coordinator's log is printed when a test fails, or always with
// INK_WIRE_VERBOSE=1.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const execFileP = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const COORDINATOR = path.resolve(
  HERE,
  process.env.INK_COORDINATOR || '../../build/coordinator/ink-coordinator',
);

const CALL_TIMEOUT_MS = 5000;
const STARTUP_TIMEOUT_MS = 10000;
const SHUTDOWN_TIMEOUT_MS = 10000;

const deadline = (ms = CALL_TIMEOUT_MS) => new Date(Date.now() + ms);

// ------------------------------------------------------------------ helpers

async function run(...args) {
  try {
    return await execFileP(COORDINATOR, args, { timeout: 15000 });
  } catch (e) {
    throw new Error(
      `ink-coordinator ${args.join(' ')} failed (code ${e.code}, signal ${e.signal}):\n` +
        `${e.stdout ?? ''}${e.stderr ?? ''}`,
    );
  }
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

async function waitFor(what, cond, timeoutMs, intervalMs = 25) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() >= end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// Promise around a unary call; resolves {err, res} so tests can assert on
// either without try/catch.
function unary(client, method, req, ms = CALL_TIMEOUT_MS) {
  return new Promise((resolve) => {
    client[method](req, { deadline: deadline(ms) }, (err, res) => resolve({ err, res }));
  });
}

function rawUnary(client, methodPath, bytes, ms = CALL_TIMEOUT_MS) {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      methodPath,
      (x) => x, // request serializer: Buffer passthrough
      (x) => x, // response deserializer: raw bytes back
      bytes,
      new grpc.Metadata(),
      { deadline: deadline(ms) },
      (err, res) => resolve({ err, res }),
    );
  });
}

function assertStatus(err, code, detailsRe) {
  assert.ok(err, `expected gRPC status ${grpc.status[code]}, got success`);
  assert.equal(
    err.code,
    code,
    `expected ${grpc.status[code]}, got ${grpc.status[err.code]} (${err.details})`,
  );
  if (detailsRe) assert.match(err.details, detailsRe);
}

const registerRequest = (overrides = {}) => ({
  nodeId: 'wire-test',
  hostname: 'wire-test-host',
  addresses: ['127.0.0.1'],
  agentEndpoint: '127.0.0.1:1',
  capacity: { cpus: 2, memoryBytes: '1073741824', diskBytes: '1' },
  runscVersion: 'test',
  features: { kernelRelease: 'x', netns: true },
  agentVersion: 'wire',
  instanceId: 'inst-1',
  ...overrides,
});

// ------------------------------------------------------------------ fixture

describe('ink-coordinator speaks gRPC to @grpc/grpc-js', () => {
  let dir; // temp dir, removed in after()
  let child; // the coordinator
  let childExit; // promise of {code, signal}
  let stderr = '';
  let addr;
  let failed = false;
  let ink; // loaded package ink.v1
  const clients = [];
  const streams = []; // cancelled in after() so no call keeps the process alive

  const creds = async (caDir, certDir, name) =>
    grpc.credentials.createSsl(
      await fs.readFile(path.join(caDir, 'ca.crt')),
      await fs.readFile(path.join(certDir, `${name}.key`)),
      await fs.readFile(path.join(certDir, `${name}.crt`)),
    );
  const channelOptions = { 'grpc.ssl_target_name_override': 'ink-coordinator' };
  const track = (c) => (clients.push(c), c);

  let nodeClient; // NodeService as wire-test, real CA

  before(async () => {
    try {
      await setUp();
    } catch (e) {
      failed = true;
      throw e;
    }
  });

  async function setUp() {
    await fs.access(COORDINATOR).catch(() => {
      throw new Error(`${COORDINATOR} not found: build it or set INK_COORDINATOR`);
    });
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ink-wire-'));
    const pki = path.join(dir, 'pki');
    const foreign = path.join(dir, 'foreign');

    await run(`--pki-dir=${pki}`, 'pki', 'init');
    await run(`--pki-dir=${pki}`, 'pki', 'issue', 'wire-test');
    await run(`--pki-dir=${pki}`, 'pki', 'issue', 'other-node');
    await run(`--pki-dir=${foreign}`, 'pki', 'init');
    await run(`--pki-dir=${foreign}`, 'pki', 'issue', 'wire-test');

    const port = await freePort();
    addr = `127.0.0.1:${port}`;
    // Options go before the command: `ink-coordinator [--OPTION=VALUE ...] serve`.
    child = spawn(
      COORDINATOR,
      [
        `--listen=${addr}`,
        // MCP on a free port: the default one may belong to a coordinator
        // already running on this machine.
        '--mcp-listen=127.0.0.1:0',
        `--database=${path.join(dir, 'ink.db')}`,
        `--pki-dir=${pki}`,
        `--tls-ca=${path.join(pki, 'ca.crt')}`,
        `--tls-cert=${path.join(pki, 'ink-coordinator.crt')}`,
        `--tls-key=${path.join(pki, 'ink-coordinator.key')}`,
        '--heartbeat-interval=1s',
        '--log-format=logfmt',
        'serve',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    for (const out of [child.stdout, child.stderr]) {
      out.setEncoding('utf8');
      out.on('data', (d) => (stderr += d));
    }
    childExit = new Promise((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    let exited = null;
    childExit.then((e) => (exited = e));
    await waitFor(
      `ink-coordinator to listen on ${addr}`,
      async () => {
        if (exited) {
          throw new Error(
            `ink-coordinator exited early (code ${exited.code}, signal ${exited.signal}):\n` +
              stderr,
          );
        }
        return tryConnect(port);
      },
      STARTUP_TIMEOUT_MS,
    );

    const def = protoLoader.loadSync(['ink/v1/ink.proto', 'ink/v1/services.proto'], {
      includeDirs: [path.join(REPO, 'proto')],
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
    });
    ink = grpc.loadPackageDefinition(def).ink.v1;
    nodeClient = track(
      new ink.NodeService(addr, await creds(pki, pki, 'wire-test'), channelOptions),
    );
  }

  after(async () => {
    for (const call of streams) call.cancel();
    for (const c of clients) c.close();
    if (child) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
    }
    if ((failed || process.env.INK_WIRE_VERBOSE) && stderr) {
      process.stderr.write(`\n----- ink-coordinator stderr -----\n${stderr}\n-----\n`);
    }
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  // Marks the suite failed so after() prints the coordinator's log.
  const test = (name, fn) =>
    it(name, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        failed = true;
        throw e;
      }
    });

  // ---------------------------------------------------------------- cases

  test('a. Register as the certificate’s node', async () => {
    const { err, res } = await unary(nodeClient, 'Register', registerRequest());
    assert.ifError(err);
    assert.match(res.coordinatorId, /^[0-9a-f]{32}$/);
    assert.equal(res.heartbeatIntervalMs, 1000);
    assert.ok(res.nodeTimeoutMs > 0, `nodeTimeoutMs ${res.nodeTimeoutMs}`);
    assert.equal(typeof res.revision, 'string'); // uint64 as String (longs: String)
  });

  test('b. ReportStatus: known instance OK, unknown instance NOT_FOUND', async () => {
    let { err, res } = await unary(nodeClient, 'ReportStatus', {
      nodeId: 'wire-test',
      instanceId: 'inst-1',
      appliedRevision: '0',
      usage: { load1: 0.5, memoryUsedBytes: '1', memoryAvailableBytes: '2', workloads: 0 },
    });
    assert.ifError(err);
    assert.equal(res.heartbeatIntervalMs, 1000);

    ({ err } = await unary(nodeClient, 'ReportStatus', {
      nodeId: 'wire-test',
      instanceId: 'other',
    }));
    assertStatus(err, grpc.status.NOT_FOUND, /register again/);
  });

  test('c. WatchAssignments: SNAPSHOT first, stream stays open, cancel is CANCELLED', async () => {
    const call = nodeClient.WatchAssignments(
      { nodeId: 'wire-test', sinceRevision: '0' },
      { deadline: deadline(30000) },
    );
    streams.push(call);
    const events = [];
    let waiter = null;
    let ended = null; // {error} | {status} | {end}
    const wake = () => waiter && waiter();
    call.on('data', (ev) => (events.push(ev), wake()));
    call.on('error', (error) => ((ended = { error }), wake()));
    call.on('status', (status) => ((ended ??= { status }), wake()));
    call.on('end', () => ((ended ??= { end: true }), wake()));
    const next = (what, cond, ms = CALL_TIMEOUT_MS) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
        waiter = () => {
          if (cond()) {
            clearTimeout(timer);
            waiter = null;
            resolve();
          }
        };
        waiter();
      });

    try {
      await next('the first watch event', () => events.length > 0 || ended);
      assert.equal(ended, null, `stream ended before any event: ${JSON.stringify(ended)}`);
      const first = events[0];
      assert.equal(first.kind, 'SNAPSHOT');
      assert.equal(first.revision, '0');
      assert.deepEqual(first.assignments, []);

      // Stays open: prove it with a round trip on the same channel rather
      // than a sleep. The stream must still be open after it.
      const { err } = await unary(nodeClient, 'ReportStatus', {
        nodeId: 'wire-test',
        instanceId: 'inst-1',
      });
      assert.ifError(err);
      assert.equal(ended, null, `stream ended unexpectedly: ${JSON.stringify(ended)}`);
      for (const ev of events.slice(1)) assert.equal(ev.kind, 'PROGRESS');

      call.cancel();
      await next('the cancelled stream to end', () => ended?.error);
      assert.equal(ended.error.code, grpc.status.CANCELLED, String(ended.error));
      // The cancel reached the server (RST_STREAM), which dropped the watcher.
      await waitFor(
        'the coordinator to close the watch',
        () => /msg="watch closed"/.test(stderr),
        CALL_TIMEOUT_MS,
      );
    } finally {
      call.cancel(); // no-op when already over
    }

    // The server survived the cancel and still serves.
    const { err, res } = await unary(nodeClient, 'Register', registerRequest());
    assert.ifError(err);
    assert.match(res.coordinatorId, /^[0-9a-f]{32}$/);
  });

  test('d. Identity binding: a certificate acts only for its own node', async () => {
    const { err } = await unary(
      nodeClient,
      'Register',
      registerRequest({ nodeId: 'other-node', instanceId: 'inst-x' }),
    );
    assertStatus(err, grpc.status.PERMISSION_DENIED, /wire-test/);

    const { stdout } = await run(`--database=${path.join(dir, 'ink.db')}`, 'nodes', '--json');
    const nodes = JSON.parse(stdout);
    assert.ok(Array.isArray(nodes), `nodes --json: ${stdout}`);
    const byName = (n) => nodes.find((x) => x.id === n);
    const me = byName('wire-test');
    assert.ok(me, `wire-test missing from nodes --json: ${stdout}`);
    assert.equal(me.state, 'ready', stdout);
    assert.equal(byName('other-node'), undefined, stdout);
  });

  test('e. A certificate from a foreign CA is rejected in the handshake', async () => {
    const foreignClient = track(
      new ink.NodeService(
        addr,
        grpc.credentials.createSsl(
          await fs.readFile(path.join(dir, 'pki', 'ca.crt')), // trust the real server
          await fs.readFile(path.join(dir, 'foreign', 'wire-test.key')),
          await fs.readFile(path.join(dir, 'foreign', 'wire-test.crt')),
        ),
        channelOptions,
      ),
    );
    const { err } = await unary(foreignClient, 'Register', registerRequest());
    assertStatus(err, grpc.status.UNAVAILABLE);
  });

  test('f. Malformed protobuf is INVALID_ARGUMENT and the server lives on', async () => {
    const pki = path.join(dir, 'pki');
    const raw = track(new grpc.Client(addr, await creds(pki, pki, 'wire-test'), channelOptions));
    // Field 1 (node_id), wire type 2, whose length varint is 11 bytes long:
    // overflows 64 bits and is far longer than the payload.
    const bad = Buffer.from([
      0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    const { err } = await rawUnary(raw, '/ink.v1.NodeService/Register', bad);
    assertStatus(err, grpc.status.INVALID_ARGUMENT, /malformed/);

    // A length that is merely longer than the payload.
    const short = Buffer.from([0x0a, 0x10, 0x61, 0x62]);
    const r2 = await rawUnary(raw, '/ink.v1.NodeService/Register', short);
    assertStatus(r2.err, grpc.status.INVALID_ARGUMENT, /malformed/);

    const { err: again } = await unary(nodeClient, 'Register', registerRequest());
    assert.ifError(again);
  });

  test('g. An unknown method is UNIMPLEMENTED', async () => {
    const pki = path.join(dir, 'pki');
    const raw = track(new grpc.Client(addr, await creds(pki, pki, 'wire-test'), channelOptions));
    const { err } = await rawUnary(raw, '/ink.v1.NodeService/Nope', Buffer.alloc(0));
    assertStatus(err, grpc.status.UNIMPLEMENTED);
    const r2 = await rawUnary(raw, '/ink.v1.NoSuchService/Register', Buffer.alloc(0));
    assertStatus(r2.err, grpc.status.UNIMPLEMENTED);
  });

  test('h. An invalid node id is INVALID_ARGUMENT (checked before identity)', async () => {
    for (const nodeId of ['', 'Bad_Name']) {
      const { err } = await unary(nodeClient, 'Register', registerRequest({ nodeId }));
      assertStatus(err, grpc.status.INVALID_ARGUMENT, /not a valid name/);
    }
  });

  test('SIGTERM with an open stream: clean exit 0', async () => {
    // Leave a watch stream open across the shutdown.
    const call = nodeClient.WatchAssignments(
      { nodeId: 'wire-test', sinceRevision: '0' },
      { deadline: deadline(30000) },
    );
    streams.push(call);
    const gotEvent = new Promise((resolve, reject) => {
      call.once('data', resolve);
      call.once('error', reject);
    });
    const streamEnd = new Promise((resolve) => call.on('status', resolve));
    call.on('error', () => {}); // the end is asserted through 'status'
    await gotEvent;

    assert.ok(child.kill('SIGTERM'));
    let timer;
    const exit = await Promise.race([
      childExit,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no exit within ${SHUTDOWN_TIMEOUT_MS} ms after SIGTERM`)),
          SHUTDOWN_TIMEOUT_MS,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    assert.deepEqual(exit, { code: 0, signal: null }, stderr);

    // The open stream ended with a status rather than hanging.
    const st = await streamEnd;
    assert.equal(st.code, grpc.status.UNAVAILABLE, `stream status ${JSON.stringify(st)}`);
  });
});
