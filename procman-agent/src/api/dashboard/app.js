// procman's dashboard: a page over the agent's public API, nothing else. Data is written
// into the page with textContent only (never as HTML), and the page's Content-Security-Policy
// allows no other script. The API token (TCP) is kept in sessionStorage; `#token=...` in the
// address sets it (a fragment never reaches a server or its logs).
'use strict';

const $ = (s) => document.querySelector(s);
let token = sessionStorage.getItem('procman-token') || '';
let caller = { allowed: ['read'] };
let selected = null;
let startTab = null;

(function tokenFromFragment() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get('token')) {
    token = h.get('token');
    sessionStorage.setItem('procman-token', token);
  }
  if (h.get('pid')) selected = Number(h.get('pid'));
  if (h.get('tab')) startTab = h.get('tab');
  if (h.get('token') || h.get('pid') || h.get('tab')) history.replaceState(null, '', location.pathname);
})();

function showError(msg) {
  const e = $('#error');
  e.textContent = msg || '';
  e.hidden = !msg;
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401) {
    $('#login').hidden = false;
    throw new Error((body && body.error) || 'the API token is missing or wrong');
  }
  if (!r.ok) throw new Error((body && body.error) || r.status + ' ' + r.statusText);
  return body;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function bytes(n) {
  const u = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + u[i];
}

function age(s) {
  s = Math.floor(s);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  return Math.floor(s / 86400) + 'd' + String(Math.floor((s % 86400) / 3600)).padStart(2, '0');
}

const allowed = (a) => caller.allowed.includes(a);

async function refreshHeader() {
  const s = await api('/api/system');
  $('#host').textContent = `${s.cpus} CPUs ${s.cpu_percent.toFixed(0)}% · memory ${s.memory_percent.toFixed(0)}% of ${bytes(s.memory_total_bytes)} · load ${s.load.map((l) => l.toFixed(2)).join(' ')} · ${s.processes} processes`;
}

async function refreshProcesses() {
  const q = new URLSearchParams({ sort: $('#sort').value, limit: '200' });
  const f = $('#filter').value.trim();
  if (f) q.set('filter', f);
  const list = await api('/api/processes?' + q);
  const rows = list.processes || [];
  $('#count').textContent = `${rows.length} shown of ${list.total_processes} · ${list.zombie_count} zombies`;
  const tbody = $('#ps tbody');
  tbody.replaceChildren(...rows.map((p) => {
    const tr = el('tr');
    tr.dataset.pid = p.pid;
    tr.append(
      el('td', p.pid, 'num'), el('td', p.username),
      el('td', p.frozen ? 'frozen' : p.status, p.frozen ? 'frozen' : ''),
      el('td', p.cpu_percent.toFixed(1), 'num'), el('td', p.memory_percent.toFixed(1), 'num'),
      el('td', bytes(p.memory_bytes), 'num'), el('td', p.num_threads, 'num'),
      el('td', age(p.age_seconds), 'num'), el('td', p.cmdline || '[' + p.name + ']', 'cmd'));
    tr.lastChild.title = p.cmdline || p.name;
    tr.addEventListener('click', () => { selected = p.pid; refreshDetail(); });
    return tr;
  }));
}

function chart(history) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', '0 0 600 140');
  svg.setAttribute('preserveAspectRatio', 'none');
  if (history.length < 2) return svg;
  const t0 = Date.parse(history[0].timestamp);
  const t1 = Date.parse(history[history.length - 1].timestamp) || t0 + 1;
  const line = (key, cls) => {
    const max = Math.max(1, ...history.map((h) => h[key]));
    const pts = history.map((h) => {
      const x = ((Date.parse(h.timestamp) - t0) / Math.max(1, t1 - t0)) * 600;
      const y = 135 - (h[key] / max) * 130;
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    const pl = document.createElementNS(ns, 'polyline');
    pl.setAttribute('class', cls);
    pl.setAttribute('points', pts.join(' '));
    const title = document.createElementNS(ns, 'title');
    title.textContent = `${key}: max ${max.toFixed(1)}`;
    pl.append(title);
    svg.append(pl);
  };
  line('cpu_percent', 'cpu');
  line('memory_mb', 'mem');
  return svg;
}

async function act(what, path, confirmText) {
  if (!window.confirm(confirmText)) return;
  try {
    await api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    await refreshDetail();
  } catch (e) { showError(`${what}: ${e.message}`); }
}

async function refreshDetail() {
  const d = $('#detail');
  if (selected === null) { d.hidden = true; return; }
  let p;
  try {
    p = await api(`/api/processes/${selected}`);
  } catch (e) {
    d.hidden = false;
    d.replaceChildren(el('p', `pid ${selected}: ${e.message}`));
    return;
  }
  const dl = el('dl');
  const add = (k, v) => dl.append(el('dt', k), el('dd', v));
  add('command', p.cmdline || '[' + p.name + ']');
  add('user', `${p.username} (uid ${p.uid})`);
  add('status', p.frozen ? `${p.status}, frozen` : p.status);
  add('started', `${p.started_at} (${age(p.age_seconds)} ago)`);
  add('cpu', `${p.cpu_percent.toFixed(1)}% now, ${p.cpu_time_seconds.toFixed(1)} s total`);
  add('memory', `${bytes(p.memory_bytes)} (${p.memory_percent.toFixed(1)}% of RAM)`);
  add('threads · fds', `${p.num_threads} · ${p.num_fds ?? '?'} (${p.connections ?? '?'} sockets, ${p.open_files ?? '?'} files)`);
  add('parent', p.parent_pid);
  add('cgroup', p.cgroup || '-');
  const head = el('h2', `pid ${p.pid} · ${p.name} `);
  const close = el('button', 'close');
  close.addEventListener('click', () => { selected = null; refreshDetail(); });
  head.append(close);
  const parts = [head, dl];
  const buttons = el('div', null, 'actions');
  if (allowed('freeze')) {
    const b = el('button', p.frozen ? 'Thaw' : 'Freeze');
    b.addEventListener('click', () => act(b.textContent, `/api/processes/${p.pid}/${p.frozen ? 'thaw' : 'freeze'}`,
      `${b.textContent} pid ${p.pid} (${p.name})?`));
    buttons.append(b);
  }
  if (allowed('kill')) {
    const b = el('button', 'Terminate');
    b.addEventListener('click', () => act('Terminate', `/api/processes/${p.pid}/kill`,
      `Terminate pid ${p.pid} (${p.name})? SIGTERM, then SIGKILL after the grace period.`));
    buttons.append(b);
  }
  parts.push(buttons);
  try {
    const h = await api(`/api/processes/${p.pid}/history?hours=1`);
    parts.push(el('h3', `last hour: ${h.data_points} points · avg CPU ${h.statistics.avg_cpu.toFixed(1)}% · max ${h.statistics.max_cpu.toFixed(1)}% (red: CPU %, blue: memory MiB)`));
    parts.push(chart(h.history));
  } catch (e) { parts.push(el('p', 'history: ' + e.message)); }
  try {
    const t = await api(`/api/processes/${p.pid}/tree`);
    parts.push(el('h3', `${t.total_children} descendants`));
    const ul = el('ul');
    for (const c of t.children.slice(0, 50)) ul.append(el('li', `${c.pid} ${c.name} (${c.status})`));
    parts.push(ul);
  } catch (e) { parts.push(el('p', 'tree: ' + e.message)); }
  d.replaceChildren(...parts);
  d.hidden = false;
}

async function refreshSlices() {
  const slices = await api('/api/slices').catch((e) => { showError('slices: ' + e.message); return []; });
  $('#slice-table tbody').replaceChildren(...slices.map((s) => {
    const st = s.stats || {};
    const tr = el('tr');
    tr.append(el('td', s.name), el('td', s.pids.length, 'num'),
      el('td', st.memory ? bytes(st.memory.current) : '-', 'num'),
      el('td', st.cpu ? (st.cpu.usage_usec / 1e6).toFixed(1) + ' s' : '-', 'num'),
      el('td', s.limits.map(([k, v]) => `${k}=${v}`).join(' ') || '-'),
      el('td', st.frozen ? 'frozen' : '', 'frozen'));
    return tr;
  }));
}

async function refreshServices() {
  const list = await api('/api/services').catch((e) => { showError('services: ' + e.message); return []; });
  $('#service-table tbody').replaceChildren(...list.map((s) => {
    const tr = el('tr');
    tr.dataset.service = s.name;
    const detail = s.reason || (s.last_exit ? 'last: ' + s.last_exit : '') || '-';
    const buttons = el('td', null, 'actions');
    if (allowed('service')) {
      for (const cmd of ['start', 'stop', 'restart']) {
        const b = el('button', cmd);
        b.addEventListener('click', async () => {
          if (!window.confirm(`${cmd} service ${s.name}?`)) return;
          try {
            await api(`/api/services/${encodeURIComponent(s.name)}/${cmd}`, { method: 'POST' });
          } catch (e) { showError(`${cmd} ${s.name}: ${e.message}`); }
          refreshServices();
        });
        buttons.append(b);
      }
    }
    tr.append(el('td', s.name), el('td', s.state), el('td', s.pid ?? '-', 'num'),
      el('td', s.since), el('td', s.restarts, 'num'), el('td', detail), buttons);
    return tr;
  }));
}

async function refreshPolicies() {
  const list = await api('/api/policies').catch((e) => { showError('policies: ' + e.message); return { policies: [] }; });
  $('#policy-table tbody').replaceChildren(...list.policies.map((p) => {
    const tr = el('tr');
    tr.dataset.policy = p.name;
    tr.append(el('td', p.name), el('td', p.scope), el('td', p.mode),
      el('td', p.note ? `${p.effective_mode} (${p.note})` : p.effective_mode),
      el('td', p.hits, 'num'), el('td', p.actions_taken, 'num'), el('td', p.budget_left, 'num'),
      el('td', `when ${p.when} for ${p.for_seconds}s: ${p.then.join(' → ')}`, 'cmd'));
    return tr;
  }));
}

let follow = null;
async function followEvents() {
  if (follow) { follow.abort(); follow = null; $('#follow').textContent = 'Follow'; return; }
  follow = new AbortController();
  $('#follow').textContent = 'Stop';
  const log = $('#event-log');
  try {
    const r = await fetch('/api/events', { headers: token ? { Authorization: 'Bearer ' + token } : {}, signal: follow.signal });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const e = JSON.parse(line);
          const text = e.lagged ? `(${e.lagged} events skipped)` : `${e.kind} pid ${e.pid} parent ${e.parent_pid} ${e.name}${e.filename ? ' ' + e.filename : ''}`;
          log.prepend(document.createTextNode(text + '\n'));
          while (log.childNodes.length > 300) log.lastChild.remove();
        } catch (_) { /* partial line */ }
      }
    }
  } catch (e) { if (e.name !== 'AbortError') showError('events: ' + e.message); }
}

function tab(name) {
  for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b.dataset.tab === name);
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== name;
  if (name === 'slices') refreshSlices();
  if (name === 'services') refreshServices();
  if (name === 'policies') refreshPolicies();
}

async function tick() {
  try {
    await Promise.all([refreshHeader(), refreshProcesses()]);
    showError('');
  } catch (e) { showError(e.message); }
}

let ticking = null;

async function connect() {
  try {
    caller = await api('/api/whoami');
    $('#caller').textContent = `${caller.who} · may ${caller.allowed.join(', ')}`;
  } catch (e) { showError(e.message); return; }
  $('#login').hidden = true;
  await tick();
  if (selected !== null) await refreshDetail();
  if (startTab) tab(startTab);
  if (!ticking) ticking = setInterval(tick, 2000);
}

function init() {
  for (const b of document.querySelectorAll('nav button')) b.addEventListener('click', () => tab(b.dataset.tab));
  $('#query').addEventListener('submit', (e) => { e.preventDefault(); tick(); });
  $('#sort').addEventListener('change', tick);
  $('#follow').addEventListener('click', followEvents);
  $('#login').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('#token').value.trim();
    sessionStorage.setItem('procman-token', token);
    connect();
  });
  connect();
}

init();
