// myha console: plain JavaScript, no library, no build step.
//
// The page holds no data: this script asks the manager's JSON API with the
// operator's token (taken from the URL fragment `#token=…` or the form,
// kept in this tab's sessionStorage, never in a URL sent to a server).
// Every value comes in through textContent or an SVG text node: nothing
// from the server is ever parsed as HTML.
'use strict';
(() => {
  const TOKEN_KEY = 'myha.token';
  const main = document.getElementById('main');
  const live = document.getElementById('live');
  const enc = encodeURIComponent;
  const SVG = 'http' + '://www.w3.org/2000/svg'; // a namespace name, never fetched

  // ---- small DOM helpers ----------------------------------------------
  function build(ns, tag, attrs, kids) {
    const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') el.textContent = String(v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.setAttribute('class', v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const h = (tag, attrs, ...kids) => build(null, tag, attrs, kids);
  const s = (tag, attrs, ...kids) => build(SVG, tag, attrs, kids);
  // A state: a symbol and a word, the colour only repeats them.
  const SYMBOL = { ok: '✓', warn: '⚠', bad: '✗', info: 'ℹ', none: '–' };
  const st = (cls, word, extra) =>
    h('span', { class: 'st ' + cls, ...(extra || {}) }, `${SYMBOL[cls] || ''} ${word}`);

  function fmtTime(ms) {
    if (!ms) return '–';
    return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }
  function fmtMs(ms) {
    if (ms === undefined || ms === null) return '–';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.round(ms / 60000)} min`;
  }
  const fmtLag = (l) => (l === null || l === undefined ? 'unknown' : `${l.toFixed(1)} s`);
  const onOff = (v) => (v === true ? 'ON' : v === false ? 'OFF' : 'unknown');

  // ---- the token ------------------------------------------------------
  function route() {
    const raw = location.hash.replace(/^#/, '');
    let [path, query] = raw.includes('?') ? raw.split(/\?(.*)/s) : [raw, ''];
    if (path.includes('=')) { query = path; path = '/'; }
    return { path: path || '/', params: new URLSearchParams(query || '') };
  }
  function takeToken() {
    const r = route();
    const t = r.params.get('token');
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    r.params.delete('token');
    const q = r.params.toString();
    history.replaceState(null, '', `${location.pathname}#${r.path}${q ? '?' + q : ''}`);
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  // ---- the API ----------------------------------------------------------
  class ApiError extends Error {
    constructor(status, text) {
      super(`${status}: ${text}`);
      this.status = status;
      this.text = text;
    }
  }
  function withTimeout(signal, ms) {
    const t = AbortSignal.timeout(ms);
    return signal && AbortSignal.any ? AbortSignal.any([signal, t]) : signal || t;
  }
  async function api(path, { method = 'GET', body, signal, timeoutMs = 15000 } = {}) {
    const headers = { Authorization: `Bearer ${token()}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: withTimeout(signal, timeoutMs),
      cache: 'no-store',
    });
    if (!r.ok) {
      const text = (await r.text()).trim();
      if (r.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        setTimeout(render, 0);
      }
      throw new ApiError(r.status, text || r.statusText);
    }
    return r;
  }
  const getJson = async (path, opts) => (await api(path, opts)).json();

  // Each line of a streamed answer, as it arrives.
  async function readLines(resp, onLine) {
    const reader = resp.body.getReader();
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
        onLine(line);
      }
    }
    if (buf) onLine(buf);
  }

  // ---- views: one at a time, stopped when the route changes --------------
  let view = null;
  function newView() {
    if (view) view.stop();
    const ctl = new AbortController();
    const timers = new Set();
    view = {
      signal: ctl.signal,
      alive: () => !ctl.signal.aborted,
      later(fn, ms) {
        const t = setTimeout(() => { timers.delete(t); if (!ctl.signal.aborted) fn(); }, ms);
        timers.add(t);
      },
      stop() { ctl.abort(); timers.forEach(clearTimeout); },
    };
    return view;
  }
  function setLive(text, stale) {
    live.textContent = text;
    live.classList.toggle('stale', !!stale);
  }

  function render() {
    const v = newView();
    const r = route();
    main.replaceChildren();
    document.getElementById('logout').hidden = !token();
    for (const a of document.querySelectorAll('header nav a')) a.removeAttribute('aria-current');
    if (!token()) return viewLogin();
    if (r.path.startsWith('/cluster/')) {
      document.getElementById('nav-clusters').setAttribute('aria-current', 'page');
      return viewCluster(v, decodeURIComponent(r.path.slice('/cluster/'.length)));
    }
    if (r.path.startsWith('/history')) {
      document.getElementById('nav-history').setAttribute('aria-current', 'page');
      return viewHistory(v, r.params);
    }
    document.getElementById('nav-clusters').setAttribute('aria-current', 'page');
    return viewList(v);
  }

  function viewLogin() {
    setLive('');
    const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'off', required: true });
    const form = h('form', {
      class: 'login card',
      onsubmit: (e) => {
        e.preventDefault();
        if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        render();
      },
    },
    h('h1', { text: 'myha console' }),
    h('p', {}, 'Give a token of the manager\'s ', h('code', { text: 'access:' }),
      ' list: a monitor\'s to look, an operator\'s to act. It stays in this tab only.'),
    h('label', { for: 'token-input', text: 'Token' }), input,
    h('button', { type: 'submit', text: 'Open' }));
    main.append(form);
    input.focus();
  }

  // ---- what a cluster's status means --------------------------------------
  function verdictOf(c) {
    const v = c.analysis ? c.analysis.verdict : null;
    if (!v) return st('none', 'no verdict yet');
    if (v === 'healthy') return st('ok', 'healthy');
    if (v === 'dead_master' || v === 'mysqld_down_host_up') return st('bad', v.replace(/_/g, ' '));
    return st('warn', v.replace(/_/g, ' '));
  }
  function readinessOf(c) {
    const r = c.readiness;
    if (!r) return st('bad', 'no failover possible: no candidate known');
    if (r.chosen) return st('ok', `failover would promote ${r.chosen}`);
    return st('bad', `no failover possible: ${r.blocker || 'no eligible replica'}`);
  }
  function maxLag(c) {
    const lags = (c.servers || []).filter((x) => x.name !== c.master)
      .map((x) => x.lag_seconds).filter((l) => l !== null && l !== undefined);
    return lags.length ? Math.max(...lags) : null;
  }
  function blockOf(c) {
    if (c.failover_blocked_until_ms && c.failover_blocked_until_ms > Date.now())
      return st('warn', `automatic failover blocked until ${fmtTime(c.failover_blocked_until_ms)}`);
    return st('ok', 'not blocked');
  }
  function masterOf(c) {
    if (c.master && c.epoch_master && c.master !== c.epoch_master)
      return `${c.master} writable, ${c.epoch_master} on record`;
    return c.master || (c.epoch_master ? `${c.epoch_master} (not writable)` : 'none');
  }

  // ---- the journal, by operation -----------------------------------------
  function operations(events) {
    const ops = new Map();
    for (const e of events) {
      if (!e.operation) continue;
      const key = `${e.cluster}/${e.operation}`;
      if (!ops.has(key)) ops.set(key, { id: e.operation, cluster: e.cluster, events: [] });
      ops.get(key).events.push(e);
    }
    return [...ops.values()].map((op) => {
      // By start (a step's end less its duration): a Gantt chart, the
      // whole operation's `finish` last.
      const begin = (e) => (e.step === 'finish' ? Infinity : e.at_ms - (e.duration_ms || 0));
      op.events.sort((a, b) => begin(a) - begin(b) || a.at_ms - b.at_ms);
      op.kind = op.id.split('-')[0];
      op.start = Math.min(...op.events.map((e) => e.at_ms - (e.duration_ms || 0)));
      op.end = Math.max(...op.events.map((e) => e.at_ms));
      op.outcome = outcomeOf(op.events);
      return op;
    }).sort((a, b) => b.start - a.start);
  }
  function outcomeOf(evs) {
    const finish = evs.find((e) => e.step === 'finish');
    if (finish) return finish.detail.split(' ')[0];
    if (evs.some((e) => e.step === 'rollback')) return 'rolled_back';
    if (evs.some((e) => e.step === 'abort')) return 'aborted';
    if (evs.some((e) => e.status === 'refused')) return 'refused';
    if (evs.some((e) => e.status === 'failed')) return 'failed';
    return 'unfinished';
  }
  function outcomeBadge(o) {
    const cls = o === 'completed' ? 'ok' : o === 'unfinished' ? 'info'
      : o === 'completed_with_errors' || o === 'rolled_back' ? 'warn' : 'bad';
    return st(cls, o.replace(/_/g, ' '), { 'data-outcome': o });
  }

  // ---- the cluster list -------------------------------------------------
  function viewList(v) {
    const body = h('tbody');
    const err = h('p', { class: 'error', role: 'alert' });
    main.append(h('h1', { text: 'Clusters' }), err,
      h('table', { id: 'clusters' },
        h('thead', {}, h('tr', {}, ['Cluster', 'Master', 'Verdict', 'Failover readiness',
          'Max lag', 'Anti-flapping', 'Last operation'].map((t) => h('th', { scope: 'col', text: t })))),
        body));
    // The last operation of each cluster, read from its journal only when
    // the cluster's epoch or operation changed, or every 30 s: with
    // hundreds of clusters, not one journal read per cluster every 2 s.
    const lastOps = new Map();
    const opKey = (c) => `${c.epoch}/${c.in_progress ? JSON.stringify(c.in_progress) : ''}`;
    async function lastOp(c) {
      const had = lastOps.get(c.cluster);
      if (had && had.key === opKey(c) && Date.now() - had.at < 30000) return had.op;
      const op = await getJson(`/v1/clusters/${enc(c.cluster)}/history?limit=300`, { signal: v.signal })
        .then((evs) => operations(evs)[0]).catch(() => (had ? had.op : null));
      lastOps.set(c.cluster, { key: opKey(c), at: Date.now(), op });
      return op;
    }
    async function refresh() {
      try {
        const all = await getJson('/v1/clusters', { signal: v.signal });
        const last = await Promise.all(all.map(lastOp));
        body.replaceChildren(...all.map((c, i) => {
          const op = last[i];
          return h('tr', { 'data-cluster': c.cluster },
            h('td', {}, h('a', { href: `#/cluster/${enc(c.cluster)}`, text: c.cluster })),
            h('td', { class: 'master', text: masterOf(c) }),
            h('td', {}, verdictOf(c)),
            h('td', {}, readinessOf(c)),
            h('td', { class: 'num', text: maxLag(c) === null ? 'unknown' : fmtLag(maxLag(c)) }),
            h('td', {}, blockOf(c)),
            h('td', {}, op ? [h('a', { href: `#/history?cluster=${enc(c.cluster)}`, text: op.id }), ' ',
              outcomeBadge(op.outcome), h('div', { class: 'muted', text: fmtTime(op.end) })]
              : h('span', { class: 'muted', text: 'none' })));
        }));
        err.textContent = '';
        setLive(`live · updated ${new Date().toLocaleTimeString()}`);
      } catch (e) {
        if (!v.alive()) return;
        err.textContent = `cannot read the clusters: ${e.message}`;
        setLive('reconnecting…', true);
      }
      v.later(refresh, 2000);
    }
    refresh();
  }

  // ---- the cluster page -------------------------------------------------
  function viewCluster(v, name) {
    const title = h('h1', {}, 'Cluster ', h('span', { id: 'cluster-name', text: name }));
    const summary = h('p', { id: 'summary' });
    const banner = h('p', { id: 'banner', role: 'status' });
    const err = h('p', { class: 'error', role: 'alert', id: 'stream-error' });
    const topo = h('div', { class: 'card topology', id: 'topology' });
    const ready = h('div', { class: 'card', id: 'readiness' });
    const pools = h('div', { class: 'card', id: 'pools' });
    const servers = h('div', { id: 'servers-wrap' });
    const problems = h('div', { id: 'problems' });
    const recent = h('div', { class: 'card', id: 'recent' });
    const actions = actionsCard(v, name);
    main.append(title, summary, banner, err,
      h('div', { class: 'grid' },
        h('section', { 'aria-labelledby': 'h-topo' }, h('h2', { id: 'h-topo', text: 'Topology' }), topo),
        h('section', { 'aria-labelledby': 'h-ready' }, h('h2', { id: 'h-ready', text: 'If the master died now' }), ready)),
      h('section', { 'aria-labelledby': 'h-servers' }, h('h2', { id: 'h-servers', text: 'Servers' }), servers),
      problems,
      h('div', { class: 'grid' },
        h('section', { 'aria-labelledby': 'h-pools' }, h('h2', { id: 'h-pools', text: 'Router pools' }), pools),
        h('section', { 'aria-labelledby': 'h-actions' }, h('h2', { id: 'h-actions', text: 'Actions' }), actions.el)),
      h('section', { 'aria-labelledby': 'h-recent' }, h('h2', { id: 'h-recent', text: 'Recent operations' }), recent));

    let lastInProgress = null;
    function onFrame(f) {
      const c = f.status;
      summary.replaceChildren('Master: ', h('strong', { id: 'cluster-master', text: c.master || 'none' }),
        ` · epoch ${c.epoch} · verdict `, verdictOf(c), ' · ', blockOf(c),
        c.coordination && c.coordination.leader ? ` · leading manager ${c.coordination.leader}` : '');
      const op = c.in_progress;
      banner.replaceChildren(op ? st('info', `${op.kind} ${op.id} in progress: ${op.old_master} → ${op.new_master || '?'}, phase ${op.phase.replace(/_/g, ' ')}`) : '');
      topo.replaceChildren(drawTopology(c, f.vip));
      ready.replaceChildren(...readinessPanel(c));
      pools.replaceChildren(...poolsPanel(f));
      servers.replaceChildren(serversTable(c, f.vip));
      const probs = [...(c.problems || [])];
      for (const [host, why] of Object.entries(c.rejoin_refused || {})) probs.push(`${host} not rejoined: ${why}`);
      if (c.semi_sync_degraded) probs.push(`semi-sync degraded: ${c.semi_sync_degraded}`);
      problems.replaceChildren(probs.length ? h('div', { class: 'card' }, h('h2', { text: 'Problems' }),
        h('ul', { class: 'plain' }, probs.map((p) => h('li', {}, st('warn', ''), ' ', p)))) : '');
      actions.update(c);
      const key = op ? op.id + op.phase : null;
      if (key !== lastInProgress) { lastInProgress = key; loadRecent(); }
    }

    async function loadRecent() {
      try {
        const evs = await getJson(`/v1/clusters/${enc(name)}/history?limit=500`, { signal: v.signal });
        const ops = operations(evs).slice(0, 5);
        recent.replaceChildren(ops.length ? h('table', {},
          h('thead', {}, h('tr', {}, ['Operation', 'Outcome', 'Started', 'Duration', 'Steps']
            .map((t) => h('th', { scope: 'col', text: t })))),
          h('tbody', {}, ops.map((o) => h('tr', {},
            h('td', {}, h('a', { href: `#/history?cluster=${enc(name)}`, text: o.id })),
            h('td', {}, outcomeBadge(o.outcome)),
            h('td', { text: fmtTime(o.start) }),
            h('td', { class: 'num', text: fmtMs(o.end - o.start) }),
            h('td', { text: o.events.map((e) => e.step).join(', ') })))))
          : h('p', { class: 'muted', text: 'No operation in the journal.' }),
        h('p', {}, h('a', { href: `#/history?cluster=${enc(name)}`, text: 'Full history and timeline →' })));
      } catch (e) {
        if (v.alive()) recent.replaceChildren(h('p', { class: 'error', text: `history: ${e.message}` }));
      }
    }

    // The live feed: Server-Sent Events over fetch (the token in a header).
    let retry = 500;
    let lastFrameAt = 0;
    async function follow() {
      try {
        const resp = await api(`/v1/clusters/${enc(name)}/stream`, { signal: v.signal, timeoutMs: 330000 });
        let event = 'message';
        let data = '';
        await readLines(resp, (line) => {
          if (line === '') {
            if (event === 'frame' && data) {
              onFrame(JSON.parse(data));
              lastFrameAt = Date.now();
              retry = 500;
              err.textContent = '';
              setLive(`live · updated ${new Date().toLocaleTimeString()}`);
            }
            event = 'message';
            data = '';
          } else if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        });
      } catch (e) {
        if (!v.alive()) return;
        err.textContent = `live feed: ${e.message}`;
        if (e.status === 404 || e.status === 403) { setLive('no access', true); return; }
      }
      if (!v.alive()) return;
      setLive('reconnecting…', true);
      v.later(follow, retry);
      retry = Math.min(retry * 2, 5000);
    }
    // A feed that went quiet is shown as such.
    (function watchdog() {
      if (lastFrameAt && Date.now() - lastFrameAt > 5000) setLive(`stale: no update for ${Math.round((Date.now() - lastFrameAt) / 1000)} s`, true);
      v.later(watchdog, 1000);
    })();
    follow();
    loadRecent();
  }

  function readinessPanel(c) {
    const out = [];
    const r = c.readiness;
    if (!r) out.push(h('p', {}, st('bad', 'no failover possible'), ' no candidate is known (no master on record).'));
    else if (r.chosen) {
      out.push(h('p', { id: 'ready-chosen' }, st('ok', 'ready'), ' A failover would promote ', h('strong', { text: r.chosen }), '.'));
      if (r.catch_up_from && r.catch_up_from !== r.chosen)
        out.push(h('p', { text: `It would first catch ${r.chosen} up from ${r.catch_up_from}${r.catch_up_gtids ? ` (${r.catch_up_gtids})` : ''}.` }));
      if (r.ranking && r.ranking.length) out.push(h('p', { class: 'muted', text: `Ranking: ${r.ranking.join(' > ')}` }));
    } else out.push(h('p', {}, st('bad', 'not ready'), ` No failover possible: ${r.blocker || 'no eligible replica'}.`));
    if (r && r.excluded && r.excluded.length) {
      out.push(h('p', { text: 'Excluded:' }), h('ul', { class: 'plain', id: 'excluded' },
        r.excluded.map((x) => h('li', { 'data-server': x.server }, h('strong', { text: x.server }), `: ${x.reason}`))));
    }
    if (c.analysis) {
      out.push(h('p', {}, 'Verdict on the master: ', verdictOf(c)));
      if (c.analysis.evidence && c.analysis.evidence.length)
        out.push(h('ul', { class: 'plain' }, c.analysis.evidence.map((e) => h('li', { text: e }))));
    }
    return out;
  }

  function poolsPanel(f) {
    const rv = f.routing;
    if (!rv) return [h('p', { class: 'muted', text: 'No routing view yet.' })];
    const writer = rv.writer ? rv.writer.name : null;
    return [
      h('p', {}, 'Writer: ', writer ? h('strong', { id: 'writer', text: writer })
        : st('bad', rv.changing ? 'none: a change is under way, new writes are held' : 'none'),
      ` · readers at most ${rv.max_lag_seconds.toFixed(1)} s behind`),
      h('table', { id: 'pool-table' },
        h('thead', {}, h('tr', {}, ['Server', 'Pool', 'Why'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, (f.pools || []).map((m) => h('tr', { 'data-server': m.name },
          h('td', { text: m.name }),
          h('td', {}, m.pool === 'writer' ? st('info', 'writer') : m.pool === 'reader' ? st('ok', 'reader: in') : st('warn', 'out')),
          h('td', { text: m.reason }))))),
    ];
  }

  function threads(x) {
    if (x.role === 'master' || (!x.io_running && !x.sql_running)) return null;
    return { io: x.io_running || 'unknown', sql: x.sql_running || 'unknown',
      ok: x.io_running === 'running' && x.sql_running === 'running' && !x.last_error };
  }
  function agentText(x) {
    const a = x.agent;
    if (!a) return ['bad', 'no agent'];
    if (a.reachable) return ['ok', `agent ok${a.last_report_age_ms !== null && a.last_report_age_ms !== undefined ? ` (${fmtMs(a.last_report_age_ms)} ago)` : ''}`];
    return ['bad', `agent silent${a.last_report_age_ms ? ` for ${fmtMs(a.last_report_age_ms)}` : ''}`];
  }
  function probeText(x) {
    const p = x.manager_probe;
    if (!p) return ['none', 'probe unknown'];
    if (p.ok) return ['ok', `probe ok${p.latency_ms !== null && p.latency_ms !== undefined ? ` (${p.latency_ms.toFixed(1)} ms)` : ''}`];
    return ['bad', `probe failing${p.failing_for_ms ? ` for ${fmtMs(p.failing_for_ms)}` : ''}${p.error ? `: ${p.error}` : ''}`];
  }
  const roleWord = (r) => (r === 'needs_rejoin' ? 'needs rejoin' : r);

  function serversTable(c, vip) {
    return h('div', { class: 'scroll' }, h('table', { id: 'servers' },
      h('thead', {}, h('tr', {}, ['Server', 'Role', 'mysqld', 'read_only', 'Replication (IO / SQL)', 'Lag',
        'GTID position', 'Errant / diverged', 'Agent', 'Manager probe', 'VIP'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, (c.servers || []).map((x) => {
        const t = threads(x);
        const [ac, at] = agentText(x);
        const [pc, pt] = probeText(x);
        const odd = [...(x.errant || []).map((g) => `errant ${g}`), ...(x.diverged_gtids || []).map((g) => `diverged ${g}`)];
        return h('tr', { 'data-server': x.name, 'data-role': x.role },
          h('th', { scope: 'row', text: x.name }),
          h('td', { class: 'role' }, roleWord(x.role)),
          h('td', {}, x.mysqld_up === true ? st('ok', 'up') : x.mysqld_up === false ? st('bad', 'down') : st('warn', 'unknown')),
          h('td', { text: onOff(x.read_only) }),
          h('td', {}, t ? [st(t.ok ? 'ok' : 'bad', `${t.io} / ${t.sql}`), x.last_error ? h('div', { class: 'error', text: x.last_error }) : '',
            x.replicates_from ? h('div', { class: 'muted', text: `from ${x.replicates_from}` }) : ''] : h('span', { class: 'muted', text: 'none' })),
          h('td', { class: 'num', text: x.role === 'master' ? '–' : fmtLag(x.lag_seconds) }),
          h('td', { class: 'mono', text: x.gtid_position || 'unknown' }),
          h('td', {}, odd.length ? odd.map((o) => h('div', {}, st('bad', o))) : h('span', { class: 'muted', text: 'none' })),
          h('td', {}, st(ac, at)),
          h('td', {}, st(pc, pt)),
          h('td', { class: 'vip' }, vip && vip.holder === x.name ? [st('info', 'holds it'), h('div', { class: 'muted', text: vip.address })] : ''));
      }))));
  }

  // Servers as boxes, replication as arrows from source to replica.
  function drawTopology(c, vip) {
    const servers = c.servers || [];
    const byAddr = new Map(servers.map((x) => [x.address, x.name]));
    const hostOf = (a) => (a || '').replace(/:\d+$/, '');
    const sourceOf = (x) => {
      if (!x.replicates_from) return null;
      if (byAddr.has(x.replicates_from)) return byAddr.get(x.replicates_from);
      const found = servers.find((y) => hostOf(y.address) === hostOf(x.replicates_from));
      return found ? found.name : null;
    };
    const master = c.master || c.epoch_master;
    const rows = [[], [], []];
    for (const x of servers) {
      if (x.name === master) rows[0].push(x);
      else if (sourceOf(x) === master && master) rows[1].push(x);
      else rows[2].push(x);
    }
    const layers = rows.filter((r) => r.length);
    const W = 220, H = 132, GX = 40, GY = 70;
    const width = Math.max(...layers.map((r) => r.length * W + (r.length - 1) * GX), W) + 40;
    const height = layers.length * H + (layers.length - 1) * GY + 30;
    const pos = new Map();
    layers.forEach((r, li) => {
      const rowW = r.length * W + (r.length - 1) * GX;
      r.forEach((x, i) => pos.set(x.name, { x: (width - rowW) / 2 + i * (W + GX), y: 15 + li * (H + GY) }));
    });
    const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img',
      'aria-label': `Topology: ${servers.map((x) => `${x.name} ${roleWord(x.role)}${sourceOf(x) ? ` replicating from ${sourceOf(x)}` : ''}`).join('; ')}` },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#4a5568' }))));
    for (const x of servers) {
      const src = sourceOf(x);
      if (!src || !pos.has(src)) continue;
      const a = pos.get(src), b = pos.get(x.name);
      const t = threads(x);
      const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y - 2;
      svg.append(s('path', { class: `edge${t && t.ok ? '' : ' bad'}`, d: `M ${x1} ${y1} C ${x1} ${y1 + GY / 2}, ${x2} ${y2 - GY / 2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow)' },
        s('title', { text: `${src} → ${x.name}` })));
      svg.append(s('text', { class: 'edge-label', x: x2 + 8, y: y2 - 10,
        text: t ? (t.ok ? `replicating, lag ${fmtLag(x.lag_seconds)}` : `✗ IO ${t.io}, SQL ${t.sql}`) : '' }));
    }
    for (const x of servers) {
      const p = pos.get(x.name);
      const t = threads(x);
      const bad = x.mysqld_up !== true || (t && !t.ok) || (x.errant || []).length || (x.diverged_gtids || []).length;
      const lines = [];
      lines.push([`read_only ${onOff(x.read_only)} · mysqld ${x.mysqld_up === true ? 'up' : x.mysqld_up === false ? '✗ down' : '⚠ unknown'}`, x.mysqld_up === true ? '' : 'bad']);
      if (x.role !== 'master') lines.push([t ? `IO ${t.io} · SQL ${t.sql}` : 'not replicating', t && t.ok ? '' : 'bad']);
      if (x.role !== 'master') lines.push([`lag ${fmtLag(x.lag_seconds)}`, '']);
      const g = x.gtid_position || 'unknown';
      lines.push([`GTID ${g.length > 30 ? g.slice(0, 29) + '…' : g}`, '']);
      if ((x.errant || []).length) lines.push([`✗ errant: ${x.errant.join(',')}`, 'bad']);
      if ((x.diverged_gtids || []).length) lines.push([`✗ diverged: ${x.diverged_gtids.join(',')}`, 'bad']);
      const [ac, at] = agentText(x);
      const [pc, pt] = probeText(x);
      lines.push([`${ac === 'ok' ? '✓' : '✗'} ${at.replace(/ \(.*\)$/, '')} · ${pc === 'ok' ? '✓' : '✗'} ${pt.replace(/ \(.*$/, '').replace(/:.*$/, '')}`, ac === 'ok' && pc === 'ok' ? '' : 'bad']);
      const g2 = s('g', { class: `node ${x.role}${bad ? ' bad' : ''}`, 'data-server': x.name, 'data-role': x.role, transform: `translate(${p.x},${p.y})` },
        s('rect', { width: W, height: H, rx: 6 }),
        s('text', { class: 'title', x: 10, y: 20, text: `${x.name} · ${roleWord(x.role).toUpperCase()}` }),
        vip && vip.holder === x.name ? s('text', { class: 'vip', x: W - 10, y: 20, 'text-anchor': 'end', text: 'VIP' }) : null,
        lines.slice(0, 6).map(([text, cls], i) => s('text', { x: 10, y: 40 + i * 16, class: cls || null, text })));
      g2.append(s('title', { text: `${x.name} (${x.address}): ${roleWord(x.role)}` }));
      svg.append(g2);
    }
    return svg;
  }

  // ---- actions: operator scope, each behind a confirmation ---------------
  function ask(text) {
    const dlg = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    return new Promise((resolve) => {
      const yes = document.getElementById('confirm-yes');
      const no = document.getElementById('confirm-no');
      const done = (v) => {
        yes.removeEventListener('click', onYes);
        no.removeEventListener('click', onNo);
        dlg.removeEventListener('cancel', onNo);
        dlg.close();
        resolve(v);
      };
      const onYes = () => done(true);
      const onNo = () => done(false);
      yes.addEventListener('click', onYes);
      no.addEventListener('click', onNo);
      dlg.addEventListener('cancel', onNo);
      dlg.showModal();
      no.focus();
    });
  }

  function actionsCard(v, name) {
    const log = h('pre', { class: 'log', id: 'action-log', 'aria-live': 'polite' });
    const result = h('p', { class: 'result', id: 'action-result', role: 'status' });
    const to = h('select', { id: 'switchover-to' }, h('option', { value: '', text: 'the best candidate' }));
    const preview = h('button', { type: 'button', id: 'switchover-preview', text: 'Preview (dry run)' });
    const run = h('button', { type: 'button', id: 'switchover-run', class: 'danger', disabled: true, text: 'Switch over…' });
    const ackState = h('span', { id: 'ack-state' });
    const ackBtn = h('button', { type: 'button', id: 'ack', text: 'Acknowledge the last failover…' });
    const host = h('select', { id: 'rejoin-host' });
    const force = h('input', { type: 'checkbox', id: 'rejoin-force' });
    const rejoinBtn = h('button', { type: 'button', id: 'rejoin', text: 'Rejoin…' });
    let previewed = null; // the target of the last successful preview
    let busy = false;
    let status = null;

    const line = (text) => { log.textContent += text + '\n'; log.scrollTop = log.scrollHeight; };
    const eventLine = (e) => line(`${fmtTime(e.at_ms)} ${e.step.padEnd(16)} ${e.status.padEnd(8)} ${e.detail}${e.duration_ms !== undefined && e.duration_ms !== null ? ` (${e.duration_ms} ms)` : ''}`);
    function setBusy(b) {
      busy = b;
      for (const el of [preview, ackBtn, rejoinBtn, to, host]) el.disabled = b;
      run.disabled = b || previewed === null || previewed !== to.value;
    }
    function refused(e) {
      result.replaceChildren(st('bad', e.status === 403 ? 'refused (403): this token may not act' : 'failed'), ' ', e.text || e.message);
    }
    async function switchover(dry) {
      log.textContent = '';
      result.replaceChildren(st('info', dry ? 'previewing…' : 'switching over…'));
      setBusy(true);
      let report = null;
      try {
        const resp = await api(`/v1/clusters/${enc(name)}/switchover`, {
          method: 'POST', body: { to: to.value || null, dry_run: dry }, signal: v.signal, timeoutMs: 330000 });
        await readLines(resp, (l) => {
          if (!l.trim()) return;
          const m = JSON.parse(l);
          if (m.event) eventLine(m.event);
          else if (m.report) report = m.report;
        });
        if (!report) throw new Error('the manager ended the stream without a report');
        const ok = report.status === 'completed' || report.status === 'dry_run';
        result.replaceChildren(st(ok ? 'ok' : 'bad', report.status.replace(/_/g, ' '), { 'data-status': report.status }),
          ` ${report.old_master} → ${report.new_master || '–'} (epoch ${report.epoch}), ${report.duration_ms} ms`);
        for (const p of report.problems || []) line(`problem: ${p}`);
        if (report.choice) for (const x of report.choice.excluded || []) line(`  excluded ${x.server}: ${x.reason}`);
        previewed = dry && ok ? to.value : null;
        if (dry && ok) run.textContent = `Switch over to ${report.new_master || 'the best candidate'}…`;
      } catch (e) {
        previewed = null;
        if (v.alive()) refused(e);
      }
      setBusy(false);
    }
    preview.addEventListener('click', () => switchover(true));
    to.addEventListener('change', () => { previewed = null; setBusy(busy); run.textContent = 'Switch over…'; });
    run.addEventListener('click', async () => {
      const target = to.value || 'the best candidate';
      if (await ask(`Switch the master of ${name} from ${status ? status.master : '?'} to ${target}? Writes pause while the old master drains.`)) switchover(false);
    });
    ackBtn.addEventListener('click', async () => {
      if (!(await ask(`Acknowledge the last failover of ${name}? Automatic failover is enabled again at once.`))) return;
      log.textContent = '';
      setBusy(true);
      try {
        const a = await getJson(`/v1/clusters/${enc(name)}/ack`, { method: 'POST', body: {}, signal: v.signal });
        result.replaceChildren(a.acknowledged ? st('ok', 'acknowledged') : st('bad', 'not acknowledged'), ' automatic failover is enabled again');
      } catch (e) { refused(e); }
      setBusy(false);
    });
    rejoinBtn.addEventListener('click', async () => {
      const hname = host.value;
      if (!hname) return;
      const f = force.checked;
      if (!(await ask(`Rejoin ${hname} to ${name}${f ? ', reinstating it (its unacknowledged transactions are saved to a file and undone)' : ''}?`))) return;
      log.textContent = '';
      result.replaceChildren(st('info', `rejoining ${hname}…`));
      setBusy(true);
      try {
        const resp = await fetch(`/v1/clusters/${enc(name)}/rejoin`, {
          method: 'POST', cache: 'no-store', signal: withTimeout(v.signal, 330000),
          headers: { Authorization: `Bearer ${token()}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ host: hname, force: f }) });
        const text = await resp.text();
        let a = null;
        try { a = JSON.parse(text); } catch (_) { /* a plain-text refusal */ }
        if (a && typeof a.rejoined === 'boolean') {
          line(a.detail);
          result.replaceChildren(a.rejoined ? st('ok', 'rejoined') : st('bad', `not rejoined (${resp.status})`), ' ', a.detail);
        } else refused(new ApiError(resp.status, text.trim()));
      } catch (e) { refused(e); }
      setBusy(false);
    });

    const el = h('div', { class: 'card actions' },
      h('p', { class: 'muted', text: 'Actions need an operator token; a monitor\'s is refused. Each asks for confirmation.' }),
      h('h3', { text: 'Switchover' }),
      h('p', {}, h('label', { for: 'switchover-to', text: 'New master: ' }), to, ' ', preview, ' ', run),
      h('h3', { text: 'Failover acknowledgement' }),
      h('p', {}, ackState, ' ', ackBtn),
      h('h3', { text: 'Rejoin' }),
      h('p', {}, h('label', { for: 'rejoin-host', text: 'Server: ' }), host, ' ',
        h('label', {}, force, ' force (reinstate a diverged server)'), ' ', rejoinBtn),
      result, log);

    function syncOptions(select, names, keepEmpty) {
      const want = (keepEmpty ? [''] : []).concat(names);
      const have = [...select.options].map((o) => o.value);
      if (want.join('\n') === have.join('\n')) return;
      const cur = select.value;
      select.replaceChildren(...want.map((n) => h('option', { value: n, text: n || 'the best candidate' })));
      if (want.includes(cur)) select.value = cur;
    }
    function update(c) {
      status = c;
      const others = (c.servers || []).map((x) => x.name).filter((n) => n !== c.master);
      syncOptions(to, others, true);
      const rejoinable = [...(c.needs_rejoin || []), ...others.filter((n) => !(c.needs_rejoin || []).includes(n))];
      syncOptions(host, rejoinable, false);
      const blocked = c.failover_blocked_until_ms && c.failover_blocked_until_ms > Date.now();
      ackState.replaceChildren(blocked ? st('warn', `automatic failover blocked until ${fmtTime(c.failover_blocked_until_ms)}`) : st('ok', 'automatic failover not blocked'));
      if (!busy) setBusy(false);
    }
    return { el, update };
  }

  // ---- the history timeline -----------------------------------------------
  const SINCE = [['15m', 'last 15 minutes', 15 * 60e3], ['1h', 'last hour', 3600e3], ['6h', 'last 6 hours', 6 * 3600e3],
    ['24h', 'last 24 hours', 24 * 3600e3], ['7d', 'last 7 days', 7 * 24 * 3600e3], ['all', 'all', null]];

  function viewHistory(v, params) {
    const wantCluster = params.get('cluster') || '';
    const since = params.get('since') || '24h';
    const until = params.get('until') || '';
    const clusterSel = h('select', { id: 'history-cluster' }, h('option', { value: '', text: 'all clusters' }));
    const sinceSel = h('select', { id: 'history-since' }, SINCE.map(([k, label]) => h('option', { value: k, text: label, selected: k === since })));
    const untilIn = h('input', { type: 'datetime-local', id: 'history-until', value: until });
    const out = h('div', { id: 'timeline' });
    const err = h('p', { class: 'error', role: 'alert' });
    const go = () => {
      const p = new URLSearchParams();
      if (clusterSel.value) p.set('cluster', clusterSel.value);
      p.set('since', sinceSel.value);
      if (untilIn.value) p.set('until', untilIn.value);
      location.hash = `#/history?${p}`;
    };
    for (const el of [clusterSel, sinceSel, untilIn]) el.addEventListener('change', go);
    main.append(h('h1', { text: 'History' }),
      h('div', { class: 'filters' },
        h('label', {}, 'Cluster', clusterSel), h('label', {}, 'From', sinceSel),
        h('label', {}, 'Until (local time, empty: now)', untilIn)),
      err, out);

    let shown = '';
    async function refresh() {
      try {
        const all = await getJson('/v1/clusters', { signal: v.signal });
        const names = all.map((c) => c.cluster);
        if (clusterSel.options.length !== names.length + 1) {
          clusterSel.replaceChildren(h('option', { value: '', text: 'all clusters' }),
            ...names.map((n) => h('option', { value: n, text: n, selected: n === wantCluster })));
        }
        const span = (SINCE.find(([k]) => k === since) || [])[2];
        const before = until ? new Date(until).getTime() : null;
        const sinceMs = span ? (before || Date.now()) - span : null;
        const q = new URLSearchParams({ limit: '10000' });
        if (sinceMs) q.set('since_ms', String(Math.floor(sinceMs)));
        if (before) q.set('before_ms', String(before));
        const chosen = wantCluster ? [wantCluster] : names;
        const lists = await Promise.all(chosen.map((n) => getJson(`/v1/clusters/${enc(n)}/history?${q}`, { signal: v.signal })));
        const events = lists.flat();
        const key = JSON.stringify([events.length, events.length ? events[events.length - 1].at_ms : 0]);
        if (key !== shown) {
          shown = key;
          out.replaceChildren(...timeline(events));
        }
        err.textContent = '';
        setLive(`live · updated ${new Date().toLocaleTimeString()}`);
      } catch (e) {
        if (!v.alive()) return;
        err.textContent = `cannot read the history: ${e.message}`;
        setLive('reconnecting…', true);
      }
      if (!until) v.later(refresh, 3000);
    }
    refresh();
  }

  function timeline(events) {
    const ops = operations(events);
    const out = [];
    if (!ops.length) out.push(h('p', { class: 'muted', text: 'No operation in this period.' }));
    for (const op of ops) {
      const span = Math.max(op.end - op.start, 1);
      const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
        const t = h('span', { text: f === 0 ? fmtTime(op.start).slice(11) : `+${fmtMs(Math.round(f * span))}` });
        t.style.left = `${f * 100}%`;
        return t;
      });
      const rows = op.events.map((e) => {
        const start = e.at_ms - (e.duration_ms || 0);
        const bar = h('div', { class: `bar ${e.status}`, title: `${e.step} ${e.status}: ${e.detail}` });
        bar.style.left = `${((start - op.start) / span) * 100}%`;
        bar.style.width = `${Math.max(((e.duration_ms || 0) / span) * 100, 0.4)}%`;
        const mark = e.status === 'failed' || e.status === 'refused' ? '✗ ' : e.status === 'skipped' ? '↷ ' : '';
        return h('div', { class: `steprow ${e.status}`, 'data-step': e.step, 'data-status': e.status },
          h('div', { class: 'label', text: `${mark}${e.step} · ${e.status}${e.duration_ms !== undefined && e.duration_ms !== null ? ` · ${fmtMs(e.duration_ms)}` : ''}` }),
          h('div', { class: 'track' }, bar));
      });
      out.push(h('section', { class: 'op card', 'data-op': op.id, 'data-cluster': op.cluster, 'aria-label': `${op.id} on ${op.cluster}` },
        h('h3', {}, h('span', { text: op.kind }), h('code', { text: op.id }), h('span', { class: 'muted', text: `cluster ${op.cluster}` }),
          outcomeBadge(op.outcome), h('span', { text: `${fmtMs(op.end - op.start)}, from ${fmtTime(op.start)}` })),
        h('div', { class: 'axis', 'aria-hidden': 'true' }, ticks),
        h('div', { role: 'list' }, rows.map((r) => { r.setAttribute('role', 'listitem'); return r; })),
        h('details', { class: 'steps' }, h('summary', { text: 'Steps as text' }), stepsTable(op.events))));
    }
    const loose = events.filter((e) => !e.operation).slice(-200).reverse();
    if (loose.length) {
      out.push(h('h2', { text: 'Other events (detection, verdicts, rejoins, acknowledgements)' }), stepsTable(loose, true));
    }
    return out;
  }

  function stepsTable(evs, withCluster) {
    return h('table', { class: 'events' },
      h('thead', {}, h('tr', {}, [...(withCluster ? ['Cluster'] : []), 'Time', 'Step', 'Status', 'Duration', 'Detail']
        .map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, evs.map((e) => h('tr', { class: e.status },
        withCluster ? h('td', { text: e.cluster }) : null,
        h('td', { class: 'mono', text: fmtTime(e.at_ms) }),
        h('td', { text: e.step }),
        h('td', {}, st(e.status === 'ok' ? 'ok' : e.status === 'failed' || e.status === 'refused' ? 'bad' : e.status === 'skipped' ? 'warn' : 'info', e.status)),
        h('td', { class: 'num', text: fmtMs(e.duration_ms) }),
        h('td', { text: e.detail })))));
  }

  // ---- start ----------------------------------------------------------
  document.getElementById('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    render();
  });
  window.addEventListener('hashchange', () => { takeToken(); render(); });
  takeToken();
  render();
})();
