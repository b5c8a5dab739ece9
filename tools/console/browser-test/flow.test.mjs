// Browser test of the flow console's live page.
//
// Opens the page in headless Chromium, places orders through the real order-service while the
// page watches: the first half while the relay is held (each must wait at "committed", and the
// orders outbox's pending count must show them), the rest after it is resumed, while the first
// half flows; and checks that every order's row shows its six steps becoming done in step
// order, with times in cause-and-effect order, and the expected final status; then saves a
// screenshot.
//
//   npm ci && node flow.test.mjs
//
// Settings (environment, with defaults): CONSOLE_URL (http://127.0.0.1:8090), ORDER_URL
// (http://127.0.0.1:9000), RELAY_URL (http://127.0.0.1:8080), RELAY_ADMIN_TOKEN (local-admin-token),
// CHROMIUM (/usr/bin/chromium), SCREENSHOT (../../../.stack/flow-page.png
// from this file; scripts/flow-page --update-screenshot writes docs/flow-page.png), FLOW_ORDERS (12), FLOW_TIMEOUT_MS (30000), FLOW_REJECTED_INDEX (random).
// Exit 0 when every check passed, 1 otherwise.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;

const CONSOLE_URL = (env.CONSOLE_URL || 'http://127.0.0.1:8090').replace(/\/+$/, '');
const ORDER_URL = (env.ORDER_URL || 'http://127.0.0.1:9000').replace(/\/+$/, '');
const RELAY_URL = (env.RELAY_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const RELAY_ADMIN_TOKEN = env.RELAY_ADMIN_TOKEN || 'local-admin-token';
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = path.resolve(here, env.SCREENSHOT || '../../../.stack/flow-page.png');
const FAILED_SCREENSHOT = SCREENSHOT.replace(/(\.png)?$/i, '-failed.png');
const FLOW_ORDERS = positiveInt('FLOW_ORDERS', 12);
const FLOW_TIMEOUT_MS = positiveInt('FLOW_TIMEOUT_MS', 30000);
const SPACING_MS = 150;
// Which order (0-based) asks for more than there is in stock, and must end REJECTED: a
// different one each run unless FLOW_REJECTED_INDEX says which.
const REJECTED_INDEX = env.FLOW_REJECTED_INDEX
  ? Math.min(Number(env.FLOW_REJECTED_INDEX), FLOW_ORDERS - 1)
  : Math.floor(Math.random() * FLOW_ORDERS);

const STEPS = ['committed', 'published', 'reserved', 'answer_published', 'confirmed', 'invoiced'];
const FILLABLE = { customer_id: 'flow-test', items: [{ sku: 'CABLE-USBC', quantity: 1 }] };
const UNFILLABLE = { customer_id: 'flow-test', items: [{ sku: 'MONITOR-27', quantity: 100000 }] };

function positiveInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Order ids are UUIDv7: the last digits are random, the first ones the time (alike in a run).
const short = (id) => `…${String(id).slice(-8)}`;

// ---------------------------------------------------------------------------------------------
// Checks: each one prints a line; the run fails if any failed.

const results = [];
function check(ok, what, detail = '') {
  results.push({ ok, what, detail });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` — ${detail}` : ''}`);
  return ok;
}

class Abort extends Error {}
function abort(message) {
  check(false, message);
  throw new Abort(message);
}

// ---------------------------------------------------------------------------------------------
// The recorder, installed in the page before any order is placed. On every change of the orders
// table (and every 20 ms besides) it scans the rows and notes, per order and step, the first
// scan (sequence number and performance.now()) in which the cell was `done` or `never`, the
// latest state and `data-at`, and any cell that went back from a final state.

function installRecorder() {
  if (window.__flowRecorder) return;
  const rec = { scans: 0, rows: {} };
  window.__flowRecorder = rec;
  const table = document.querySelector('#orders');
  function scan() {
    rec.scans += 1;
    const seq = rec.scans;
    const t = performance.now();
    const wall = Date.now();
    for (const tr of document.querySelectorAll('#orders tbody tr[data-order-id]')) {
      const id = tr.getAttribute('data-order-id');
      let row = rec.rows[id];
      if (!row) {
        row = rec.rows[id] = { firstSeq: seq, firstT: t, firstWall: wall, status: '', statuses: [], steps: {}, problems: [] };
      }
      row.lastSeq = seq;
      row.status = tr.getAttribute('data-status') || '';
      if (row.statuses[row.statuses.length - 1] !== row.status) row.statuses.push(row.status);
      const cells = tr.querySelectorAll('td[data-step]');
      row.cellCount = cells.length;
      row.stepOrder = Array.from(cells, (td) => td.getAttribute('data-step'));
      for (const td of cells) {
        const key = td.getAttribute('data-step');
        const state = td.getAttribute('data-state') || '';
        const at = td.getAttribute('data-at') || '';
        let s = row.steps[key];
        if (!s) s = row.steps[key] = { firstSeq: null, firstT: null, firstState: null, state: '', at: '', label: '' };
        if (s.firstState !== null && state !== s.firstState) {
          const p = `step "${key}" went from ${s.firstState} to ${state || 'nothing'}`;
          if (!row.problems.includes(p)) row.problems.push(p);
        }
        if (s.firstState === null && (state === 'done' || state === 'never')) {
          s.firstSeq = seq;
          s.firstT = t;
          s.firstState = state;
        }
        s.state = state;
        s.at = at;
        s.label = (td.querySelector('.sub') || {}).textContent || '';
      }
    }
  }
  new MutationObserver(scan).observe(table, { subtree: true, childList: true, attributes: true });
  setInterval(scan, 20);
  scan();
}

// ---------------------------------------------------------------------------------------------
// Orders.

async function placeOrder(index) {
  const unfillable = index === REJECTED_INDEX;
  const body = unfillable ? UNFILLABLE : FILLABLE;
  const what = `order #${index + 1}${unfillable ? ' (unfillable)' : ''}`;
  let res;
  let text;
  try {
    res = await fetch(`${ORDER_URL}/orders`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': crypto.randomUUID() },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    text = await res.text();
  } catch (err) {
    abort(`placing ${what}: POST ${ORDER_URL}/orders failed: ${err.cause?.message || err.message}`);
  }
  if (res.status !== 201) {
    abort(`placing ${what}: POST ${ORDER_URL}/orders answered HTTP ${res.status}, expected 201: ${text.slice(0, 300)}`);
  }
  let id;
  try {
    id = JSON.parse(text).id;
  } catch {
    abort(`placing ${what}: the 201 answer is not JSON: ${text.slice(0, 300)}`);
  }
  if (typeof id !== 'string' || !id) abort(`placing ${what}: the 201 answer has no "id": ${text.slice(0, 300)}`);
  return { index, id, expected: unfillable ? 'REJECTED' : 'CONFIRMED', placedWall: Date.now() };
}

// Holds or resumes the relay through its admin API.
let relayHeld = false;
async function relay(action) {
  // A pause answers once the batch in flight is done (up to half the relay's lease): until it
  // answers, count the relay as held, so that a late success is still undone.
  if (action === 'pause') relayHeld = true;
  let res;
  try {
    res = await fetch(`${RELAY_URL}/admin/relay/${action}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${RELAY_ADMIN_TOKEN}` },
      signal: AbortSignal.timeout(20000),
    });
  } catch (err) {
    abort(`POST ${RELAY_URL}/admin/relay/${action} failed: ${err.cause?.message || err.message}`);
  }
  if (res.status !== 200) {
    if (action === 'pause') relayHeld = false; // refused: nothing held
    abort(`POST ${RELAY_URL}/admin/relay/${action} answered HTTP ${res.status} (RELAY_ADMIN_TOKEN?)`);
  }
  relayHeld = action === 'pause';
}

// Whether a recorded row has reached its end: CONFIRMED with all six steps done, or REJECTED
// with five done and `invoiced` never.
function settled(row) {
  if (!row) return false;
  // A publication is shown done by its effect before the relay's mark gives it a time: wait
  // for the times too.
  if (STEPS.some((k) => row.steps[k]?.state === 'done' && !row.steps[k]?.at)) return false;
  const states = STEPS.map((k) => row.steps[k]?.state);
  const fiveDone = states.slice(0, 5).every((s) => s === 'done');
  if (row.status === 'CONFIRMED') return fiveDone && states[5] === 'done';
  if (row.status === 'REJECTED') return fiveDone && states[5] === 'never';
  return false;
}

function describeRow(order, row) {
  if (!row) return `order ${short(order.id)} (#${order.index + 1}) never appeared in #orders`;
  const stuck = STEPS.find((k) => row.steps[k]?.state !== 'done' && !(k === 'invoiced' && row.steps[k]?.state === 'never'));
  const states = STEPS.map((k) => `${k}=${row.steps[k]?.state || 'missing'}`).join(' ');
  return `order ${short(order.id)} (#${order.index + 1}) status ${row.status || 'none'}, ` +
    (stuck ? `stuck at step "${stuck}" (${row.steps[stuck]?.state || 'missing'}); ` : 'every step final but the status is not; ') + states;
}

// ---------------------------------------------------------------------------------------------
// Per-order assertions on what the recorder saw.

function checkOrder(order, row) {
  const name = `order ${short(order.id)} (#${order.index + 1}, expect ${order.expected})`;
  if (!check(!!row, `${name}: row appeared in #orders`, row ? `${Math.max(0, Math.round(row.firstWall - order.placedWall))} ms after the POST answered` : 'never seen')) {
    return;
  }

  const layout = row.stepOrder.join(',') === STEPS.join(',');
  check(layout, `${name}: six step cells in order`, layout ? '' : `got [${row.stepOrder.join(', ')}]`);

  // Final state and status.
  const finalOk = row.status === order.expected && settled(row);
  let finalDetail = describeRow(order, row);
  if (row.status !== order.expected && order.expected === 'CONFIRMED' && row.status === 'REJECTED') {
    finalDetail += ' (was CABLE-USBC out of stock? the demo catalogue has 500)';
  }
  check(finalOk, `${name}: ends ${order.expected}${order.expected === 'REJECTED' ? ', five steps done, invoiced never' : ', all six steps done'}`,
    finalOk ? `statuses seen: ${row.statuses.join(' → ')}` : finalDetail);

  // Steps became done in step order (equal scan = same snapshot, fine).
  const done = STEPS.filter((k) => row.steps[k]?.firstState === 'done');
  let orderProblem = '';
  for (let i = 1; i < done.length && !orderProblem; i++) {
    const a = row.steps[done[i - 1]];
    const b = row.steps[done[i]];
    if (b.firstSeq < a.firstSeq) {
      orderProblem = `step "${done[i]}" was seen done (scan ${b.firstSeq}, t=${b.firstT.toFixed(1)} ms) ` +
        `before step "${done[i - 1]}" (scan ${a.firstSeq}, t=${a.firstT.toFixed(1)} ms)`;
    }
  }
  // A done step after a step that is not done (a gap) is out of order too.
  for (let i = 1; i < STEPS.length && !orderProblem; i++) {
    if (row.steps[STEPS[i]]?.firstState === 'done' && row.steps[STEPS[i - 1]]?.firstState !== 'done') {
      orderProblem = `step "${STEPS[i]}" is done but step "${STEPS[i - 1]}" is ${row.steps[STEPS[i - 1]]?.state || 'missing'}`;
    }
  }
  check(!orderProblem, `${name}: steps became done in step order`,
    orderProblem || `first seen in scans ${done.map((k) => row.steps[k].firstSeq).join(', ')}`);

  // data-at of the done steps: present, valid, and ordered where one step causes the next.
  // Two pairs are not: the relay marks a row published after the broker's ack, so the consumer
  // may already have acted (reserved before "published", confirmed before "answer published").
  // The page shows the publish step done as soon as its effect is seen, and its time once the
  // mark lands; every time is the one its writer recorded.
  const RACES_MARK = new Set(['reserved', 'confirmed']);
  let atProblem = '';
  const times = [];
  const at = {};
  for (const k of done) {
    const v = row.steps[k].at;
    const t = Date.parse(v);
    if (!v || Number.isNaN(t)) {
      atProblem = `step "${k}" is done but its data-at is ${JSON.stringify(v)}`;
      break;
    }
    at[k] = { v, t };
    times.push(t);
  }
  if (!atProblem) {
    for (let i = 1; i < done.length; i++) {
      const k = done[i];
      // The step it must not precede: the one before, or for a racing step the one before that.
      const j = RACES_MARK.has(k) ? i - 2 : i - 1;
      if (j < 0) continue;
      const p = done[j];
      if (at[k].t < at[p].t) {
        atProblem = `step "${k}" at ${at[k].v} is before step "${p}" at ${at[p].v}`;
        break;
      }
    }
  }
  check(!atProblem, `${name}: step times follow cause and effect`,
    atProblem || (times.length ? `+${times.map((t) => t - times[0]).join(', +')} ms` : 'no step done'));

  check(row.problems.length === 0, `${name}: no step went back`, row.problems.join('; '));
}

// ---------------------------------------------------------------------------------------------

async function saveScreenshot(page, file) {
  await mkdir(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: true, timeout: 15000 });
  return file;
}

async function withTimeout(promise, ms) {
  let timer;
  try {
    return await Promise.race([promise, new Promise((resolve) => { timer = setTimeout(resolve, ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  let browser;
  let page;
  let screenshot = '';
  const pageErrors = [];
  const networkErrors = [];
  try {
    try {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        timeout: 30000,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
    } catch (err) {
      abort(`could not launch Chromium at ${CHROMIUM} (set CHROMIUM): ${err.message.split('\n')[0]}`);
    }
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      // A failed request (an EventSource reconnect, say) is not a script error; a lost
      // connection shows in #connection, which is checked.
      if (msg.text().startsWith('Failed to load resource')) networkErrors.push(msg.text());
      else pageErrors.push(`console: ${msg.text()}`);
    });

    // 1. The page, live.
    try {
      await page.goto(`${CONSOLE_URL}/`, { waitUntil: 'domcontentloaded', timeout: 15000 });
    } catch (err) {
      abort(`opening ${CONSOLE_URL}/ failed: ${err.message.split('\n')[0]}`);
    }
    check((await page.title()) === 'Outbox flow — live', 'page title is "Outbox flow — live"', await page.title());
    try {
      await page.waitForSelector('#connection[data-state="live"]', { timeout: 15000 });
    } catch {
      const state = await page.getAttribute('#connection', 'data-state').catch(() => null);
      abort(`#connection never became live within 15 s (data-state=${state}); is ${CONSOLE_URL}/events sending snapshots?`);
    }
    check(true, '#connection is live');

    // 2. The recorder, before any order.
    await page.evaluate(installRecorder);

    // 3. Orders, placed while the page watches. The first half while the relay is held: each
    //    must show "committed" with "published" waiting, and the orders outbox's pending count
    //    must hold them all. Then the relay is resumed, and the rest go in while those flow.
    const orders = [];
    const heldCount = Math.max(1, Math.floor(FLOW_ORDERS / 2));
    await relay('pause');
    try {
      for (let i = 0; i < heldCount; i++) {
        if (i > 0) await sleep(SPACING_MS);
        orders.push(await placeOrder(i));
      }
      const waitUntil = Date.now() + 10000;
      let waiting = [];
      let pending = -1;
      for (;;) {
        const rows = await page.evaluate(() => window.__flowRecorder.rows);
        waiting = orders.filter((o) => rows[o.id]?.steps.committed?.state === 'done'
          && rows[o.id]?.steps.published?.state === 'waiting');
        pending = Number(await page.getAttribute('#outboxes tr[data-database="orders"]', 'data-pending').catch(() => -1));
        if ((waiting.length === orders.length && pending >= orders.length) || Date.now() > waitUntil) break;
        await sleep(50);
      }
      check(waiting.length === orders.length, `relay held: all ${orders.length} orders show "committed" and wait at "published"`,
        `${waiting.length} of ${orders.length} seen waiting`);
      check(pending >= orders.length, `relay held: the orders outbox shows them pending`, `pending=${pending}`);
    } finally {
      if (relayHeld) await relay('resume');
    }
    for (let i = heldCount; i < FLOW_ORDERS; i++) {
      await sleep(SPACING_MS);
      orders.push(await placeOrder(i));
    }
    check(true, `placed ${orders.length} orders through ${ORDER_URL}/orders (${heldCount} while the relay was held)`,
      `${orders.length - 1} fillable, #${REJECTED_INDEX + 1} unfillable (${short(orders[REJECTED_INDEX].id)})`);
    if (FLOW_ORDERS > 20) console.log(`note: the page shows about the last 20 orders; ${FLOW_ORDERS} may push some out before they finish`);

    // 4. Wait until every order has settled (or the time is up).
    const deadline = Date.now() + FLOW_TIMEOUT_MS;
    let rows = {};
    let allSettled = false;
    for (;;) {
      rows = await page.evaluate(() => window.__flowRecorder.rows);
      const open = orders.filter((o) => !settled(rows[o.id]));
      if (open.length === 0) {
        allSettled = true;
        break;
      }
      if (Date.now() > deadline) {
        for (const o of open) console.log(`  still open after ${FLOW_TIMEOUT_MS} ms: ${describeRow(o, rows[o.id])}`);
        check(false, `every order settled within FLOW_TIMEOUT_MS=${FLOW_TIMEOUT_MS}`, `${open.length} of ${orders.length} did not`);
        break;
      }
      await sleep(100);
    }
    if (allSettled) check(true, `every order settled within FLOW_TIMEOUT_MS=${FLOW_TIMEOUT_MS}`);

    // 5. Per-order checks, then the panels.
    for (const o of orders) checkOrder(o, rows[o.id]);

    const outboxes = await page.$$eval('#outboxes tr[data-database]', (trs) => trs.map((tr) => ({
      database: tr.getAttribute('data-database'),
      pending: tr.getAttribute('data-pending'),
      parked: tr.getAttribute('data-parked'),
    })));
    for (const db of ['orders', 'inventory']) {
      const r = outboxes.find((x) => x.database === db);
      const ok = !!r && /^\d+$/.test(r.pending ?? '') && /^\d+$/.test(r.parked ?? '');
      check(ok, `#outboxes has "${db}" with numeric pending and parked`,
        r ? `pending=${r.pending} parked=${r.parked}` : `rows: ${outboxes.map((x) => x.database).join(', ') || 'none'}`);
    }
    // Every order is through, so every group catches up: lag 0 once its offsets are committed
    // (once a second) and read (once a second).
    const readConsumers = () => page.$$eval('#consumers tr[data-group]', (trs) => trs.map((tr) => ({
      group: tr.getAttribute('data-group'),
      lag: tr.getAttribute('data-lag'),
      error: tr.getAttribute('data-error'),
    })));
    const GROUPS = ['inventory-service', 'order-service', 'invoice-service'];
    const caughtUp = (rows) => GROUPS.every((g) => rows.some((r) => r.group === g && r.lag === '0' && !r.error));
    let consumers = await readConsumers();
    for (const until = Date.now() + 10000; !caughtUp(consumers) && Date.now() < until;) {
      await sleep(200);
      consumers = await readConsumers();
    }
    for (const group of GROUPS) {
      const r = consumers.find((x) => x.group === group);
      const ok = !!r && r.lag === '0' && !r.error;
      check(ok, `#consumers shows "${group}" caught up (lag 0) once every order is through`,
        r ? (r.error ? `error: ${r.error}` : `lag=${r.lag}`) : `rows: ${consumers.map((x) => x.group).join(', ') || 'none'}`);
    }

    const state = await page.getAttribute('#connection', 'data-state');
    check(state === 'live', '#connection still live at the end', `data-state=${state}`);
    check(pageErrors.length === 0, 'no script errors in the page', pageErrors.slice(0, 3).join(' | '));
    if (networkErrors.length) console.log(`note: the page saw ${networkErrors.length} failed request(s): ${networkErrors.slice(0, 3).join(' | ')}`);

    // 6. Screenshot, once the highlight of the last change has faded.
    const passed = results.every((r) => r.ok);
    await sleep(1500);
    screenshot = await saveScreenshot(page, passed ? SCREENSHOT : FAILED_SCREENSHOT);
    console.log(`${passed ? 'screenshot' : 'failure screenshot'}: ${screenshot}`);
    return orders.length;
  } catch (err) {
    if (!(err instanceof Abort)) check(false, `unexpected error: ${err.stack || err.message}`);
    if (page && !screenshot) {
      try {
        screenshot = await saveScreenshot(page, FAILED_SCREENSHOT);
        console.log(`failure screenshot: ${screenshot}`);
      } catch (e) {
        console.log(`could not save a failure screenshot: ${e.message.split('\n')[0]}`);
      }
    }
    return 0;
  } finally {
    if (relayHeld) await relay('resume').catch(() => console.log('could not resume the relay: resume it by hand'));
    if (browser) await withTimeout(browser.close().catch(() => {}), 10000);
  }
}

// An overall bound, so the test never hangs whatever the page or the services do.
const overallMs = FLOW_TIMEOUT_MS + FLOW_ORDERS * (SPACING_MS + 10000) + 90000;
const watchdog = setTimeout(() => {
  console.log(`FAIL the whole test took longer than ${overallMs} ms; giving up`);
  process.exit(1);
}, overallMs);
watchdog.unref();

const checked = await main();
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
if (failed === 0) {
  console.log(`flow page: ${checked} orders checked, ${passed} checks passed, screenshot at ${SCREENSHOT}`);
} else {
  console.log(`flow page: FAILED, ${failed} of ${results.length} checks failed:`);
  for (const r of results.filter((x) => !x.ok)) console.log(`  - ${r.what}${r.detail ? ` — ${r.detail}` : ''}`);
}
console.log(`flow-page: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
