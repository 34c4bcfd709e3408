import cytoscape from 'cytoscape';
import dagre from 'cytoscape-dagre';
import './style.css';

cytoscape.use(dagre);

const POLL_MS = 3000;
const state = { graph: null, services: [], proxies: [], detail: null, selected: null, shape: '' };
// Tests and curious users read the live state here.
window.trellisDashboard = state;

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function fmtRate(r) {
  if (!r) return '0';
  if (r >= 100) return r.toFixed(0);
  if (r >= 10) return r.toFixed(1);
  return r.toFixed(2);
}
function fmtPct(f) {
  if (!f) return '0%';
  const p = f * 100;
  return (p < 1 ? p.toFixed(2) : p.toFixed(1)) + '%';
}
function fmtMs(ms) {
  if (ms == null) return '';
  if (ms >= 1000) return (ms / 1000).toFixed(2) + 's';
  if (ms >= 10) return ms.toFixed(0) + 'ms';
  return ms.toFixed(1) + 'ms';
}

async function getJSON(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

// ---- graph ----

function nodeLabel(n) {
  if (n.kind === 'service') return n.name;
  if (n.kind === 'unknown') return n.name;
  return n.version && !n.name.endsWith(n.version) ? `${n.name}\n${n.version}` : n.name;
}

function edgeLabel(e) {
  if (!e.reporter) return '';
  const parts = [`${fmtRate(e.rps)} rps`, fmtPct(e.errorRate)];
  if (e.p99 != null) parts.push(`p99 ${fmtMs(e.p99)}`);
  return (e.mtls ? 'mTLS · ' : '') + parts.join(' · ');
}

function edgeClass(e) {
  if (!e.reporter || !e.rps) return 'idle';
  if (e.errorRate > 0.05) return 'bad';
  if (e.errorRate > 0) return 'warn';
  return 'ok';
}

function cyStyle() {
  return [
    { selector: 'node', style: {
      label: 'data(label)', 'text-wrap': 'wrap', 'text-valign': 'bottom', 'text-margin-y': 6,
      color: css('--text'), 'font-size': 12, 'text-outline-color': css('--label-bg'), 'text-outline-width': 2,
      width: 34, height: 34, 'background-color': css('--node-wl'), 'border-width': 2, 'border-color': css('--panel'),
    } },
    { selector: 'node[kind = "service"]', style: { shape: 'round-triangle', 'background-color': css('--node-svc'), width: 38, height: 34 } },
    { selector: 'node[kind = "gateway"]', style: { shape: 'round-hexagon', 'background-color': css('--node-gw') } },
    { selector: 'node[kind = "unknown"]', style: { 'background-color': css('--node-unknown') } },
    { selector: 'node[sync = "NACKED"]', style: { 'border-color': css('--bad'), 'border-width': 3 } },
    { selector: 'node[sync = "STALE"]', style: { 'border-color': css('--warn'), 'border-width': 3 } },
    { selector: 'node:selected', style: { 'border-color': css('--accent'), 'border-width': 4 } },
    { selector: 'edge', style: {
      'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'arrow-scale': 1.1,
      width: 'data(width)', 'line-color': css('--ok'), 'target-arrow-color': css('--ok'),
      label: 'data(label)', 'font-size': 11, color: css('--text'), 'text-rotation': 'autorotate',
      'text-background-color': css('--label-bg'), 'text-background-opacity': 0.9, 'text-background-padding': 2,
      'text-background-shape': 'roundrectangle',
    } },
    { selector: 'edge.warn', style: { 'line-color': css('--warn'), 'target-arrow-color': css('--warn') } },
    { selector: 'edge.bad', style: { 'line-color': css('--bad'), 'target-arrow-color': css('--bad') } },
    { selector: 'edge.idle', style: { 'line-color': css('--idle'), 'target-arrow-color': css('--idle'), 'line-style': 'dashed', width: 1.5 } },
  ];
}

const cy = cytoscape({
  container: $('#graph'),
  style: cyStyle(),
  wheelSensitivity: 0.3,
  minZoom: 0.3,
  maxZoom: 2.5,
});
state.cy = cy;

function renderGraph(g) {
  const shape = g.nodes.map((n) => n.id).join('|') + '#' + g.edges.map((e) => e.id).join('|');
  const maxRps = Math.max(1, ...g.edges.map((e) => e.rps || 0));
  const elements = [
    ...g.nodes.map((n) => ({ group: 'nodes', data: { ...n, label: nodeLabel(n) } })),
    ...g.edges.map((e) => ({
      group: 'edges',
      classes: edgeClass(e),
      data: { ...e, p99: e.p99 ?? null, label: edgeLabel(e), width: 1.5 + 4 * Math.sqrt((e.rps || 0) / maxRps) },
    })),
  ];
  if (shape !== state.shape) {
    cy.elements().remove();
    cy.add(elements);
    cy.layout({ name: 'dagre', rankDir: 'LR', nodeSep: 40, rankSep: 170, edgeSep: 20, padding: 40, fit: true }).run();
    if (cy.zoom() > 1.4) { cy.zoom(1.4); cy.center(); }
    state.shape = shape;
  } else {
    for (const el of elements) {
      const c = cy.getElementById(el.data.id);
      c.data(el.data);
      if (el.group === 'edges') c.classes(el.classes);
    }
  }
  $('#graph-empty').hidden = g.nodes.length > 0;
}

cy.on('tap', 'node', (ev) => {
  const n = ev.target.data();
  if (n.kind === 'service' && n.namespace) select(n.namespace, n.name);
});

// ---- side panel ----

function renderServices() {
  const rows = state.services.map((s) => {
    const sel = state.selected && state.selected.ns === s.namespace && state.selected.name === s.name;
    return `<tr class="clickable${sel ? ' selected' : ''}" data-ns="${esc(s.namespace)}" data-name="${esc(s.name)}">
      <td>${esc(s.name)} <span class="ns">${esc(s.namespace)}</span></td>
      <td class="num">${fmtRate(s.rps)}</td><td class="num">${fmtPct(s.errorRate)}</td>
      <td class="num">${s.routing}</td><td class="num">${s.findings ? `<span class="badge warning">${s.findings}</span>` : '0'}</td></tr>`;
  });
  $('#services-table tbody').innerHTML = rows.join('') || '<tr><td colspan="5" class="none">no services</td></tr>';
}

$('#services-table tbody').addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr[data-ns]');
  if (tr) select(tr.dataset.ns, tr.dataset.name);
});

function badge(s) {
  return `<span class="badge ${esc(s)}">${esc(s)}</span>`;
}

const XDS = ['CDS', 'LDS', 'EDS', 'RDS'];

// One row per proxy; compact puts the per-type states in one cell.
function proxyRows(ps, compact) {
  return ps.map((p) => {
    const types = compact
      ? `<td class="xds">${XDS.map((t) => `<span class="badge ${esc(p.types?.[t] || 'none')}" title="${t}: ${esc(p.types?.[t] || 'not sent')}">${t[0]}</span>`).join('')}</td>`
      : XDS.map((t) => `<td>${badge(p.types?.[t] || 'none')}</td>`).join('');
    return `<tr data-proxy="${esc(p.id)}"><td class="proxy">${esc(p.workload || p.id)}${p.nack ? `<div class="reason">${esc(p.nack)}</div>` : ''}</td>
      <td>${esc(p.ip || '')}</td><td>${badge(p.sync)}</td>${types}</tr>`;
  }).join('');
}

function splitBars(kind, shares) {
  return shares.map((s) => `<div class="split-row" data-kind="${kind}" data-subset="${esc(s.subset)}" data-weight="${s.weight.toFixed(1)}">
    <span>${esc(s.subset || '(all)')}</span><div class="bar ${kind}"><i style="width:${Math.min(100, s.weight).toFixed(1)}%"></i></div>
    <span class="num">${s.weight.toFixed(1)}%</span></div>`).join('');
}

function renderDetail() {
  const d = state.detail;
  const el = $('#detail');
  if (!d) { el.hidden = true; return; }
  el.hidden = false;
  const sp = d.split;
  const configured = sp.configured.length
    ? `<div class="split-note">${esc(sp.route)}</div>${splitBars('configured', sp.configured)}`
    : '<div class="split-note">no VirtualService: calls are load-balanced over all endpoints</div>';
  const measured = sp.measured.length
    ? splitBars('measured', sp.measured)
    : '<div class="split-note">no traffic measured in the window</div>';
  const cfg = [...d.virtualServices, ...d.destinationRules].map((o) => `<details><summary>${esc(o.kind)} ${esc(o.namespace)}/${esc(o.name)}</summary>
      <div class="ns">${esc(o.source || '')}</div><pre>${esc(JSON.stringify(o.spec, null, 2))}</pre></details>`).join('')
    || '<div class="none">no VirtualService or DestinationRule for this host</div>';
  const findings = d.findings.map((f) => `<div class="finding">${badge(f.severity)} ${f.resource ? esc(f.resource) + ': ' : ''}${f.field ? `<code>${esc(f.field)}</code> ` : ''}${esc(f.message)}
      ${f.source && !f.message.startsWith(f.source) ? `<div class="ns">${esc(f.source)}</div>` : ''}</div>`).join('') || '<div class="none">no findings</div>';
  const errors = d.errors.length ? `<table class="list"><thead><tr><th>from → to</th><th>code</th><th>reason</th><th class="num">req/s</th></tr></thead><tbody>
      ${d.errors.map((e) => `<tr><td>${esc(e.source)} → ${esc(e.target || d.name)}<div class="ns">${esc(e.reporter)} proxy</div></td>
        <td>${esc(e.code)}${e.flags ? ` <span class="ns">${esc(e.flags)}</span>` : ''}</td><td class="reason">${esc(e.reason)}</td>
        <td class="num">${fmtRate(e.rps)}</td></tr>`).join('')}</tbody></table>`
    : '<div class="none">no failed calls in the window</div>';
  const proxies = d.proxies.length ? `<table class="list"><thead><tr><th>proxy</th><th>IP</th><th>status</th><th title="CDS LDS EDS RDS">xDS</th></tr></thead>
      <tbody>${proxyRows(d.proxies, true)}</tbody></table>` : '<div class="none">no connected proxy at its endpoints</div>';
  el.innerHTML = `<button class="back" type="button" id="back">← all services</button>
    <h2 id="detail-name">${esc(d.name)} <span class="ns">${esc(d.namespace)}</span></h2>
    <div class="host">${esc(d.host)}</div>
    <div class="stats">
      <div class="stat"><b>${fmtRate(d.rps)}</b><span>req/s</span></div>
      <div class="stat"><b>${fmtPct(d.errorRate)}</b><span>5xx</span></div>
      <div class="stat"><b>${d.endpoints}</b><span>endpoints</span></div>
    </div>
    <h3>Traffic split — configured</h3><div id="split-configured">${configured}</div>
    <h3>Traffic split — measured</h3><div id="split-measured">${measured}</div>
    <h3>Routing config</h3>${cfg}
    <h3>Validation</h3><div id="findings">${findings}</div>
    <h3>Proxies</h3>${proxies}
    <h3>Recent errors</h3><div id="errors">${errors}</div>`;
  $('#back').onclick = () => { state.selected = null; state.detail = null; $('#services-table').hidden = false; renderDetail(); renderServices(); };
}

async function select(ns, name) {
  state.selected = { ns, name };
  switchTab('services');
  $('#services-table').hidden = true;
  await refreshDetail();
  renderServices();
}

async function refreshDetail() {
  if (!state.selected) return;
  const { ns, name } = state.selected;
  try {
    state.detail = await getJSON(`api/services/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  } catch (e) {
    state.detail = null;
  }
  renderDetail();
}

function switchTab(name) {
  document.querySelectorAll('.tabs button').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
  $('#tab-services').hidden = name !== 'services';
  $('#tab-proxies').hidden = name !== 'proxies';
}
document.querySelectorAll('.tabs button').forEach((b) => { b.onclick = () => switchTab(b.dataset.tab); });

// ---- status and theme ----

function renderStatus(g) {
  const scrapes = g.scrapes || [];
  const failed = scrapes.filter((s) => s.error);
  const src = g.source === 'prometheus' ? `Prometheus ${esc(scrapes[0]?.url || '')}` : `scraping ${scrapes.length} prox${scrapes.length === 1 ? 'y' : 'ies'}`;
  const when = g.updated ? new Date(g.updated).toLocaleTimeString() : '—';
  let s = `<span class="live">● live</span> · ${src} · window ${esc(g.window)} · updated ${esc(when)}`;
  if (g.error) s += ` · <span class="err">${esc(g.error)}</span>`;
  else if (failed.length) s += ` · <span class="err" title="${esc(failed.map((f) => f.proxy + ': ' + f.error).join('\n'))}">${failed.length} scrape error${failed.length > 1 ? 's' : ''}</span>`;
  $('#status').innerHTML = s;
}

function applyTheme(t) {
  document.documentElement.dataset.theme = t;
  localStorage.setItem('trellis-theme', t);
  $('#theme-name').textContent = t === 'dark' ? 'dark' : 'light';
  cy.style(cyStyle());
}
$('#theme-toggle').onclick = () => applyTheme(document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark');
$('#theme-name').textContent = document.documentElement.dataset.theme;

// ---- polling ----

async function refresh() {
  try {
    const [g, services, proxies] = await Promise.all([getJSON('api/graph'), getJSON('api/services'), getJSON('api/proxies')]);
    state.graph = g;
    state.services = services;
    state.proxies = proxies.proxies;
    renderGraph(g);
    renderStatus(g);
    renderServices();
    $('#proxies-table tbody').innerHTML = proxyRows(state.proxies) || '<tr><td colspan="7" class="none">no proxies connected</td></tr>';
    await refreshDetail();
    state.updates = (state.updates || 0) + 1;
  } catch (e) {
    $('#status').innerHTML = `<span class="err">● ${esc(e.message)}</span>`;
  }
}

refresh();
setInterval(refresh, POLL_MS);
