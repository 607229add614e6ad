// MCP end to end: a stock MCP client (the official TypeScript SDK) deploys,
// inspects, updates and deletes apps on a real coordinator + agent, over
// Streamable HTTP (the main flow) and stdio (a shorter one).
//
// Run by tests/integration/mcp_e2e_test.sh, which builds the images, starts
// a registry, the coordinator and an agent inside a network namespace of
// their own and runs this file inside it with:
//
//   INK_E2E_COORDINATOR    the ink-coordinator binary
//   INK_E2E_CONFIG         its config file (mcp_listen, database, ...)
//   INK_E2E_MCP_URL        the Streamable HTTP endpoint (http://127.0.0.1:N/mcp)
//   INK_E2E_KEY_DEPLOYER   deployer key of project "demo"
//   INK_E2E_KEY_READER     reader key of project "demo"
//   INK_E2E_KEY_OTHER      deployer key of project "other"
//   INK_E2E_IMAGE_V1       busybox httpd serving INK_E2E_BODY_V1
//   INK_E2E_IMAGE_V2       busybox httpd serving INK_E2E_BODY_V2
//   INK_E2E_IMAGE_SLOW     V1's files, but httpd starts only after 5 s
//   INK_E2E_IMAGE_MISSING  a tag the registry does not have
//   INK_E2E_BODY_V1, INK_E2E_BODY_V2   what the two images' pages say
//   INK_E2E_SECRET         the secret env value (must never come back)
//   INK_E2E_PREFIX         prefix of every app name (the driver's cleanup
//                          removes the cgroups of workloads named so)
//   INK_E2E_COORD_PIDFILE  pid of the running coordinator (kill -9 test)
//   INK_E2E_COORD_START    command that starts it again (and rewrites the pid file)
//   INK_E2E_NET_A, INK_E2E_NET_B, INK_E2E_NET_METADATA
//                          addresses of the "internet" stand-in behind the
//                          node's default route (two public ones and the
//                          cloud metadata address), each serving on port 80
//   INK_E2E_NET_BODY       what their page says
//
// Without them (a plain `node --test` in tests/node) the suite is skipped.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const execFileP = promisify(execFile);
const E = process.env;
const REQUIRED = [
  'INK_E2E_COORDINATOR',
  'INK_E2E_CONFIG',
  'INK_E2E_MCP_URL',
  'INK_E2E_KEY_DEPLOYER',
  'INK_E2E_KEY_READER',
  'INK_E2E_KEY_OTHER',
  'INK_E2E_IMAGE_V1',
  'INK_E2E_IMAGE_V2',
  'INK_E2E_IMAGE_SLOW',
  'INK_E2E_IMAGE_MISSING',
  'INK_E2E_BODY_V1',
  'INK_E2E_BODY_V2',
  'INK_E2E_SECRET',
  'INK_E2E_PREFIX',
  'INK_E2E_COORD_PIDFILE',
  'INK_E2E_COORD_START',
  'INK_E2E_NET_A',
  'INK_E2E_NET_B',
  'INK_E2E_NET_METADATA',
  'INK_E2E_NET_BODY',
];
const missing = REQUIRED.filter((k) => !E[k]);
const SKIP = missing.length
  ? `run by tests/integration/mcp_e2e_test.sh (unset: ${missing.join(', ')})`
  : false;

const DEPLOY_TIMEOUT_MS = 90_000; // one create_app / update_app call
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every result any tool returned, to search for the secret at the end.
const seen = [];

// ------------------------------------------------------------------ helpers

async function connectHttp(key, name = 'ink-e2e-http') {
  const client = new Client({ name, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(E.INK_E2E_MCP_URL), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  // Caches the output schemas: callTool then validates structuredContent.
  await client.listTools();
  return client;
}

async function connectStdio(key) {
  const client = new Client({ name: 'ink-e2e-stdio', version: '1.0.0' });
  const transport = new StdioClientTransport({
    command: E.INK_E2E_COORDINATOR,
    args: ['--config', E.INK_E2E_CONFIG, 'mcp-stdio'],
    env: { INK_API_KEY: key },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d) => {
    stderr += d;
  });
  client.stderrText = () => stderr;
  await client.connect(transport);
  await client.listTools();
  return client;
}

// A tool call; returns the CallToolResult (isError results included).
async function call(client, name, args, options = {}) {
  const res = await client.callTool({ name, arguments: args }, undefined, {
    timeout: DEPLOY_TIMEOUT_MS,
    ...options,
  });
  seen.push({ tool: name, res });
  return res;
}

const text = (res) => (res.content ?? []).map((c) => c.text ?? '').join('\n');
const show = (res) => JSON.stringify(res).slice(0, 2000);

// A call that must succeed: its structuredContent.
async function ok(client, name, args, options) {
  const res = await call(client, name, args, options);
  assert.ok(!res.isError, `${name} ${JSON.stringify(args)} failed: ${show(res)}`);
  assert.ok(res.structuredContent, `${name}: no structuredContent: ${show(res)}`);
  return res.structuredContent;
}

// A call that must fail as a tool error (isError) or as a JSON-RPC error;
// returns the message either way.
async function refused(client, name, args) {
  let res;
  try {
    res = await call(client, name, args);
  } catch (e) {
    return String(e.message);
  }
  assert.ok(res.isError, `${name} ${JSON.stringify(args)} should fail: ${show(res)}`);
  return text(res);
}

// create_app / update_app with a progress token; asserts progress was sent.
async function deploy(client, tool, args) {
  const progress = [];
  const sc = await ok(client, tool, args, {
    onprogress: (p) => progress.push(p),
    resetTimeoutOnProgress: true,
  });
  return { sc, progress };
}

async function get(url, ms = 3000) {
  const r = await fetch(url, { signal: AbortSignal.timeout(ms) });
  return { status: r.status, body: await r.text() };
}

async function answers(url) {
  try {
    return (await get(url, 2000)).status === 200;
  } catch {
    return false;
  }
}

async function until(what, fn, ms = 30_000, every = 200) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      assert.fail(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
    await sleep(every);
  }
}

async function coordinatorCli(...args) {
  const argv = ['--config', E.INK_E2E_CONFIG, ...args];
  const { stdout } = await execFileP(E.INK_E2E_COORDINATOR, argv, { timeout: 15_000 });
  return stdout;
}

// The app's workloads in `workload ls --json` (ids are "<app>-<8 hex>").
async function workloadsOf(app) {
  const all = JSON.parse(await coordinatorCli('workload', 'ls', '--json'));
  const re = new RegExp(`^${app}-[0-9a-f]{8}$`);
  return all.filter((w) => (w.app !== undefined ? w.app === app : re.test(w.workload_id)));
}

function assertRunning(sc, app, what) {
  assert.equal(sc.app, app, `${what}: app`);
  assert.equal(sc.status, 'running', `${what}: status ${sc.status}: ${sc.message}`);
  assert.equal(typeof sc.url, 'string', `${what}: url ${sc.url}`);
  assert.match(sc.operation_id, /.+/, `${what}: operation_id`);
}

const names = (list) => list.apps.map((a) => a.app);

// ------------------------------------------------------------ egress helpers

// The address of the app's running workload (as its node reports it).
async function addressOf(app) {
  const w = (await workloadsOf(app)).find((x) => x.state === 'running');
  assert.match(w?.address ?? '', /^\d+\.\d+\.\d+\.\d+$/, `${app}: ${JSON.stringify(w)}`);
  return w.address;
}

// The sandbox's gateway: the node, seen from inside.
async function gatewayOf(client, app) {
  const x = await ok(client, 'exec_command', { name: app, command: ['busybox', 'ip', 'route'] });
  const gateway = /default via (\d+\.\d+\.\d+\.\d+)/.exec(x.stdout)?.[1];
  assert.ok(gateway, `${app}: no default route in: ${x.stdout}${x.stderr}`);
  return gateway;
}

// From inside the app's sandbox, an HTTP request to each 'ADDR PORT' target
// at once (busybox nc, 1 s to connect); returns {target: 'open: <the last
// line of the answer>' or 'blocked: <nc's message>'}. What an egress policy
// drops times out (no refusal comes back).
const PROBE = `for t in "$@"; do
  (out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 1 $t 2>&1) &&
    echo "$t: open: $(echo "$out" | tail -n 1)" || echo "$t: blocked: $out") &
done
wait`;

async function probe(client, app, targets) {
  const x = await ok(client, 'exec_command', {
    name: app,
    command: ['sh', '-c', PROBE, 'probe', ...targets],
    timeout_s: 15,
  });
  const got = {};
  for (const t of targets) {
    const line = x.stdout.split('\n').find((l) => l.startsWith(`${t}: `));
    got[t] = line ? line.slice(t.length + 2) : `no result: ${x.stdout}${x.stderr}`;
  }
  return got;
}

function assertOpen(got, target, body, what) {
  assert.match(got[target], /^open: /, `${what}: ${target} should answer: ${got[target]}`);
  assert.ok(got[target].includes(body), `${what}: ${target} answered ${got[target]}`);
}

function assertBlocked(got, target, what) {
  const why = `${what}: ${target} should be dropped (time out): ${got[target]}`;
  assert.match(got[target], /^blocked: .*timed out/, why);
}

// "replica web-1a2b3c4d on node n1: egress blocked 3 packets (metadata)"
const blockedEvent = (rep, category) =>
  new RegExp(
    `^replica ${rep.id} on node ${rep.node}: egress blocked ([1-9][0-9]*) packets? \\(${category}\\)$`,
  );

// Events of the app telling blocked packets of replica rep in category.
const toldEvents = (d, rep, category) =>
  d.events.filter((e) => blockedEvent(rep, category).test(e.message));

// Polls get_app_details until the replica (by id, or the first running one)
// shows packets blocked in each category, each told in an event; returns
// {d, rep}.
async function egressBlocked(client, app, categories, id) {
  let last;
  try {
    return await until(
      `get_app_details of ${app} to show egress blocked (${categories.join(', ')})`,
      async () => {
        const d = await ok(client, 'get_app_details', { name: app });
        const rep = d.replica_status.find((r) => (id ? r.id === id : r.state === 'running'));
        last = { replica: rep, events: d.events.map((e) => e.message) };
        const counted = (c) => rep.egress_blocked[c] > 0 && toldEvents(d, rep, c).length > 0;
        return rep && categories.every(counted) && { d, rep };
      },
      20_000,
      250,
    );
  } catch (e) {
    e.message += `\nlast seen: ${JSON.stringify(last)}`;
    throw e;
  }
}

// Deletes the app and waits until its workloads are gone. For finally
// blocks: a failure is logged, not thrown, so that it does not hide the
// test's own; the driver script fails the run on any workload left.
async function deleteAndWait(client, app) {
  try {
    await call(client, 'delete_app', { name: app });
    await until(`workloads of ${app} removed`, async () => (await workloadsOf(app)).length === 0);
  } catch (e) {
    console.log(`# deleting ${app}: ${e.message}`);
  }
}

// ------------------------------------------------------------------- suite

describe('MCP end to end', { skip: SKIP }, () => {
  const P = E.INK_E2E_PREFIX;
  const WEB = `${P}-web`;
  // 'ADDR PORT' targets for probe(): the internet stand-in's httpd
  const NET_A = `${E.INK_E2E_NET_A} 80`;
  const NET_B = `${E.INK_E2E_NET_B} 80`;
  const METADATA = `${E.INK_E2E_NET_METADATA} 80`;
  let http; // deployer, project demo
  let webUrl;
  let webOp;

  before(async () => {
    http = await connectHttp(E.INK_E2E_KEY_DEPLOYER);
  });
  after(async () => {
    await http?.close().catch(() => {});
  });

  it('lists the tools of the contract', async () => {
    const { tools } = await http.listTools();
    const have = tools.map((t) => t.name);
    for (const t of [
      'create_app',
      'list_apps',
      'get_app_details',
      'update_app',
      'delete_app',
      'restart_app',
      'get_app_logs',
      'get_app_metrics',
      'exec_command',
      'create_resource',
      'list_resources',
      'delete_resource',
      'list_nodes',
      'get_operation',
    ])
      assert.ok(have.includes(t), `tool ${t} missing; have ${have.join(', ')}`);
  });

  it('HTTP without a key or with a bad key: 401 with WWW-Authenticate', async () => {
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 'probe', version: '1' },
      },
    });
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
    };
    for (const [what, auth] of [
      ['no key', undefined],
      ['bad key', 'Bearer ink_000000000000_' + '0'.repeat(64)],
      ['garbage', 'Bearer nonsense'],
    ]) {
      const r = await fetch(E.INK_E2E_MCP_URL, {
        method: 'POST',
        headers: auth ? { ...headers, Authorization: auth } : headers,
        body,
      });
      assert.equal(r.status, 401, `${what}: status ${r.status}`);
      const challenge = r.headers.get('www-authenticate') ?? '';
      assert.match(challenge, /^Bearer/i, `${what}: WWW-Authenticate`);
    }
    // and the SDK gives up too
    await assert.rejects(connectHttp('ink_000000000000_' + '1'.repeat(64)));
  });

  it('create_app over HTTP: progress, status running, the URL answers 200', async () => {
    const { sc, progress } = await deploy(http, 'create_app', {
      name: WEB,
      image: E.INK_E2E_IMAGE_V1,
      port: 80,
      env: { APP_MODE: 'test' },
      secret_env: { API_TOKEN: E.INK_E2E_SECRET },
      memory_mb: 128,
      cpu: 0.5,
    });
    assertRunning(sc, WEB, 'create_app');
    assert.ok(progress.length >= 1, 'no progress notification');
    webUrl = sc.url;
    webOp = sc.operation_id;
    const r = await get(webUrl);
    assert.equal(r.status, 200);
    assert.ok(r.body.includes(E.INK_E2E_BODY_V1), `page: ${r.body}`);
  });

  it('list_apps and get_app_details show it; secret env as name + fingerprint only', async () => {
    assert.ok(webUrl, 'create_app failed');
    const list = await ok(http, 'list_apps', {});
    const item = list.apps.find((a) => a.app === WEB);
    assert.ok(item, `list_apps: ${JSON.stringify(list)}`);
    assert.equal(item.url, webUrl);
    assert.equal(item.project, 'demo');

    const d = await ok(http, 'get_app_details', { name: WEB });
    assert.equal(d.status, 'running');
    assert.equal(d.url, webUrl);
    assert.equal(d.port, 80);
    assert.deepEqual(d.env, { APP_MODE: 'test' });
    assert.match(d.image_digest ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal(d.replica_status.length, 1, JSON.stringify(d.replica_status));
    const rep = d.replica_status[0];
    assert.equal(rep.state, 'running', JSON.stringify(rep));
    assert.match(rep.image_digest ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal(d.secret_env.length, 1, JSON.stringify(d.secret_env));
    assert.equal(d.secret_env[0].name, 'API_TOKEN');
    assert.match(String(d.secret_env[0].fingerprint), /.{4,}/);
    assert.deepEqual(Object.keys(d.secret_env[0]).sort(), ['fingerprint', 'name']);

    const op = await ok(http, 'get_operation', { operation_id: webOp });
    assert.equal(op.operation_id, webOp);
    assert.equal(op.kind, 'create_app');
    assert.equal(op.status, 'succeeded', JSON.stringify(op));
  });

  it('get_app_logs returns what the app printed', async () => {
    assert.ok(webUrl, 'create_app failed');
    await get(webUrl); // busybox httpd -v logs every response
    const logs = await until(
      'a response line in get_app_logs',
      async () => {
        const l = await ok(http, 'get_app_logs', { name: WEB, tail: 200 });
        return l.lines.some((x) => /response:200/.test(x.line)) && l;
      },
      15_000,
      500,
    );
    assert.equal(logs.app, WEB);
    assert.equal(typeof logs.truncated, 'boolean');
    const line = logs.lines.find((x) => /response:200/.test(x.line));
    for (const k of ['time', 'replica', 'stream', 'line']) assert.ok(k in line, `line lacks ${k}`);
  });

  it('exec_command: stdout, stderr, exit code; the secret reaches the app', async () => {
    assert.ok(webUrl, 'create_app failed');
    const x = await ok(http, 'exec_command', {
      name: WEB,
      command: ['sh', '-c', 'echo hi; echo err >&2; exit 3'],
    });
    assert.equal(x.stdout, 'hi\n', JSON.stringify(x));
    assert.equal(x.stderr, 'err\n', JSON.stringify(x));
    assert.equal(x.exit_code, 3);
    assert.equal(x.timed_out, false);
    assert.match(x.replica, new RegExp(`^${WEB}-`));
    // The app sees the secret: compared by its hash, so that neither the
    // command (exec commands are audited) nor the output holds the value.
    const s = await ok(http, 'exec_command', {
      name: WEB,
      command: ['sh', '-c', 'printf %s "$API_TOKEN" | busybox sha256sum; echo "$APP_MODE"'],
    });
    const want = crypto.createHash('sha256').update(E.INK_E2E_SECRET).digest('hex');
    assert.equal(s.stdout, `${want}  -\ntest\n`, JSON.stringify(s));
    const t = await ok(http, 'exec_command', { name: WEB, command: ['sleep', '30'], timeout_s: 1 });
    assert.equal(t.timed_out, true, JSON.stringify(t));
  });

  it('update_app to v2 is rolling: no failed request, v2 served at the end', async () => {
    assert.ok(webUrl, 'create_app failed');
    let stop = false;
    const stats = { ok: 0, v1: 0, v2: 0, failures: [] };
    const poller = (async () => {
      while (!stop) {
        try {
          const r = await get(webUrl, 3000);
          if (r.status !== 200) stats.failures.push(`${new Date().toISOString()} HTTP ${r.status}`);
          else {
            stats.ok++;
            if (r.body.includes(E.INK_E2E_BODY_V1)) stats.v1++;
            if (r.body.includes(E.INK_E2E_BODY_V2)) stats.v2++;
          }
        } catch (e) {
          const why = e.cause?.code ?? e.message;
          stats.failures.push(`${new Date().toISOString()} ${e.name}: ${why}`);
        }
        await sleep(20);
      }
    })();
    let res;
    try {
      res = await deploy(http, 'update_app', { name: WEB, image: E.INK_E2E_IMAGE_V2 });
      await sleep(1000); // keep polling a little after the switch
    } finally {
      stop = true;
      await poller;
    }
    const { sc } = res;
    assertRunning(sc, WEB, 'update_app');
    assert.equal(sc.url, webUrl, 'the URL changed');
    assert.notEqual(sc.operation_id, webOp);
    assert.ok(stats.ok > 10, `only ${stats.ok} requests during the update`);
    assert.deepEqual(stats.failures, [], `failed requests during the update (${stats.ok} ok)`);
    const r = await get(webUrl);
    assert.ok(r.body.includes(E.INK_E2E_BODY_V2), `after update: ${r.body}`);
    const d = await ok(http, 'get_app_details', { name: WEB });
    assert.equal(d.image, E.INK_E2E_IMAGE_V2);
    await until('old replica gone', async () => {
      const d2 = await ok(http, 'get_app_details', { name: WEB });
      return d2.replica_status.length === 1 && d2.replica_status[0].state === 'running';
    });
    console.log(
      `# rolling update: ${stats.ok} requests ok (${stats.v1} v1, ${stats.v2} v2), 0 failed`,
    );
  });

  it('get_app_metrics: memory > 0', async () => {
    assert.ok(webUrl, 'create_app failed');
    const m = await until(
      'metrics with memory',
      async () => {
        const m = await ok(http, 'get_app_metrics', { name: WEB });
        return m.replicas.length >= 1 && m.replicas[0].memory_mb > 0 && m;
      },
      15_000,
      500,
    );
    assert.equal(m.app, WEB);
    const fields = ['id', 'node', 'cpu_seconds', 'memory_mb', 'pids', 'rx_bytes', 'tx_bytes'];
    for (const k of [...fields, 'last_activity'])
      assert.ok(k in m.replicas[0], `replica lacks ${k}: ${JSON.stringify(m.replicas[0])}`);
    assert.ok(m.totals, 'no totals');
  });

  it('scale to zero: min_replicas 0 sleeps when idle, a request wakes it, metrics count on', async () => {
    const app = `${P}-nap`;
    const { sc } = await deploy(http, 'create_app', {
      name: app,
      image: E.INK_E2E_IMAGE_V1,
      port: 80,
      min_replicas: 0,
      idle_timeout_s: 10,
    });
    assertRunning(sc, app, 'create_app min_replicas 0');
    try {
      assert.equal((await get(sc.url)).status, 200);
      const d0 = await ok(http, 'get_app_details', { name: app });
      assert.equal(d0.idle_timeout_s, 10, JSON.stringify(d0));
      // 10 s without a request or a packet: asleep, URL kept.
      const asleep = await until(
        'the app to sleep',
        async () => {
          const d = await ok(http, 'get_app_details', { name: app });
          return d.status === 'sleeping' && d;
        },
        30_000,
        500,
      );
      assert.equal(asleep.url, sc.url);
      assert.equal(asleep.replica_status[0].state, 'sleeping', JSON.stringify(asleep));
      const before = (await ok(http, 'get_app_metrics', { name: app })).replicas[0];
      assert.equal(before.state, 'sleeping');
      assert.ok(before.sleeps >= 1, JSON.stringify(before));
      // The first request wakes it and gets its answer.
      const t0 = Date.now();
      const r = await get(sc.url, 10_000);
      console.log(`# scale to zero: request to the sleeping app -> ${r.status} in ${Date.now() - t0} ms`);
      assert.equal(r.status, 200);
      const awake = await until('running again', async () => {
        const d = await ok(http, 'get_app_details', { name: app });
        return d.status === 'running' && d;
      });
      assert.equal(awake.replica_status[0].state, 'running');
      const after = (await ok(http, 'get_app_metrics', { name: app })).replicas[0];
      assert.ok(after.wakes >= 1, JSON.stringify(after));
      assert.ok(after.tx_bytes > before.tx_bytes, `tx ${before.tx_bytes} -> ${after.tx_bytes}`);
      assert.ok(after.cpu_seconds >= before.cpu_seconds, 'CPU time went back');
    } finally {
      await deleteAndWait(http, app);
    }
  });

  it('reader key: reads work, changes are refused', async () => {
    assert.ok(webUrl, 'create_app failed');
    const reader = await connectHttp(E.INK_E2E_KEY_READER, 'reader');
    try {
      assert.ok(names(await ok(reader, 'list_apps', {})).includes(WEB));
      await ok(reader, 'get_app_details', { name: WEB });
      const msg = await refused(reader, 'create_app', {
        name: `${P}-nope`,
        image: E.INK_E2E_IMAGE_V1,
        port: 80,
      });
      assert.match(msg, /read|role|permi|not allowed|deployer/i, msg);
      await refused(reader, 'delete_app', { name: WEB });
      await refused(reader, 'exec_command', { name: WEB, command: ['true'] });
    } finally {
      await reader.close();
    }
    assert.ok(!names(await ok(http, 'list_apps', {})).includes(`${P}-nope`));
  });

  it('another project sees nothing of demo', async () => {
    assert.ok(webUrl, 'create_app failed');
    const other = await connectHttp(E.INK_E2E_KEY_OTHER, 'other');
    try {
      const msg = await refused(other, 'get_app_details', { name: WEB });
      assert.match(msg, /not found|no app/i, msg);
      assert.deepEqual((await ok(other, 'list_apps', {})).apps, []);
      await refused(other, 'delete_app', { name: WEB });
      await refused(other, 'get_app_logs', { name: WEB });
      // nor with an explicit project argument
      await refused(other, 'list_apps', { project: 'demo' });
    } finally {
      await other.close();
    }
  });

  it('idempotent retry: same key -> same operation, one app, one replica', async () => {
    const app = `${P}-idem`;
    const args = { name: app, image: E.INK_E2E_IMAGE_V1, port: 80, idempotency_key: `${P}-idem-1` };
    let firstProgress;
    const progressed = new Promise((r) => (firstProgress = r));
    const first = call(http, 'create_app', args, { onprogress: () => firstProgress() });
    await Promise.race([progressed, sleep(3000)]);
    const second = await call(http, 'create_app', args); // while the first one waits
    const a = await first;
    assert.ok(!a.isError && !second.isError, `${show(a)} ${show(second)}`);
    assert.equal(second.structuredContent.operation_id, a.structuredContent.operation_id);
    assertRunning(a.structuredContent, app, 'first');
    const third = await ok(http, 'create_app', args); // after it finished
    assert.equal(third.operation_id, a.structuredContent.operation_id);
    assert.equal(third.status, 'running');
    const d = await ok(http, 'get_app_details', { name: app });
    assert.equal(d.replica_status.length, 1, JSON.stringify(d.replica_status));
    assert.equal(names(await ok(http, 'list_apps', {})).filter((n) => n === app).length, 1);
    assert.equal((await workloadsOf(app)).length, 1);
    // the same key with other arguments is a conflict, not a new app
    const msg = await refused(http, 'create_app', { ...args, image: E.INK_E2E_IMAGE_V2 });
    assert.match(msg, /idempoten|conflict|other|different/i, msg);
    console.log(`# idempotency key reused with other arguments: ${msg.split('\n')[0]}`);
    await ok(http, 'delete_app', { name: app });
  });

  it('errors: a missing image is reported naming the tag, nothing keeps running', async () => {
    const app = `${P}-bad`;
    const image = E.INK_E2E_IMAGE_MISSING;
    const res = await call(http, 'create_app', { name: app, image, port: 80 });
    const msg = res.isError ? text(res) : res.structuredContent?.message ?? '';
    if (!res.isError) assert.equal(res.structuredContent.status, 'failed', show(res));
    const tag = image.split(':').pop();
    assert.ok(msg.includes(tag), `message does not name the tag '${tag}': ${msg}`);
    const how = res.isError ? 'isError' : 'status failed';
    console.log(`# missing image: ${how}: ${msg.split('\n')[0]}`);
    const d = await call(http, 'get_app_details', { name: app });
    if (!d.isError) {
      const running = d.structuredContent.replica_status.filter((r) => r.state === 'running');
      assert.deepEqual(running, []);
      assert.equal(d.structuredContent.url, null);
      await ok(http, 'delete_app', { name: app });
    }
    const wl = (await workloadsOf(app)).filter((w) => w.state === 'running');
    assert.deepEqual(wl, []);
  });

  it('errors: bad arguments are refused', async () => {
    const good = { name: `${P}-args`, image: E.INK_E2E_IMAGE_V1, port: 80 };
    const msg0 = await refused(http, 'create_app', { ...good, port: 'abc' });
    assert.match(msg0, /port/, msg0);
    console.log(`# port "abc": ${msg0.split('\n')[0]}`);
    await refused(http, 'create_app', { ...good, name: 'Bad_Name!' });
    await refused(http, 'create_app', { name: good.name, port: 80 }); // no image
    await refused(http, 'create_app', { ...good, replicas: 1000 });
    const msg = await refused(http, 'get_app_details', { name: `${P}-nosuch` });
    assert.match(msg, /not found|no app/i, msg);
    assert.ok(!names(await ok(http, 'list_apps', {})).includes(`${P}-args`));
  });

  it('resources: volume create/list/delete; postgres refused naming volume', async () => {
    const vol = `${P}-vol`;
    const v = await ok(http, 'create_resource', { type: 'volume', name: vol, size_mb: 16 });
    assert.equal(v.resource, vol);
    const list = await ok(http, 'list_resources', {});
    assert.ok(JSON.stringify(list).includes(vol), JSON.stringify(list));
    await ok(http, 'delete_resource', { name: vol });
    const msg = await refused(http, 'create_resource', { type: 'postgres', name: `${P}-db` });
    assert.match(msg, /volume/, msg);
  });

  it('list_nodes: the node is ready', async () => {
    const n = await ok(http, 'list_nodes', {});
    assert.ok(n.nodes.length >= 1);
    assert.ok(n.nodes.some((x) => x.status === 'ready'), JSON.stringify(n));
  });

  it('egress deny-all: serves; the internet, the node and other projects are blocked and counted', async () => {
    assert.ok(webUrl, 'create_app failed');
    const app = `${P}-deny`;
    const tenant = `${P}-tenant`; // an app of project "other", default policy
    const other = await connectHttp(E.INK_E2E_KEY_OTHER, 'other-egress');
    try {
      const { sc } = await deploy(http, 'create_app', {
        name: app,
        image: E.INK_E2E_IMAGE_V1,
        port: 80,
        egress: 'deny-all',
        cpu: 0.5, // probe() runs a few processes: quicker than at the default 0.25
      });
      assertRunning(sc, app, 'create_app egress deny-all');
      assert.equal((await get(sc.url)).status, 200); // ingress is not egress
      const d = await ok(http, 'get_app_details', { name: app });
      assert.equal(d.egress, 'deny-all');
      assert.deepEqual(d.egress_allow, []);
      const item = (await ok(http, 'list_apps', {})).apps.find((a) => a.app === app);
      assert.equal(item?.egress, 'deny-all', JSON.stringify(item));
      const t = await deploy(other, 'create_app', {
        name: tenant,
        image: E.INK_E2E_IMAGE_V1,
        port: 80,
      });
      assertRunning(t.sc, tenant, 'create_app in project other');

      const [mine, theirs, web] = await Promise.all([app, tenant, WEB].map(addressOf));
      const node = `${await gatewayOf(http, app)} ${new URL(sc.url).port}`; // its published port
      const otherProject = `${theirs} 80`;
      const sameProject = `${web} 80`; // allowed
      // The default policy, the tenant's, at the same time: the internet
      // yes; the metadata service and other projects' apps no.
      const [got, got2] = await Promise.all([
        probe(http, app, [NET_A, METADATA, node, otherProject, sameProject]),
        probe(other, tenant, [NET_A, METADATA, `${mine} 80`]),
      ]);
      console.log(`# deny-all, from inside the sandbox: ${JSON.stringify(got)}`);
      for (const target of [NET_A, METADATA, node, otherProject])
        assertBlocked(got, target, 'deny-all');
      assertOpen(got, sameProject, P, 'deny-all, an app of its own project');
      assertOpen(got2, NET_A, E.INK_E2E_NET_BODY, 'default policy, the internet');
      assertBlocked(got2, METADATA, 'default policy');
      assertBlocked(got2, `${mine} 80`, 'default policy, another project');
      // deny-all's own category and the node's (a fixed chain); default's.
      const [d1, d2] = await Promise.all([
        egressBlocked(http, app, ['deny-all', 'node']),
        egressBlocked(other, tenant, ['metadata', 'tenant']),
      ]);
      const counts = [d1, d2].map((x) => JSON.stringify(x.rep.egress_blocked));
      console.log(`# egress_blocked: deny-all ${counts[0]}, default ${counts[1]}`);
    } finally {
      await Promise.all([deleteAndWait(http, app), deleteAndWait(other, tenant)]);
      await other.close();
    }
  });

  it('egress allowlist: canonical entries, bad ones refused; only they pass, never metadata', async () => {
    const app = `${P}-allow`;
    const image = E.INK_E2E_IMAGE_V1;
    const [a, b, meta] = [E.INK_E2E_NET_A, E.INK_E2E_NET_B, E.INK_E2E_NET_METADATA];
    // one of them twice (once as a /32), another as a /32: stored canonical,
    // sorted, once each
    const entries = [
      `${a}:80`,
      `${meta}:80`,
      '203.0.113.0/24',
      '10.20.0.1/32:8000-8099',
      `${a}/32:80`,
    ];
    const canonical = [`${a}:80`, `${meta}:80`, '203.0.113.0/24', '10.20.0.1:8000-8099'].sort();

    // Bad entries are refused naming them; nothing is created.
    const bad = `${P}-badallow`;
    const badApp = { name: bad, image, port: 80, egress: 'allowlist' };
    for (const [entry, why] of [
      ['300.1.1.1:80', /neither an IPv4 address, a CIDR nor a host name/],
      [`${a}:99999`, /'99999' is not a port/],
      ['10.0.0.1/8:443', /host bits are set; did you mean 10\.0\.0\.0\/8\?/],
      ['[2001:db8::1]:443', /IPv6/],
      ['', /egress_allow\[1\]/], // the input schema: minLength 1
    ]) {
      const msg = await refused(http, 'create_app', {
        ...badApp,
        egress_allow: [`${a}:80`, entry],
      });
      if (entry)
        assert.ok(msg.includes(`'${entry}'`), `the message does not name '${entry}': ${msg}`);
      assert.match(msg, why, msg);
      console.log(`# egress_allow ${JSON.stringify(entry)}: ${msg}`);
    }
    let msg = await refused(http, 'create_app', badApp);
    assert.match(msg, /egress 'allowlist' needs egress_allow/, msg);
    msg = await refused(http, 'create_app', {
      ...badApp,
      egress: 'deny-all',
      egress_allow: [`${a}:80`],
    });
    assert.match(msg, /egress_allow only applies with egress 'allowlist'/, msg);
    assert.ok(!names(await ok(http, 'list_apps', {})).includes(bad), 'a refused app was created');
    assert.deepEqual(await workloadsOf(bad), []);

    try {
      const { sc } = await deploy(http, 'create_app', {
        name: app,
        image,
        port: 80,
        egress: 'allowlist',
        egress_allow: entries,
        cpu: 0.5, // as above; two replicas of it while it rolls, and web's 0.5: fits 2 CPUs
      });
      assertRunning(sc, app, 'create_app egress allowlist');
      const d = await ok(http, 'get_app_details', { name: app });
      assert.equal(d.egress, 'allowlist');
      assert.deepEqual(d.egress_allow, canonical);
      assert.equal(d.generation, 1);
      const created = `egress allowlist [${canonical.join(' ')}]`;
      assert.ok(
        d.events.some((e) => e.message.includes(created)),
        `no event with '${created}': ${JSON.stringify(d.events)}`,
      );
      const item = (await ok(http, 'list_apps', {})).apps.find((x) => x.app === app);
      assert.deepEqual(item?.egress_allow, canonical, JSON.stringify(item));

      // The agent enforces them: the allowlisted address answers, the other
      // one does not, nor the metadata service although it is listed.
      const got = await probe(http, app, [NET_A, NET_B, METADATA]);
      console.log(`# allowlist, from inside the sandbox: ${JSON.stringify(got)}`);
      assertOpen(got, NET_A, E.INK_E2E_NET_BODY, 'allowlisted');
      assertBlocked(got, NET_B, 'not allowlisted');
      assertBlocked(got, METADATA, 'metadata, allowlisted or not');
      const first = await egressBlocked(http, app, ['not-allowlisted', 'metadata']);
      const old = first.rep;

      // More blocked packets within a minute: counted, not told again yet.
      assertBlocked(await probe(http, app, [NET_B]), NET_B, 'not allowlisted, again');
      const before = first.rep.egress_blocked['not-allowlisted'];
      const more = await until('a higher not-allowlisted count', async () => {
        const d = await ok(http, 'get_app_details', { name: app });
        const r = d.replica_status.find((x) => x.id === old.id);
        return r?.egress_blocked['not-allowlisted'] > before && d;
      });
      assert.equal(toldEvents(more, old, 'not-allowlisted').length, 1, JSON.stringify(more.events));
      const firstTold = toldEvents(more, old, 'not-allowlisted')[0];

      // The same destinations written otherwise are no change.
      const again = [...entries].reverse().map((e) => e.replace(/\/32:/, ':'));
      const same = await ok(http, 'update_app', { name: app, egress_allow: again });
      assert.equal(same.operation_id, sc.operation_id, JSON.stringify(same));
      assert.equal((await ok(http, 'get_app_details', { name: app })).generation, 1);
      // A bad entry in an update changes nothing either.
      msg = await refused(http, 'update_app', { name: app, egress_allow: ['300.1.1.1:80'] });
      assert.ok(msg.includes("'300.1.1.1:80'"), msg);
      assert.equal((await ok(http, 'get_app_details', { name: app })).generation, 1);

      // Another list: a new generation, rolled out like an image change.
      const up = await deploy(http, 'update_app', { name: app, egress_allow: [`${b}:80`] });
      assertRunning(up.sc, app, 'update_app egress_allow');
      assert.notEqual(up.sc.operation_id, sc.operation_id);
      const op = await ok(http, 'get_operation', { operation_id: up.sc.operation_id });
      assert.equal(op.kind, 'update_app');
      assert.equal(op.status, 'succeeded', JSON.stringify(op));
      const d2 = await ok(http, 'get_app_details', { name: app });
      assert.equal(d2.generation, 2);
      assert.deepEqual(d2.egress_allow, [`${b}:80`]);
      assert.ok(
        d2.events.some((e) => e.message.includes(`egress_allow now [${b}:80]`)),
        JSON.stringify(d2.events),
      );
      // The replaced replica is forgotten with a last event for what was
      // not told yet.
      const last = await until("the replaced replica's last egress event", async () => {
        const d = await ok(http, 'get_app_details', { name: app });
        const gone = !d.replica_status.some((r) => r.id === old.id);
        const told = toldEvents(d, old, 'not-allowlisted').filter((e) => e.time > firstTold.time);
        return gone && told.length > 0 && told;
      });
      const packets = (e) => Number(blockedEvent(old, 'not-allowlisted').exec(e.message)[1]);
      const told = packets(firstTold) + last.reduce((n, e) => n + packets(e), 0);
      const counted = more.replica_status.find((x) => x.id === old.id).egress_blocked;
      const note = `told ${told}, counted ${JSON.stringify(counted)}`;
      assert.ok(told >= counted['not-allowlisted'], note);
      // The new replica has the new list.
      const got2 = await probe(http, app, [NET_A, NET_B]);
      assertOpen(got2, NET_B, E.INK_E2E_NET_BODY, 'allowlisted by the update');
      assertBlocked(got2, NET_A, 'no longer allowlisted');

      // To deny-all: the entries go with the allowlist.
      const dn = await deploy(http, 'update_app', { name: app, egress: 'deny-all' });
      assertRunning(dn.sc, app, 'update_app egress deny-all');
      const d3 = await ok(http, 'get_app_details', { name: app });
      assert.equal(d3.generation, 3);
      assert.equal(d3.egress, 'deny-all');
      assert.deepEqual(d3.egress_allow, []);
      const change = 'egress allowlist -> deny-all, egress_allow removed';
      assert.ok(
        d3.events.some((e) => e.message.includes(change)),
        JSON.stringify(d3.events),
      );
    } finally {
      await deleteAndWait(http, app);
    }
  });

  it('egress: a policy the node lacks fails the deploy naming it; old version keeps serving', async () => {
    const app = `${P}-nopolicy`;
    const image = E.INK_E2E_IMAGE_V1;
    const base = { name: app, image, port: 80 };
    const msg = await refused(http, 'create_app', { ...base, egress: 'Deny_All' });
    assert.match(msg, /egress 'Deny_All' is not a policy name/, msg);
    try {
      // A valid name, but no such file on the node: the agent fails the
      // start (nothing runs without its rules) and the operation fails.
      const t0 = Date.now();
      const args = { ...base, egress: 'no-such-policy' };
      const res = await call(http, 'create_app', args, { timeout: 30_000 });
      assert.ok(!res.isError, show(res));
      const sc = res.structuredContent;
      const why = /egress policy 'no-such-policy' is not installed on this node/;
      assert.equal(sc.status, 'failed', show(res));
      assert.match(sc.message, why, sc.message);
      assert.equal(sc.url, null);
      console.log(`# egress no-such-policy: ${sc.status} in ${Date.now() - t0} ms: ${sc.message}`);
      const d = await ok(http, 'get_app_details', { name: app });
      assert.equal(d.status, 'failed');
      assert.equal(d.egress, 'no-such-policy');
      assert.match(d.status_reason, why, d.status_reason);
      assert.equal(d.url, null);
      const running = (await workloadsOf(app)).filter((w) => w.state === 'running');
      assert.deepEqual(running, []);

      // Fixed by naming an installed policy.
      const fix = await deploy(http, 'update_app', { name: app, egress: 'deny-all' });
      assertRunning(fix.sc, app, 'update_app to an installed policy');

      // A typo on a live app: the new replica fails, the old one serves on.
      const typoArgs = { name: app, egress: 'deny-al' };
      const typo = await call(http, 'update_app', typoArgs, { timeout: 30_000 });
      assert.ok(!typo.isError, show(typo));
      const t = typo.structuredContent;
      assert.equal(t.status, 'failed', show(typo));
      assert.match(t.message, /egress policy 'deny-al' is not installed on this node/, t.message);
      assert.match(t.message, /; the previous version keeps serving$/, t.message);
      assert.equal((await get(fix.sc.url)).status, 200);
      const d2 = await ok(http, 'get_app_details', { name: app });
      assert.equal(d2.status, 'degraded');
      assert.equal(d2.egress, 'deny-al');
      assert.equal(d2.status_reason, t.message);
    } finally {
      await deleteAndWait(http, app);
    }
  });

  it('kill -9 of the coordinator mid-deploy; retry: same operation, one replica', async () => {
    const app = `${P}-crash`;
    const image = E.INK_E2E_IMAGE_SLOW;
    const args = { name: app, image, port: 80, idempotency_key: `${P}-crash-1` };
    const c1 = await connectHttp(E.INK_E2E_KEY_DEPLOYER, 'doomed');
    const pending = call(c1, 'create_app', args, { onprogress: () => {} }).then(
      (r) => ({ r }),
      (e) => ({ e }),
    );
    // The operation exists (and the app deploys: its image sleeps 5 s).
    const mid = await until(
      'the app to exist',
      async () => {
        const d = await call(http, 'get_app_details', { name: app });
        return !d.isError && d.structuredContent.operation_id && d.structuredContent;
      },
      10_000,
      100,
    );
    assert.equal(mid.status, 'deploying', `not mid-deploy: ${JSON.stringify(mid)}`);
    const pid = Number(fs.readFileSync(E.INK_E2E_COORD_PIDFILE, 'utf8'));
    process.kill(pid, 'SIGKILL');
    await until('coordinator dead', async () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    await c1.close().catch(() => {});
    const outcome = await Promise.race([pending, sleep(5000).then(() => ({ hung: true }))]);
    const finished = outcome.r && !outcome.r.isError && outcome.r.structuredContent?.status;
    assert.notEqual(finished, 'running', `finished before the kill: ${JSON.stringify(outcome)}`);
    await http.close().catch(() => {});

    await execFileP('sh', ['-c', E.INK_E2E_COORD_START], { timeout: 15_000 });
    const up = async () => (await fetch(E.INK_E2E_MCP_URL, { method: 'POST', body: '{}' })).status;
    await until('MCP endpoint back', up, 20_000); // 401: up, and asking for a key
    http = await connectHttp(E.INK_E2E_KEY_DEPLOYER);

    const { sc } = await deploy(http, 'create_app', args);
    assertRunning(sc, app, 'retry after kill -9');
    assert.equal(sc.operation_id, mid.operation_id, 'retry made a new operation');
    console.log(`# kill -9 mid-deploy: the retry returned ${sc.operation_id} (${sc.status}) too`);
    assert.equal((await get(sc.url)).status, 200);
    const d = await ok(http, 'get_app_details', { name: app });
    assert.equal(d.replica_status.length, 1, JSON.stringify(d.replica_status));
    const wl = await workloadsOf(app);
    assert.equal(wl.length, 1, `workload ls: ${JSON.stringify(wl)}`);
    // the app deployed before the kill still serves
    assert.equal((await get(webUrl)).status, 200);
    await ok(http, 'delete_app', { name: app });
  });

  it('delete_app: the URL stops answering, list_apps forgets it', async () => {
    assert.ok(webUrl, 'create_app failed');
    const del = await ok(http, 'delete_app', { name: WEB });
    assert.equal(del.app ?? WEB, WEB);
    await until('URL to stop answering', async () => !(await answers(webUrl)), 30_000);
    const listed = async (c, app) => names(await ok(c, 'list_apps', {})).includes(app);
    await until('gone from list_apps', async () => !(await listed(http, WEB)));
    await until('workloads removed', async () => (await workloadsOf(WEB)).length === 0);
  });

  it('stdio: create -> URL answers -> list -> delete', async () => {
    const app = `${P}-stdio`;
    const stdio = await connectStdio(E.INK_E2E_KEY_DEPLOYER);
    try {
      const { sc, progress } = await deploy(stdio, 'create_app', {
        name: app,
        image: E.INK_E2E_IMAGE_V2,
        port: 80,
      });
      assertRunning(sc, app, 'stdio create_app');
      assert.ok(progress.length >= 1, 'no progress notification over stdio');
      const r = await get(sc.url);
      assert.equal(r.status, 200);
      assert.ok(r.body.includes(E.INK_E2E_BODY_V2));
      assert.ok(names(await ok(stdio, 'list_apps', {})).includes(app));
      await ok(stdio, 'delete_app', { name: app });
      await until('stdio app URL to stop answering', async () => !(await answers(sc.url)), 30_000);
      const listed = async () => names(await ok(stdio, 'list_apps', {})).includes(app);
      await until('gone from list_apps', async () => !(await listed()));
    } catch (e) {
      e.message += `\ncoordinator mcp-stdio stderr:\n${stdio.stderrText().slice(-3000)}`;
      throw e;
    } finally {
      await stdio.close();
    }
  });

  it('stdio: a wrong key is refused', async () => {
    await assert.rejects(async () => {
      const c = await connectStdio('ink_000000000000_' + '2'.repeat(64));
      await c.callTool({ name: 'list_apps', arguments: {} });
      await c.close();
    });
  });

  it('the secret env value never appears in any result', () => {
    assert.ok(seen.length > 20, `only ${seen.length} results recorded`);
    const all = JSON.stringify(seen);
    assert.ok(!all.includes(E.INK_E2E_SECRET), 'secret value found in a tool result');
  });
});
