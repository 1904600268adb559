// The Runner's web console (docs/console.md). Plain script, no framework, no build step.
//
// Rules this file keeps:
// - Everything shown comes from the admin API and may hold untrusted text (event
//   payloads, reasons, ids): it reaches the page through textContent and
//   createElement only, never as markup.
// - The admin token is kept in this tab's sessionStorage (gone when the tab closes)
//   and sent as an Authorization header, never in a URL.
// - Calls go to this page's own origin only (the page's security policy says so too);
//   other shards are links to their own consoles.
'use strict';

const TOKEN_KEY = 'runner.adminToken';
const OVERVIEW_EVERY_MS = 5000;
// Cursors kept for "Previous page"; past this the oldest are forgotten.
const MAX_PAGES_BACK = 1000;
const KEY_COUNTERS = [
  ['runner_fetched_total', 'messages fetched'],
  ['runner_events_total', 'events decoded'],
  ['runner_transitions_total', 'transitions committed'],
  ['runner_acked_total', 'messages acked'],
  ['runner_ignored_total', 'ignored'],
  ['runner_duplicates_total', 'duplicates'],
  ['runner_faults_total', 'program faults'],
  ['runner_quarantined_total', 'messages quarantined'],
  ['runner_relayed_total', 'outbox items relayed'],
  ['runner_relay_retries_total', 'relay retries'],
  ['runner_dead_letters_total', 'dead-lettered'],
  ['runner_effects_called_total', 'effects called'],
  ['runner_effects_failed_total', 'effects failed'],
  ['runner_timers_fired_total', 'timers fired'],
  ['runner_outbox_depth', 'outbox items now'],
  ['runner_quarantine_records', 'quarantine records now'],
  ['runner_dead_letters', 'dead letters now'],
  ['runner_store_used_bytes', 'store bytes in use'],
  ['runner_draining', 'draining (1 = yes)'],
];

// ---- DOM helpers: text only ----

function $(id) {
  return document.getElementById(id);
}

// An element with a class (or none) and children: strings become text nodes.
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A link to a view of this page (the hash is built here, never taken from data).
function viewLink(text, hash) {
  const a = el('a', null, text);
  a.href = hash;
  return a;
}

function button(text, onClick) {
  const b = el('button', null, text);
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

function clear(node) {
  node.replaceChildren();
  return node;
}

// Fills a table: `columns` are header texts, `rows` arrays of cells (text or nodes).
function fillTable(table, columns, rows, empty) {
  clear(table);
  const head = el('tr');
  for (const c of columns) head.append(el('th', null, c));
  table.append(el('thead', null, head));
  const body = el('tbody');
  for (const row of rows) {
    const tr = el('tr');
    for (const cell of row) tr.append(el('td', null, cell));
    body.append(tr);
  }
  if (rows.length === 0) {
    const td = el('td', 'muted', empty || 'none');
    td.colSpan = columns.length;
    body.append(el('tr', null, td));
  }
  table.append(body);
}

function fillList(dl, pairs) {
  clear(dl);
  for (const [term, value] of pairs) {
    dl.append(el('dt', null, term), el('dd', null, value));
  }
}

function json(value) {
  return el('pre', 'json', JSON.stringify(value, null, 2));
}

function show(message, isError) {
  const notice = $('notice');
  notice.textContent = message || '';
  notice.className = isError ? 'error' : '';
}

// ---- the token and the API ----

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function showTokenState() {
  $('token-state').textContent = token() ? 'token set (this tab only)' : 'no token: admin views need it';
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A call to /admin/*: JSON in, JSON out, the token as a bearer header.
async function admin(path, body) {
  if (!token()) throw new ApiError(0, 'enter the admin token first (admin views show tenant data)');
  const init = {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: 'Bearer ' + token() },
    cache: 'no-store',
    credentials: 'omit',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  let data = null;
  try {
    data = await answer.json();
  } catch (_) {
    data = null;
  }
  if (!answer.ok) {
    const said = data && typeof data.error === 'string' ? data.error : answer.statusText;
    if (answer.status === 401) throw new ApiError(401, 'the admin token was refused (401): enter it again');
    if (answer.status === 403) throw new ApiError(403, 'admin endpoints are closed on this process: ' + said);
    throw new ApiError(answer.status, 'HTTP ' + answer.status + ': ' + said);
  }
  return data;
}

// An endpoint that needs no token (/health, /ready, /info, /metrics): its status and
// body, whatever the status.
async function unauthenticated(path, asText) {
  const answer = await fetch(path, { cache: 'no-store', credentials: 'omit' });
  const body = asText ? await answer.text() : await answer.json();
  return { status: answer.status, body };
}

// A query string of the parameters that are set (an empty text is set: `tenant=` is
// the single tenant's records).
function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) q.set(k, v);
  }
  return q.toString();
}

// `_` (or nothing) is the single tenant: the instance API spells it `_`, the
// quarantine and dead-letter API `""`.
function instanceTenant(t) {
  return t === '' ? '_' : t;
}
function recordTenant(t) {
  return t === '_' ? '' : t;
}

function instancePath(tenant, saga, correlation) {
  return [instanceTenant(tenant), saga, correlation].map(encodeURIComponent).join('/');
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

function setForm(form, values) {
  for (const [k, v] of Object.entries(values)) {
    const field = form.elements.namedItem(k);
    if (!field) continue;
    if (field.type === 'checkbox') field.checked = v === 'true' || v === 'on';
    else field.value = v;
  }
}

// ---- views ----

const views = ['overview', 'instances', 'instance', 'quarantine', 'deadletters'];
let overviewTimer = null;

function showView(name) {
  for (const v of views) $('view-' + v).hidden = v !== name;
  for (const a of document.querySelectorAll('#views a')) {
    a.classList.toggle('current', a.dataset.view === name || (name === 'instance' && a.dataset.view === 'instances'));
  }
  if (overviewTimer) clearInterval(overviewTimer);
  overviewTimer = null;
  if (name === 'overview') {
    refreshOverview();
    overviewTimer = setInterval(refreshOverview, OVERVIEW_EVERY_MS);
  }
}

// The hash says which view and what it shows: `#/instances?tenant=…`,
// `#/instance/{tenant}/{saga}/{correlation}` (parts percent-encoded).
function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, search] = hash.split('?');
  const params = Object.fromEntries(new URLSearchParams(search || ''));
  const parts = path.split('/').map(decodeURIComponent);
  show('');
  switch (parts[0]) {
    case 'instances':
      showView('instances');
      setForm($('instances-form'), params);
      if (params.tenant && params.saga) listInstances(params.after || '');
      break;
    case 'instance':
      showView('instance');
      if (parts.length === 4) showInstance(parts[1], parts[2], parts[3]);
      break;
    case 'quarantine':
      showView('quarantine');
      setForm($('quarantine-form'), params);
      if (params.tenant !== undefined || params.unattributed) listQuarantine();
      break;
    case 'deadletters':
      showView('deadletters');
      setForm($('deadletters-form'), params);
      if (params.tenant !== undefined) listDeadLetters();
      break;
    default:
      showView('overview');
  }
}

function failed(error) {
  show(error.message || String(error), true);
}

// ---- overview: health, mode, what is loaded, counters ----

function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const name = line.slice(0, space);
    if (!name.includes('{')) values.set(name, Number(line.slice(space + 1)));
  }
  return values;
}

async function refreshOverview() {
  try {
    const [health, ready, info, metrics] = await Promise.all([
      unauthenticated('/health'),
      unauthenticated('/ready'),
      unauthenticated('/info'),
      unauthenticated('/metrics', true),
    ]);
    const i = info.body;
    fillList($('process'), [
      ['health', health.status === 200 ? 'healthy' : 'unhealthy (' + health.status + ')'],
      ['checks', json(health.body)],
      ['ready', ready.status === 200 ? 'ready' : 'not ready (' + ready.status + ')'],
      ['readiness', json(ready.body)],
      ['mode', i.mode],
      ['version', i.version + ' (' + i.git_sha + ')'],
      ['consumers', (i.consumers || []).join(', ')],
    ]);
    const values = parseMetrics(metrics.body);
    fillTable(
      $('counters'),
      ['counter', 'value', 'metric'],
      KEY_COUNTERS.filter(([m]) => values.has(m)).map(([m, label]) => [label, String(values.get(m)), m]),
    );
    fillTable(
      $('sagas'),
      ['saga', 'new instances start on', 'versions loaded', ''],
      (i.sagas || []).map((s) => [s.name, String(s.version), (s.versions || []).join(', '),
        viewLink('instances', '#/instances?' + query({ saga: s.name }))]),
    );
    fillTable($('effects'), ['effect', 'provider'], (i.effects || []).map((e) => [e.name, e.provider]));
    const counts = (i.instances && i.instances.counts) || [];
    fillTable(
      $('instance-counts'),
      ['saga', 'version', 'status', 'instances'],
      counts.map((c) => [c.saga, String(c.version), c.status, String(c.instances)]),
    );
    fillSagaNames(i.sagas || []);
    const updated = $('overview-updated');
    updated.textContent = new Date().toLocaleTimeString();
    updated.dataset.refreshes = String(Number(updated.dataset.refreshes) + 1);
  } catch (e) {
    failed(e);
  }
}

// Suggestions for the saga fields, whichever view the page opens on.
async function loadSagaNames() {
  try {
    fillSagaNames((await unauthenticated('/info')).body.sagas || []);
  } catch (e) {
    failed(e);
  }
}

function fillSagaNames(sagas) {
  const list = clear($('saga-names'));
  for (const s of sagas) {
    const option = el('option');
    option.value = s.name;
    list.append(option);
  }
}

// ---- instances: a page at a time, narrowed by status and version ----

let pagesBack = [];

function instancesFilter() {
  const f = formValues($('instances-form'));
  return { tenant: f.tenant, saga: f.saga, status: f.status, version: f.version, limit: f.limit };
}

async function listInstances(after) {
  const f = instancesFilter();
  try {
    const page = await admin('/admin/instances?' + query({ ...f, tenant: instanceTenant(f.tenant), after }));
    fillTable(
      $('instances'),
      ['correlation', 'status', 'version', 'transitions', 'updated at', 'next timer'],
      page.instances.map((i) => [
        viewLink(i.correlation, '#/instance/' + instancePath(f.tenant, f.saga, i.correlation)),
        el('span', 'status status-' + i.status, i.status),
        String(i.version),
        String(i.transitions),
        i.updated_at || '',
        i.next_timer || '',
      ]),
      'no instances match',
    );
    const next = $('next-page');
    next.disabled = !page.next;
    next.dataset.after = page.next || '';
    $('previous-page').disabled = pagesBack.length === 0;
    $('first-page').disabled = !after;
    $('page-info').textContent = 'page ' + (pagesBack.length + 1) + (page.scan_truncated ? ' (scan stopped early: narrow the filter)' : '');
  } catch (e) {
    failed(e);
  }
}

function pageTo(after, back) {
  const f = instancesFilter();
  history.replaceState(null, '', '#/instances?' + query({ ...f, after }));
  pagesBack = back;
  listInstances(after);
}

function currentAfter() {
  return new URLSearchParams(location.hash.split('?')[1] || '').get('after') || '';
}

// ---- one instance: state, timers, outbox, history ----

let shownInstance = null;

async function showInstance(tenant, saga, correlation) {
  shownInstance = [tenant, saga, correlation];
  $('instance-title').textContent = saga + ' / ' + correlation + ' (tenant ' + instanceTenant(tenant) + ')';
  const path = '/admin/instances/' + instancePath(tenant, saga, correlation);
  try {
    const i = await admin(path);
    fillList($('instance-summary'), [
      ['status', el('span', 'status status-' + i.status, i.status)],
      ['version', String(i.version)],
      ['transitions', String(i.transitions)],
      ['updated at', i.updated_at || ''],
      ['last event', i.last_event_id || ''],
      ['fault', i.fault ? json(i.fault) : 'none'],
    ]);
    $('instance-state').textContent = JSON.stringify(i.state, null, 2);
    fillTable($('instance-timers'), ['timer', 'due at'], i.timers.map((t) => [t.name, t.due_at]), 'no pending timers');
    fillTable(
      $('instance-outbox'),
      ['kind', 'destination', 'envelope', 'key'],
      i.outbox.map((o) => [o.kind, o.destination, json(o.envelope), o.key]),
      'nothing waiting to be sent',
    );
  } catch (e) {
    clear($('instance-summary'));
    $('instance-state').textContent = '';
    clear($('history'));
    $('history-note').textContent = '';
    failed(e.status === 404 ? new Error('no such instance: ' + e.message) : e);
    return;
  }
  await showHistory(path + '/history');
}

async function showHistory(path) {
  const list = clear($('history'));
  const note = $('history-note');
  try {
    const h = await admin(path);
    note.textContent = h.entries.length + ' transitions shown' +
      (h.dropped ? '; ' + h.dropped + ' in the middle dropped (the first and the last are kept)' : '');
    let previous = 0;
    for (const entry of h.entries) {
      if (previous && entry.n > previous + 1) {
        list.append(el('li', 'gap', (entry.n - previous - 1) + ' transitions not kept'));
      }
      previous = entry.n;
      list.append(historyEntry(entry));
    }
  } catch (e) {
    if (e.status === 401 || e.status === 0) {
      note.textContent = '';
      failed(e);
      return;
    }
    // Any other refusal: this process keeps no history of the instance (or has no
    // history endpoint).
    note.textContent = 'history not available (' + e.message + ')';
  }
}

function historyEntry(entry) {
  const event = entry.event || {};
  const item = el('li', 'entry');
  item.value = entry.n;
  item.append(
    el('div', 'entry-head',
      el('span', 'n', '#' + entry.n), ' ', el('time', null, entry.at), ' ',
      el('strong', null, event.type || ''), ' ',
      el('span', 'status', (entry.status_before === null ? 'start' : entry.status_before) + ' → ' + entry.status_after)),
    el('div', 'entry-event', 'event ' + (event.id || '') + ' on ' + (event.subject || '') +
      ' (' + (event.stream || '') + ' #' + (event.seq === undefined ? '' : event.seq) + ')'),
  );
  const facts = [
    ['commands', entry.commands],
    ['timers set', entry.timers],
    ['timers cancelled', entry.cancelled],
  ].filter(([, v]) => v && v.length);
  for (const [label, values] of facts) item.append(el('div', 'entry-fact', label + ': ' + values.join(', ')));
  item.append(el('div', 'entry-fact', 'gas ' + entry.gas));
  if (entry.fault) item.append(el('div', 'entry-fault', 'fault: ' + entry.fault));
  return item;
}

// ---- quarantine records: list, retry, discard ----

let listedQuarantine = [];

function quarantineSelection() {
  const f = formValues($('quarantine-form'));
  const selection = { limit: Number(f.limit) || 100 };
  if (f.unattributed) selection.unattributed = true;
  else selection.tenant = recordTenant(f.tenant || '');
  for (const k of ['saga', 'kind', 'reason']) if (f[k]) selection[k] = f[k];
  return selection;
}

async function listQuarantine() {
  const s = quarantineSelection();
  try {
    const answer = await admin('/admin/quarantine?' + query({ ...s, unattributed: s.unattributed ? 'true' : undefined }));
    listedQuarantine = answer.records.map((r) => r.key);
    fillTable(
      $('quarantine'),
      ['kind', 'reason', 'saga', 'correlation', 'message', 'quarantined at', 'body (start)', ''],
      answer.records.map(({ key, record: r }) => [
        r.kind,
        r.reason,
        r.saga || '',
        r.correlation_id || '',
        r.stream + ' #' + r.seq + ' ' + r.subject + ' (delivered ' + r.delivered + ')',
        r.quarantined_at || '',
        el('pre', 'excerpt', r.body_excerpt),
        el('span', 'actions',
          button('Retry', () => retryQuarantine([key])),
          button('Discard', () => discardQuarantine([key]))),
      ]),
      'no quarantine records match',
    );
    $('quarantine-retry-all').disabled = listedQuarantine.length === 0;
    $('quarantine-discard-all').disabled = listedQuarantine.length === 0;
  } catch (e) {
    failed(e);
  }
}

function withKeys(keys) {
  const s = quarantineSelection();
  return { tenant: s.tenant, unattributed: s.unattributed, keys, limit: Math.max(keys.length, 1) };
}

async function retryQuarantine(keys) {
  if (!confirm('Retry ' + keys.length + ' quarantined message(s)? Each is read back from its stream and runs through the pipeline with the manifests in force now.')) return;
  try {
    const answer = await admin('/admin/quarantine/retry', withKeys(keys));
    fillTable(
      $('quarantine-results'),
      ['message', 'outcome', 'detail'],
      answer.results.map((r) => [r.stream + ' #' + r.seq, el('span', 'outcome outcome-' + r.outcome, r.outcome),
        r.reason || (r.transitions === undefined ? '' : r.transitions + ' transition(s)')]),
      'nothing was retried (the records are gone)',
    );
    await listQuarantine();
  } catch (e) {
    failed(e);
  }
}

async function discardQuarantine(keys) {
  if (!confirm('Discard ' + keys.length + ' quarantine record(s)? Their messages will not be applied.')) return;
  try {
    const answer = await admin('/admin/quarantine/discard', withKeys(keys));
    fillTable($('quarantine-results'), ['discarded'], answer.keys.map((k) => [k]), 'nothing discarded');
    await listQuarantine();
  } catch (e) {
    failed(e);
  }
}

// ---- dead letters: list, retry (back into the outbox), discard ----

let listedDeadLetters = [];

function deadLetterSelection() {
  const f = formValues($('deadletters-form'));
  const selection = { tenant: recordTenant(f.tenant || ''), limit: Number(f.limit) || 100 };
  for (const k of ['saga', 'kind', 'reason']) if (f[k]) selection[k] = f[k];
  return selection;
}

async function listDeadLetters() {
  const s = deadLetterSelection();
  try {
    const answer = await admin('/admin/deadletters?' + query(s));
    listedDeadLetters = answer.records.map((r) => r.key);
    fillTable(
      $('deadletters'),
      ['kind', 'saga', 'correlation', 'command', 'destination', 'reason', 'attempts', 'dead at', 'envelope', ''],
      answer.records.map((r) => [
        r.kind, r.saga, r.correlation, r.command_id, r.destination,
        r.reason + (r.status ? ' (HTTP ' + r.status + ')' : ''), String(r.attempts), r.dead_at,
        json(r.envelope),
        el('span', 'actions',
          button('Retry', () => retryDeadLetters([r.key])),
          button('Discard', () => discardDeadLetters([r.key]))),
      ]),
      'no dead letters match',
    );
    $('deadletters-retry-all').disabled = listedDeadLetters.length === 0;
    $('deadletters-discard-all').disabled = listedDeadLetters.length === 0;
  } catch (e) {
    failed(e);
  }
}

function deadLetterKeys(keys) {
  return { tenant: deadLetterSelection().tenant, keys, limit: Math.max(keys.length, 1) };
}

async function retryDeadLetters(keys) {
  if (!confirm('Put ' + keys.length + ' dead letter(s) back into the outbox? The relay sends them again.')) return;
  try {
    const answer = await admin('/admin/deadletters/retry', deadLetterKeys(keys));
    $('deadletters-result').textContent = answer.redriven + ' put back into the outbox: ' + answer.command_ids.join(', ');
    await listDeadLetters();
  } catch (e) {
    failed(e);
  }
}

async function discardDeadLetters(keys) {
  if (!confirm('Discard ' + keys.length + ' dead letter(s)? Their work is not sent.')) return;
  try {
    const answer = await admin('/admin/deadletters/discard', deadLetterKeys(keys));
    $('deadletters-result').textContent = answer.discarded + ' discarded';
    await listDeadLetters();
  } catch (e) {
    failed(e);
  }
}

// ---- shards: links to the other shards' consoles ----

async function showShards() {
  try {
    const { body } = await unauthenticated('/ui/shards');
    if (body.this) $('shard-name').textContent = '· shard ' + body.this;
    const nav = clear($('shards'));
    for (const url of body.shards || []) {
      if (!/^https?:\/\//.test(url)) continue;
      const a = el('a', null, url);
      a.href = url.replace(/\/+$/, '') + '/ui';
      a.rel = 'noopener noreferrer';
      nav.append(a);
    }
    if (nav.childElementCount) nav.prepend(el('span', 'muted', 'other shards: '));
  } catch (e) {
    failed(e);
  }
}

// ---- wiring ----

function submitted(form, action) {
  $(form).addEventListener('submit', (event) => {
    event.preventDefault();
    action();
  });
}

document.addEventListener('DOMContentLoaded', () => {
  submitted('token-form', () => {
    const field = $('token');
    if (field.value.trim()) sessionStorage.setItem(TOKEN_KEY, field.value.trim());
    field.value = '';
    showTokenState();
    route();
  });
  $('forget-token').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
  });
  submitted('instances-form', () => pageTo('', []));
  submitted('find-form', () => {
    const f = instancesFilter();
    const corr = formValues($('find-form')).correlation;
    if (!f.tenant || !f.saga) return show('give the tenant and saga above first', true);
    location.hash = '#/instance/' + instancePath(f.tenant, f.saga, corr);
  });
  $('next-page').addEventListener('click', () => {
    pageTo($('next-page').dataset.after, [...pagesBack, currentAfter()].slice(-MAX_PAGES_BACK));
  });
  $('previous-page').addEventListener('click', () => {
    pageTo(pagesBack[pagesBack.length - 1] || '', pagesBack.slice(0, -1));
  });
  $('first-page').addEventListener('click', () => pageTo('', []));
  $('instance-refresh').addEventListener('click', () => shownInstance && showInstance(...shownInstance));
  submitted('quarantine-form', () => {
    const f = formValues($('quarantine-form'));
    history.replaceState(null, '', '#/quarantine?' + query({ ...f, tenant: f.tenant || '_' }));
    listQuarantine();
  });
  $('quarantine-retry-all').addEventListener('click', () => retryQuarantine(listedQuarantine));
  $('quarantine-discard-all').addEventListener('click', () => discardQuarantine(listedQuarantine));
  submitted('deadletters-form', () => {
    const f = formValues($('deadletters-form'));
    history.replaceState(null, '', '#/deadletters?' + query({ ...f, tenant: f.tenant || '_' }));
    listDeadLetters();
  });
  $('deadletters-retry-all').addEventListener('click', () => retryDeadLetters(listedDeadLetters));
  $('deadletters-discard-all').addEventListener('click', () => discardDeadLetters(listedDeadLetters));
  window.addEventListener('hashchange', route);
  showTokenState();
  showShards();
  loadSagaNames();
  route();
});
