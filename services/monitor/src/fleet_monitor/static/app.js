/* ModelFleet monitor dashboard: plain ES2020, no build step, no framework.
 *
 * Reads the monitor's JSON API on the same origin (GET /v1/overview, /v1/models/{name},
 * /v1/alerts, the /v1/stream Server-Sent Events) and renders three hash routes:
 *   #/                 fleet overview, a page at a time (search, filters and sort in the hash:
 *                      #/?q=churn&team=credit&sort=rps&page=2), live from the stream (polling if
 *                      the stream fails); the server pages, sorts and filters
 *   #/models/{name}    one model: versions, charts (uPlot), drift, rollout, alerts; polled
 *   #/alerts           alerts, filtered by ?state=firing|resolved
 * All text reaches the page through textContent, never innerHTML, so names and summaries
 * from events cannot inject markup.
 */
"use strict";

(() => {
  const TOKEN_KEY = "fleet.monitor.token";
  const OVERVIEW_POLL_MS = 3000;
  const MODEL_POLL_MS = 2000;
  const ALERTS_POLL_MS = 5000;
  const STREAM_RETRY_POLLS = 20; // after this many fallback polls, try the stream again
  const PALETTE = ["#1f6fb2", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285", "#5c940d", "#862e9c"];

  // ------------------------------------------------------------------ DOM

  /** h("a", {href, class, testid, text, title, on: {click}}, ...children) */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = String(value);
      else if (key === "testid") el.dataset.testid = value;
      else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
      else if (key === "data") for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const byTestId = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const modelHref = (name) => `#/models/${encodeURIComponent(name)}`;

  // ------------------------------------------------------------------ formatting

  const DASH = "—";
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  const fmt = {
    int: (v) => (isNum(v) ? Math.round(v).toLocaleString("en-US") : DASH),
    rps(v) {
      if (!isNum(v)) return DASH;
      if (v === 0) return "0";
      return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
    },
    pct(rate) {
      if (!isNum(rate)) return DASH;
      const p = rate * 100;
      if (p === 0) return "0%";
      return (p < 10 ? p.toFixed(2) : p.toFixed(1)) + "%";
    },
    ms(v) {
      if (!isNum(v)) return DASH;
      return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " ms";
    },
    stat(v) {
      if (!isNum(v)) return DASH;
      const a = Math.abs(v);
      return a !== 0 && (a < 0.001 || a >= 1e5) ? v.toExponential(2) : v.toFixed(3);
    },
    pValue(v) {
      if (!isNum(v)) return DASH;
      return v < 0.001 ? "<0.001" : v.toFixed(3);
    },
    metric(v) {
      if (!isNum(v)) return DASH;
      return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(3);
    },
    metrics(obj) {
      const entries = Object.entries(obj || {});
      return entries.length ? entries.map(([k, v]) => `${k} ${fmt.metric(v)}`).join(" · ") : DASH;
    },
    date(iso) {
      const d = iso ? new Date(iso) : null;
      if (!d || Number.isNaN(d.getTime())) return iso ? String(iso) : DASH;
      const pad = (n) => String(n).padStart(2, "0");
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
        `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    },
    clock: (d) => d.toTimeString().slice(0, 8),
    ago(iso) {
      const t = iso ? new Date(iso).getTime() : NaN;
      if (Number.isNaN(t)) return "";
      const s = Math.max(0, Math.round((Date.now() - t) / 1000));
      if (s < 60) return `${s}s ago`;
      if (s < 3600) return `${Math.floor(s / 60)}m ago`;
      if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
      return `${Math.floor(s / 86400)}d ago`;
    },
    duration(fromIso, toIso) {
      const a = new Date(fromIso).getTime();
      const b = toIso ? new Date(toIso).getTime() : Date.now();
      if (Number.isNaN(a) || Number.isNaN(b)) return "";
      const s = Math.max(0, Math.round((b - a) / 1000));
      if (s < 60) return `${s}s`;
      if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
      return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    },
    weight(w) {
      if (!isNum(w)) return DASH;
      return (Number.isInteger(w) ? String(w) : w.toFixed(1)) + "%";
    },
  };

  /** "v1 90% · v2 10% · v3 shadow" */
  function trafficText(arms) {
    if (!arms || !arms.length) return DASH;
    return [...arms]
      .sort((a, b) => a.version - b.version)
      .map((a) => (a.mode === "shadow" ? `v${a.version} shadow` : `v${a.version} ${fmt.weight(a.weight)}`))
      .join(" · ");
  }

  function rolloutText(r) {
    if (!r) return null;
    return `${r.strategy} v${r.version} · ${r.phase} · step ${r.step}`;
  }

  function badge(text, tone, extra) {
    return h("span", { class: `badge badge-${tone}`, ...(extra || {}) }, text);
  }

  const STATE_TONE = { serving: "ok", idle: "warn", "not deployed": "muted" };
  const PHASE_TONE = {
    progressing: "info", pending: "muted", paused: "warn", promoted: "ok",
    rolled_back: "bad", aborted: "bad", failed: "bad",
  };
  const VERDICT_TONE = { pass: "ok", fail: "bad", inconclusive: "warn" };
  const GATE_TONE = { ready: "ok", awaiting_approval: "warn", checking: "info", failed: "bad", rejected: "bad" };
  const SEVERITY_TONE = { critical: "bad", warning: "warn", info: "info" };

  const stateBadge = (state) => badge(state || "unknown", STATE_TONE[state] || "muted", { testid: "state-badge" });

  // ------------------------------------------------------------------ API

  class HttpError extends Error {
    constructor(status, problem) {
      const detail = problem && (problem.detail || problem.title);
      super(detail ? `${status}: ${detail}` : `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  const auth = {
    token() {
      try {
        return window.localStorage.getItem(TOKEN_KEY) || "";
      } catch {
        return "";
      }
    },
    store(token) {
      try {
        if (token) window.localStorage.setItem(TOKEN_KEY, token);
        else window.localStorage.removeItem(TOKEN_KEY);
      } catch {
        /* private mode: the token lasts until the page reloads */
      }
    },
    form: () => document.querySelector('[data-testid="auth-form"]'),
    require() {
      const form = auth.form();
      if (form && form.hidden) {
        form.hidden = false;
        form.querySelector("input").focus();
      }
    },
  };

  async function api(path, signal) {
    const headers = { Accept: "application/json" };
    const token = auth.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(path, { headers, signal, cache: "no-store" });
    if (!res.ok) {
      let problem = null;
      try {
        problem = await res.json();
      } catch {
        /* not problem+json */
      }
      if (res.status === 401) auth.require();
      throw new HttpError(res.status, problem);
    }
    return res.json();
  }

  async function apiPost(path, body) {
    const headers = { Accept: "application/json", "Content-Type": "application/json" };
    const token = auth.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), cache: "no-store" });
    let answer = null;
    try {
      answer = await res.json();
    } catch {
      /* no JSON body */
    }
    if (!res.ok) {
      if (res.status === 401) auth.require();
      throw new HttpError(res.status, answer);
    }
    return answer;
  }

  const isAbort = (err) => err && err.name === "AbortError";

  /** Call fn now and every intervalMs after it settles, until stop(); fn gets an AbortSignal. */
  function poller(fn, intervalMs) {
    let timer = null;
    let stopped = false;
    let controller = null;
    const tick = async () => {
      controller = new AbortController();
      try {
        await fn(controller.signal);
      } catch (err) {
        if (!isAbort(err)) throw err;
      }
      if (!stopped) timer = setTimeout(run, intervalMs);
    };
    const run = () => {
      tick().catch(() => {
        if (!stopped) timer = setTimeout(run, intervalMs);
      });
    };
    run();
    return {
      stop() {
        stopped = true;
        clearTimeout(timer);
        if (controller) controller.abort();
      },
    };
  }

  // ------------------------------------------------------------------ live overview feed

  /** One overview feed for the whole page: the header always shows its totals, the view that set
   * the query renders its page. The query is the same as GET /v1/overview's (filters, sort,
   * limit, offset): the server pages, so the page never receives more than one page of models. */
  const feed = {
    latest: null,
    latestQuery: null,
    query: "limit=1",
    listeners: new Set(),
    source: null,
    poll: null,
    polls: 0,

    subscribe(fn) {
      this.listeners.add(fn);
      if (this.latest) fn(this.latest, this.latestQuery);
      return () => this.listeners.delete(fn);
    },

    publish(overview, query) {
      this.latest = overview;
      this.latestQuery = query;
      for (const fn of this.listeners) {
        try {
          fn(overview, query);
        } catch (err) {
          showNotice(`Could not render: ${err.message}`);
        }
      }
    },

    /** Follow another query (a new search, filter, sort or page): reconnects at once. */
    setQuery(query) {
      if (query === this.query && (this.source || this.poll)) return;
      this.query = query;
      this.start();
    },

    setMode(mode, title) {
      const el = document.querySelector('[data-testid="live-status"]');
      if (!el) return;
      el.dataset.mode = mode;
      el.textContent = mode;
      el.title = title || "";
    },

    start() {
      this.stop();
      // EventSource cannot send an Authorization header: with a token, poll instead.
      if (auth.token() || typeof window.EventSource !== "function") {
        this.startPolling();
        return;
      }
      this.setMode("connecting");
      const query = this.query;
      const source = new EventSource(`/v1/stream?${query}`);
      source.addEventListener("overview", (event) => {
        if (this.source !== source) return;
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.setMode("live", "Server-Sent Events from /v1/stream");
        this.publish(data, query);
      });
      source.addEventListener("error", () => {
        if (this.source !== source) return;
        source.close();
        this.source = null;
        this.startPolling();
      });
      this.source = source;
    },

    startPolling() {
      this.polls = 0;
      const query = this.query;
      this.poll = poller(async (signal) => {
        try {
          const data = await api(`/v1/overview?${query}`, signal);
          this.setMode("polling", `GET /v1/overview every ${OVERVIEW_POLL_MS / 1000} s`);
          if (query === this.query) this.publish(data, query);
        } catch (err) {
          if (isAbort(err)) return;
          this.setMode(err.status === 401 ? "token needed" : "offline", err.message);
        }
        this.polls += 1;
        if (this.polls >= STREAM_RETRY_POLLS && !auth.token() && typeof window.EventSource === "function") {
          setTimeout(() => this.start(), 0);
        }
      }, OVERVIEW_POLL_MS);
    },

    stop() {
      if (this.source) this.source.close();
      this.source = null;
      if (this.poll) this.poll.stop();
      this.poll = null;
    },
  };

  function renderHeader(overview) {
    const events = document.querySelector('[data-testid="events-ingested"]');
    const firing = document.querySelector('[data-testid="alerts-firing"]');
    events.textContent = fmt.int(overview.events_ingested);
    firing.textContent = fmt.int(overview.alerts_firing);
    firing.closest(".stat").classList.toggle("stat-alert", overview.alerts_firing > 0);
    markUpdated();
  }

  function markUpdated() {
    const el = document.getElementById("footer-updated");
    if (el) el.textContent = `updated ${fmt.clock(new Date())}`;
  }

  function showNotice(message, tone = "bad") {
    const root = document.getElementById("view");
    let el = byTestId(root, "notice");
    if (!message) {
      if (el) el.remove();
      return;
    }
    if (!el) {
      el = h("div", { testid: "notice", role: "status" });
      root.prepend(el);
    }
    el.className = `notice notice-${tone}`;
    el.textContent = message;
  }

  // ------------------------------------------------------------------ shared pieces

  function table(testid, columns, extraClass) {
    const thead = h("thead", null, h("tr", null, columns.map((c) =>
      h("th", { class: c.num ? "num" : null, title: c.title }, c.label))));
    const tbody = h("tbody");
    const el = h("table", { class: `grid ${extraClass || ""}`.trim(), testid }, thead, tbody);
    return { el, tbody, span: columns.length };
  }

  function emptyRow(span, text) {
    return h("tr", { class: "empty" }, h("td", { colspan: span }, text));
  }

  function section(title, testid, ...body) {
    return h("section", { class: "card", testid }, h("h2", null, title), ...body);
  }

  /** The alerts table; ``compact`` (the model page) folds severity into the state cell and shows
   * times as "3m ago" with the full date on hover, to fit half a page. */
  function alertsTable(testid, { showModel, compact = false }) {
    const columns = [
      { label: "State" },
      ...(compact ? [] : [{ label: "Severity" }]),
      ...(showModel ? [{ label: "Model" }] : []),
      { label: "Alert" }, { label: "Summary" }, { label: "Started" }, { label: "Resolved" },
    ];
    const t = table(testid, columns, `alerts${compact ? " compact" : ""}`);
    const stateBadges = (a) => [
      badge(a.state, a.state === "firing" ? "bad" : "muted"),
      compact ? badge(a.severity, SEVERITY_TONE[a.severity] || "muted") : null,
    ];
    const started = (a) => (compact
      ? h("td", { class: "when", title: fmt.date(a.started_at) }, fmt.ago(a.started_at))
      : h("td", { class: "when", title: a.started_at }, fmt.date(a.started_at),
        h("div", { class: "muted small" }, fmt.ago(a.started_at))));
    const resolved = (a) => {
      const note = a.resolved_at ? `after ${fmt.duration(a.started_at, a.resolved_at)}` : `open ${fmt.duration(a.started_at)}`;
      return compact
        ? h("td", { class: "when", title: a.resolved_at ? fmt.date(a.resolved_at) : "" },
          a.resolved_at ? fmt.ago(a.resolved_at) : DASH, h("div", { class: "muted small" }, note))
        : h("td", { class: "when", title: a.resolved_at || "" }, a.resolved_at ? fmt.date(a.resolved_at) : DASH,
          h("div", { class: "muted small" }, note));
    };
    t.render = (alerts, emptyText) => {
      const rows = (alerts || []).map((a) => h("tr", {
        testid: `alert-row-${a.id}`,
        class: a.state === "firing" ? `firing sev-${a.severity}` : "resolved",
        data: { state: a.state, severity: a.severity },
      },
        h("td", { class: "state" }, stateBadges(a)),
        compact ? null : h("td", null, badge(a.severity, SEVERITY_TONE[a.severity] || "muted")),
        showModel ? h("td", null, h("a", { href: modelHref(a.model) }, a.model),
          a.version !== null && a.version !== undefined ? h("span", { class: "muted" }, ` v${a.version}`) : null) : null,
        h("td", null, h("span", { class: "mono" }, a.name), h("div", { class: "muted small" }, a.kind)),
        h("td", { class: "summary" }, a.summary),
        started(a),
        resolved(a),
      ));
      t.tbody.replaceChildren(...(rows.length ? rows : [emptyRow(t.span, emptyText || "No alerts.")]));
    };
    return t;
  }

  // ------------------------------------------------------------------ #/ fleet overview

  const PAGE_SIZE = 50;
  const SORTS = [
    ["name", "Name"], ["rps", "Traffic (busiest first)"], ["error_rate", "Error rate (worst first)"],
    ["latency_p95", "p95 latency (slowest first)"], ["drift", "Drift (worst first)"], ["alerts", "Alerts firing"],
  ];
  const STATES = [["", "Any state"], ["serving", "Serving"], ["idle", "Idle"], ["not deployed", "Not deployed"]];
  const SEARCH_DEBOUNCE_MS = 120;

  /** The overview's view state, kept in the hash (#/?q=churn&team=credit&sort=rps&page=2). */
  function overviewState(params) {
    const sort = SORTS.some(([v]) => v === params.get("sort")) ? params.get("sort") : "name";
    const state = STATES.some(([v]) => v && v === params.get("state")) ? params.get("state") : "";
    const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
    return {
      q: (params.get("q") || "").slice(0, 100),
      team: params.get("team") || "",
      state,
      alerting: params.get("alerting") === "true",
      sort,
      page,
    };
  }

  function overviewQuery(st) {
    const q = new URLSearchParams({ sort: st.sort, limit: String(PAGE_SIZE), offset: String((st.page - 1) * PAGE_SIZE) });
    if (st.q) q.set("q", st.q);
    if (st.team) q.set("team", st.team);
    if (st.state) q.set("state", st.state);
    if (st.alerting) q.set("alerting", "true");
    return q.toString();
  }

  function overviewHash(st) {
    const q = new URLSearchParams();
    if (st.q) q.set("q", st.q);
    if (st.team) q.set("team", st.team);
    if (st.state) q.set("state", st.state);
    if (st.alerting) q.set("alerting", "true");
    if (st.sort !== "name") q.set("sort", st.sort);
    if (st.page > 1) q.set("page", String(st.page));
    const text = q.toString();
    return text ? `#/?${text}` : "#/";
  }

  function overviewView(root, params) {
    const st = overviewState(params);
    const columns = [
      { label: "Model" }, { label: "Team" }, { label: "State" },
      { label: "Traffic", title: "Versions in the route table with their share of primary traffic" },
      { label: "Rollout" },
      { label: "rps", num: true, title: "Requests per second over the sliding window" },
      { label: "Errors", num: true }, { label: "p95", num: true },
      { label: "Drift", title: "Open drift episodes; the number is the largest PSI of the latest windows" },
      { label: "Alerts", num: true, title: "Alerts firing" },
    ];
    const t = table("models-table", columns, "models");
    const subtitle = h("p", { class: "subtitle", testid: "overview-subtitle" });

    const search = h("input", {
      type: "search", class: "search", placeholder: "Search models by name", value: st.q,
      "aria-label": "Search models by name", testid: "overview-search", maxlength: "100", autocomplete: "off",
    });
    const teamSelect = h("select", { testid: "filter-team", "aria-label": "Team" },
      h("option", { value: "" }, "All teams"),
      st.team ? h("option", { value: st.team, selected: true }, st.team) : null);
    const stateSelect = h("select", { testid: "filter-state", "aria-label": "State" },
      STATES.map(([v, label]) => h("option", { value: v, selected: v === st.state }, label)));
    const alerting = h("input", { type: "checkbox", testid: "filter-alerting", checked: st.alerting });
    const sortSelect = h("select", { testid: "overview-sort", "aria-label": "Sort by" },
      SORTS.map(([v, label]) => h("option", { value: v, selected: v === st.sort }, label)));
    const prev = h("button", { type: "button", class: "pager-button", testid: "page-prev" }, "← Previous");
    const next = h("button", { type: "button", class: "pager-button", testid: "page-next" }, "Next →");
    const pageText = h("span", { class: "muted small", testid: "page-range" });
    const toolbar = h("div", { class: "toolbar", testid: "overview-toolbar" },
      search, teamSelect, stateSelect,
      h("label", { class: "check" }, alerting, " alerting"),
      h("label", { class: "check" }, "sort ", sortSelect),
      h("span", { class: "pager" }, prev, pageText, next));
    root.append(
      h("div", { class: "page-head" }, h("h1", null, "Fleet"), subtitle),
      toolbar,
      h("section", { class: "card flush" }, t.el),
    );
    t.tbody.replaceChildren(emptyRow(t.span, "Loading…"));

    let query = overviewQuery(st);
    const apply = (changes, { resetPage = true } = {}) => {
      Object.assign(st, changes);
      if (resetPage && !("page" in changes)) st.page = 1;
      // replaceState: the URL follows the view without a hashchange re-rendering it.
      history.replaceState(null, "", overviewHash(st));
      query = overviewQuery(st);
      feed.setQuery(query);
    };
    let typing = null;
    search.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => apply({ q: search.value.trim() }), SEARCH_DEBOUNCE_MS);
    });
    search.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        clearTimeout(typing);
        apply({ q: search.value.trim() });
      }
    });
    teamSelect.addEventListener("change", () => apply({ team: teamSelect.value }));
    stateSelect.addEventListener("change", () => apply({ state: stateSelect.value }));
    alerting.addEventListener("change", () => apply({ alerting: alerting.checked }));
    sortSelect.addEventListener("change", () => apply({ sort: sortSelect.value }));
    prev.addEventListener("click", () => apply({ page: Math.max(1, st.page - 1) }));
    next.addEventListener("click", () => apply({ page: st.page + 1 }));

    const renderTeams = (teams) => {
      const wanted = ["", ...new Set([...(teams || []), ...(st.team ? [st.team] : [])])].sort();
      const have = [...teamSelect.options].map((o) => o.value);
      if (have.join("\u0000") === wanted.join("\u0000")) return;
      teamSelect.replaceChildren(...wanted.map((v) =>
        h("option", { value: v, selected: v === st.team }, v || "All teams")));
    };

    const render = (ov, forQuery) => {
      if (forQuery !== query) return; // a page of an earlier search or filter: not this one
      const models = ov.models || [];
      const total = isNum(ov.total) ? ov.total : models.length;
      const all = isNum(ov.total_models) ? ov.total_models : total;
      const filtered = st.q || st.team || st.state || st.alerting;
      subtitle.textContent = `${fmt.int(all)} model${all === 1 ? "" : "s"}` +
        (filtered ? ` · ${fmt.int(total)} match` : "") +
        ` · live window ${isNum(ov.window_s) ? ov.window_s : "?"} s`;
      const first = total ? (ov.offset || 0) + 1 : 0;
      const last = (ov.offset || 0) + models.length;
      pageText.textContent = total ? `${fmt.int(first)}–${fmt.int(last)} of ${fmt.int(total)}` : "none";
      prev.disabled = st.page <= 1;
      next.disabled = last >= total;
      renderTeams(ov.teams);
      if (!models.length) {
        if (total > 0 && st.page > 1) {
          apply({ page: Math.max(1, Math.ceil(total / PAGE_SIZE)) }); // the page emptied: go to the last one
          return;
        }
        t.tbody.replaceChildren(emptyRow(t.span, filtered
          ? "No model matches the search and filters."
          : "No models yet. The monitor learns about models from model.registered, rollout.updated and inference.logged events."));
        return;
      }
      t.tbody.replaceChildren(...models.map((m) => {
        const live = m.live || {};
        return h("tr", { testid: `model-row-${m.name}`, data: { model: m.name, state: m.state } },
          h("td", null, h("a", { class: "model-link", href: modelHref(m.name), testid: `model-link-${m.name}` }, m.name),
            m.task ? h("div", { class: "muted small" }, m.task) : null),
          h("td", null, m.team || DASH),
          h("td", null, stateBadge(m.state)),
          h("td", { class: "mono small", testid: "traffic" }, trafficText(m.arms)),
          h("td", null, m.rollout
            ? badge(rolloutText(m.rollout), PHASE_TONE[m.rollout.phase] || "muted", { title: m.rollout.reason || "" })
            : h("span", { class: "muted" }, DASH)),
          h("td", { class: "num" }, fmt.rps(live.rps)),
          h("td", { class: `num ${live.error_rate > 0.05 ? "bad-text" : ""}` }, fmt.pct(live.error_rate)),
          h("td", { class: "num" }, fmt.ms(live.latency_p95_ms)),
          h("td", { testid: "drift" }, (m.drifting || []).length
            ? (m.drifting || []).map((k) => badge(`${k} drift`, "bad"))
            : h("span", { class: "muted" }, "none"),
            isNum(m.drift_score) ? h("span", { class: "muted small", title: "largest PSI" }, ` ${fmt.stat(m.drift_score)}`) : null),
          h("td", { class: "num" }, m.alerts_firing > 0
            ? h("a", { href: "#/alerts?state=firing" }, badge(String(m.alerts_firing), "bad"))
            : h("span", { class: "muted" }, "0")),
        );
      }));
    };
    const unsubscribe = feed.subscribe(render);
    feed.setQuery(query);
    return {
      dispose() {
        clearTimeout(typing);
        unsubscribe();
      },
    };
  }

  // ------------------------------------------------------------------ charts

  /** A uPlot chart over ModelDetail.series: one chart object for the page's life, fed with setData. */
  class SeriesChart {
    constructor(kind, title, testid) {
      this.kind = kind;
      this.el = h("div", { class: "chart", testid, data: { points: 0, lines: 0 } });
      this.placeholder = h("div", { class: "chart-empty" }, "No traffic yet");
      this.card = h("div", { class: "chart-card" }, h("h3", null, title), this.el, this.placeholder);
      this.plot = null;
      this.signature = "";
      this.builds = 0; // how many uPlot instances this chart has made (tests check it stays 1)
      this.resize = new ResizeObserver(() => {
        if (this.plot) this.plot.setSize(this.size());
      });
      this.resize.observe(this.el);
    }

    size() {
      return { width: Math.max(240, this.el.clientWidth), height: 200 };
    }

    /** The lines this chart draws for the given series: [{label, value(point), color, dash}] */
    lines(series) {
      const out = [];
      series.forEach((s, i) => {
        const color = PALETTE[i % PALETTE.length];
        const name = s.arm === "primary" ? `v${s.version}` : `v${s.version} ${s.arm}`;
        if (this.kind === "traffic") {
          out.push({ label: name, color, get: (p) => p.rps });
        } else if (this.kind === "errors") {
          out.push({ label: name, color, get: (p) => (isNum(p.error_rate) ? p.error_rate * 100 : null) });
        } else {
          out.push({ label: `${name} p50`, color, width: 1, dash: [4, 3], get: (p) => p.latency_p50_ms });
          out.push({ label: `${name} p95`, color, width: 2, get: (p) => p.latency_p95_ms });
          out.push({ label: `${name} p99`, color, width: 1.5, dash: [2, 3], get: (p) => p.latency_p99_ms });
        }
      });
      return out;
    }

    formatValue(v) {
      if (!isNum(v)) return DASH;
      if (this.kind === "errors") return v.toFixed(2) + "%";
      if (this.kind === "latency") return fmt.ms(v);
      return fmt.rps(v) + " rps";
    }

    axisValues(splits) {
      return splits.map((v) => {
        if (!isNum(v)) return "";
        if (this.kind === "errors") return `${+v.toFixed(2)}%`;
        if (this.kind === "latency") return `${+v.toFixed(1)} ms`;
        return String(+v.toFixed(2));
      });
    }

    update(series) {
      const list = (series || []).filter((s) => s && Array.isArray(s.points));
      const lines = this.lines(list);
      // Align every line on one x axis: the union of bucket starts; a missing bucket is a gap.
      const xs = [...new Set(list.flatMap((s) => s.points.map((p) => p.t)))].filter(isNum).sort((a, b) => a - b);
      const index = new Map(xs.map((t, i) => [t, i]));
      const ys = [];
      let li = 0;
      for (const s of list) {
        const per = lines.length / list.length;
        for (let k = 0; k < per; k += 1, li += 1) {
          const col = new Array(xs.length).fill(null);
          for (const p of s.points) {
            const v = lines[li].get(p);
            if (index.has(p.t)) col[index.get(p.t)] = isNum(v) ? v : null;
          }
          ys.push(col);
        }
      }
      const data = [xs, ...ys];
      const maxY = Math.max(0, ...ys.flat().filter(isNum));
      const signature = lines.map((l) => l.label).join("|");
      const empty = xs.length === 0;

      this.placeholder.hidden = !empty;
      this.el.classList.toggle("is-empty", empty);
      if (!empty) {
        if (this.plot && signature === this.signature) {
          this.plot.setData(data);
        } else {
          // The set of lines changed (a new version or arm appeared): only then build a new chart.
          if (this.plot) this.plot.destroy();
          this.signature = signature;
          this.plot = new uPlot(this.options(lines), data, this.el);
          this.builds += 1;
        }
      }

      // What the chart shows, for tests and for anyone poking at the page from the console.
      this.el.dataset.points = String(xs.length);
      this.el.dataset.lines = String(lines.length);
      this.el.dataset.max = String(maxY);
      window.__fleetCharts = window.__fleetCharts || {};
      window.__fleetCharts[this.kind] = {
        points: xs.length,
        lines: lines.map((l) => l.label),
        max: maxY,
        lastT: empty ? null : xs[xs.length - 1],
        builds: this.builds,
      };
    }

    options(lines) {
      const axis = { stroke: "#5b6573", grid: { stroke: "#e6e9ee", width: 1 }, ticks: { stroke: "#d5dae1", width: 1 } };
      return {
        ...this.size(),
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [
          { ...axis },
          { ...axis, size: 64, values: (u, splits) => this.axisValues(splits) },
        ],
        series: [
          { label: "time", value: (u, v) => (isNum(v) ? fmt.date(new Date(v * 1000).toISOString()) : DASH) },
          ...lines.map((l) => ({
            label: l.label,
            stroke: l.color,
            width: l.width || 2,
            dash: l.dash,
            spanGaps: false,
            points: { show: false },
            value: (u, v) => this.formatValue(v),
          })),
        ],
      };
    }

    destroy() {
      this.resize.disconnect();
      if (this.plot) this.plot.destroy();
      this.plot = null;
    }
  }

  // ------------------------------------------------------------------ #/models/NAME

  function modelView(root, params, name) {
    const title = h("h1", null, name);
    const meta = h("div", { class: "meta", testid: "model-meta" });
    const versions = table("versions-table", [
      { label: "Version" }, { label: "Lineage" }, { label: "Dataset" }, { label: "Registered metrics" },
      { label: "Gate", title: "A gated version's delivery state: its checks and approvals (fleet versions checks)" },
      { label: "Traffic" }, { label: "rps", num: true }, { label: "Errors", num: true }, { label: "p95", num: true },
      { label: "Labelled performance", title: "From inference.feedback over the concept window" },
    ], "versions");
    const charts = [
      new SeriesChart("traffic", "Traffic (requests/s)", "chart-traffic"),
      new SeriesChart("latency", "Latency (p50 dashed · p95 solid · p99 dotted)", "chart-latency"),
      new SeriesChart("errors", "Error rate", "chart-errors"),
    ];
    const chartNote = h("p", { class: "muted small", testid: "chart-note" });
    const rolloutBody = h("div", { testid: "rollout-box", class: "rollout" });
    const drift = table("drift-table", [
      { label: "Version / kind" }, { label: "Feature" }, { label: "Test" }, { label: "Statistic", num: true },
      { label: "p-value", num: true }, { label: "Threshold", num: true }, { label: "Drifted" },
    ], "drift");
    const driftNote = h("p", { class: "muted small" },
      "Latest scored window per version and kind against the version's reference profile. " +
      "Groups without drift are folded: click a group to open or fold it.");
    const driftOpen = new Map(); // "version-kind" → open, when the user toggled it
    drift.el.addEventListener("click", (event) => {
      const row = event.target.closest("tr.group");
      if (!row) return;
      const key = row.dataset.key;
      const tbody = row.closest("tbody");
      const open = !tbody.classList.contains("open");
      driftOpen.set(key, open);
      tbody.classList.toggle("open", open);
    });
    const alerts = alertsTable("model-alerts-table", { showModel: false, compact: true });
    const retraining = table("retraining-table", [
      { label: "Job" }, { label: "Outcome" }, { label: "Versions" }, { label: "Dataset" },
      { label: "Holdout metrics", title: "Champion → candidate, on the same newest labelled traffic" },
      { label: "Reasons" },
    ], "retraining");
    const body = h("div", { class: "model-body", hidden: true },
      section("Versions", "versions-section", h("div", { class: "scroll" }, versions.el)),
      h("section", { class: "card", testid: "charts-section" },
        h("h2", null, "Live series"), chartNote, h("div", { class: "charts" }, charts.map((c) => c.card))),
      h("div", { class: "two-col" },
        section("Rollout", "rollout-section", rolloutBody),
        section("Alerts", "model-alerts-section", h("div", { class: "scroll" }, alerts.el))),
      section("Drift", "drift-section", driftNote, h("div", { class: "scroll" }, drift.el)),
      section("Retraining", "retraining-section", h("div", { class: "scroll" }, retraining.el)),
    );
    const missing = h("div", { class: "card notice-card", testid: "model-missing", hidden: true });
    root.append(
      h("div", { class: "page-head" }, h("a", { class: "back", href: "#/" }, "← Fleet"), title, meta),
      missing,
      body,
    );

    const render = (d) => {
      missing.hidden = true;
      body.hidden = false;
      meta.replaceChildren(
        stateBadge(d.state),
        d.team ? h("span", null, "team ", h("strong", null, d.team)) : null,
        d.task ? h("span", null, "task ", h("strong", null, d.task)) : null,
        h("span", null, `bucket ${d.bucket_s} s`),
      );
      renderVersions(versions, d.versions || [], name);
      const series = d.series || [];
      for (const c of charts) c.update(series);
      chartNote.textContent = series.length
        ? `One line per version and arm; ${fmt.int(Math.max(0, ...series.map((s) => s.points.length)))} buckets of ${d.bucket_s} s.`
        : "No inference.logged events for this model yet.";
      renderRollout(rolloutBody, d.rollout, d.analysis || []);
      renderDrift(drift, d.drift || [], driftOpen);
      alerts.render(d.alerts, "No alerts for this model.");
      renderRetraining(retraining, d.retraining || []);
      markUpdated();
    };

    const showMissing = () => {
      body.hidden = true;
      missing.hidden = false;
      missing.replaceChildren(h("h2", null, "Unknown model"),
        h("p", null, `The monitor has seen no event for a model named “${name}”. This page will fill in when one arrives.`));
    };
    // The browser logs every 404 response as a console error: ask for the model only once the
    // live feed (following this one model) says it exists.
    const feedQuery = new URLSearchParams({ model: name, limit: "1" }).toString();
    let known = null;
    const load = async (signal) => {
      if (known !== true) {
        if (known === false) showMissing();
        return;
      }
      try {
        const detail = await api(`/v1/models/${encodeURIComponent(name)}`, signal);
        showNotice(null);
        render(detail);
      } catch (err) {
        if (isAbort(err)) throw err;
        if (err.status === 404) {
          showMissing();
        } else {
          showNotice(`Could not load ${name}: ${err.message}`);
        }
      }
    };
    const unsubscribe = feed.subscribe((ov, query) => {
      if (query !== feedQuery) return;
      const was = known;
      known = Array.isArray(ov.models) && ov.models.some((m) => m.name === name);
      if (!known) showMissing();
      else if (was !== true) load().catch(() => {});
    });
    feed.setQuery(feedQuery);
    const poll = poller(load, MODEL_POLL_MS);

    return {
      dispose() {
        poll.stop();
        unsubscribe();
        for (const c of charts) c.destroy();
        if (window.__fleetCharts) delete window.__fleetCharts;
      },
    };
  }

  function lineage(v) {
    const origin = v.origin || "unknown";
    return v.parent_version !== null && v.parent_version !== undefined
      ? `v${v.version} ← v${v.parent_version} (${origin})`
      : `v${v.version} (${origin})`;
  }

  // A signed-in reviewer approves or rejects a version waiting for approval; the registry decides
  // whether they may (the gate's role, never the registrant) and the next version.checked shows it.
  async function review(name, version, decision) {
    if (!auth.token()) {
      auth.require();
      showNotice("Sign in with your token to review a version.");
      return;
    }
    const comment = window.prompt(`${decision === "approve" ? "Approve" : "Reject"} v${version} of ${name}: why?`, "");
    if (comment === null) return;
    try {
      const answer = await apiPost(`/v1/models/${encodeURIComponent(name)}/versions/${version}/reviews`,
        { decision, comment: comment || null });
      showNotice(`v${version}: ${answer.state.replace("_", " ")} — ${answer.reason}`, "ok");
    } catch (err) {
      showNotice(`Could not ${decision} v${version}: ${err.message}`);
    }
  }

  function gateCell(v, name) {
    if (!v.gate) return h("span", { class: "muted" }, DASH);
    const state = badge(v.gate.replace("_", " "), GATE_TONE[v.gate] || "muted", { title: v.gate_reason || "" });
    if (v.gate === "ready") return state;
    // Why a version is held back is the point of the column: say it, not only in a tooltip.
    const parts = [state, " ", h("span", { class: "muted", testid: "gate-reason" }, v.gate_reason || "")];
    if (v.gate === "awaiting_approval") {
      const button = (decision, label) => {
        const el = h("button", { type: "button", class: "link", testid: `gate-${decision}` }, label);
        el.addEventListener("click", () => review(name, v.version, decision));
        return el;
      };
      parts.push(" ", button("approve", "Approve"), " ", button("reject", "Reject"));
    }
    return h("span", null, ...parts);
  }

  function renderVersions(t, list, name) {
    if (!list.length) {
      t.tbody.replaceChildren(emptyRow(t.span, "No versions known."));
      return;
    }
    t.tbody.replaceChildren(...[...list].sort((a, b) => b.version - a.version).map((v) => {
      const live = v.live || {};
      const traffic = v.weight === null || v.weight === undefined
        ? h("span", { class: "muted" }, "not routed")
        : v.mode === "shadow" ? badge("shadow", "info") : badge(fmt.weight(v.weight), v.weight > 0 ? "ok" : "muted");
      return h("tr", { testid: `version-row-${v.version}` },
        h("td", null, h("strong", null, `v${v.version}`)),
        h("td", { class: "mono small", title: v.trigger_event_id ? `triggered by event ${v.trigger_event_id}` : "" }, lineage(v)),
        h("td", { class: "mono small" }, v.dataset || DASH),
        h("td", { class: "small" }, fmt.metrics(v.registered_metrics)),
        h("td", { class: "small", testid: "gate" }, gateCell(v, name)),
        h("td", null, traffic),
        h("td", { class: "num" }, fmt.rps(live.rps)),
        h("td", { class: "num" }, fmt.pct(live.error_rate)),
        h("td", { class: "num" }, fmt.ms(live.latency_p95_ms)),
        h("td", { class: "small" }, fmt.metrics(v.performance)),
      );
    }));
  }

  function renderRetraining(t, jobs) {
    if (!jobs.length) {
      t.tbody.replaceChildren(emptyRow(6, "No retraining job has finished for this model."));
      return;
    }
    const tone = { registered: "ok", rejected: "warn", failed: "bad" };
    t.tbody.replaceChildren(...jobs.map((j) => {
      const champion = j.champion_metrics || {};
      const candidate = j.candidate_metrics || {};
      const metrics = Object.keys(candidate).filter((k) => k in champion).slice(0, 2)
        .map((k) => `${k} ${fmt.metric(champion[k])} → ${fmt.metric(candidate[k])}`).join(" · ");
      return h("tr", null,
        h("td", { class: "mono small" }, j.job_id.slice(0, 8)),
        h("td", null, badge(j.outcome, tone[j.outcome] || "muted")),
        h("td", null, j.new_version ? `v${j.champion_version} → v${j.new_version}` : `v${j.champion_version ?? "?"}`),
        h("td", { class: "small" }, j.dataset_version ? `${j.dataset_version.dataset}@${j.dataset_version.version}` : "—"),
        h("td", { class: "small" }, metrics || "—"),
        h("td", { class: "small" }, (j.reasons || []).join("; ")),
      );
    }));
  }

  function renderRollout(box, rollout, analysis) {
    const parts = [];
    if (rollout) {
      parts.push(h("div", { class: "rollout-head" },
        badge(rollout.phase, PHASE_TONE[rollout.phase] || "muted", { testid: "rollout-phase" }),
        h("span", null, h("strong", null, rollout.strategy), ` to v${rollout.version}`),
        h("span", null, `step ${rollout.step}`),
        h("span", { class: "muted mono small" }, rollout.rollout_id)),
        rollout.reason ? h("p", { class: "muted" }, rollout.reason) : null);
    } else {
      parts.push(h("p", { class: "muted" }, "No rollout recorded for this model."));
    }
    if (analysis.length) {
      const t = table("analysis-table", [
        { label: "Step" }, { label: "Verdict" }, { label: "Candidate vs baseline" }, { label: "Reason" },
      ], "analysis");
      // A business KPI carries its confidence interval and how many outcomes are behind it.
      const interval = (m) => (isNum(m.kpi_low) && isNum(m.kpi_high)
        ? ` [${fmt.metric(m.kpi_low)}, ${fmt.metric(m.kpi_high)}]` : "") + (isNum(m.kpi_samples) ? ` n=${fmt.int(m.kpi_samples)}` : "");
      const arm = (label, m, kpi) => `${label}: ${fmt.int(m.requests)} req · err ${fmt.pct(m.error_rate)} · p95 ${
        fmt.ms(m.latency_p95_ms)}${isNum(m.kpi) ? ` · ${kpi || "kpi"} ${fmt.metric(m.kpi)}${interval(m)}` : ""}`;
      t.tbody.replaceChildren(...[...analysis].sort((a, b) => b.step - a.step).map((a) => h("tr", null,
        h("td", null, String(a.step)),
        h("td", null, badge(a.verdict, VERDICT_TONE[a.verdict] || "muted")),
        h("td", { class: "small" },
          h("div", { testid: "analysis-candidate" }, arm(`v${a.candidate_version}`, a.candidate || {}, a.kpi)),
          h("div", { class: "muted" }, arm(`v${a.baseline_version}`, a.baseline || {}, a.kpi)),
          isNum(a.p_value) ? h("div", { class: "muted" }, `p = ${fmt.pValue(a.p_value)}`) : null),
        h("td", { class: "small" }, a.reason),
      )));
      parts.push(h("h3", null, "Latest analysis"), t.el);
    }
    box.replaceChildren(...parts.filter(Boolean));
  }

  const featureLabel = (name) => (name === "prediction" ? "predictions" : name);

  function renderDrift(t, list, opened) {
    // One <tbody> per version/kind keeps each group's header and feature rows together; a group
    // is open when it drifted, unless the user folded it.
    const groups = [...list].sort((a, b) => b.version - a.version || a.kind.localeCompare(b.kind)).map((d) => {
      const key = `${d.version}-${d.kind}`;
      const scores = d.scores || [];
      const flagged = new Set(scores.filter((s) => s.drifted).map((s) => s.feature));
      const open = opened.has(key) ? opened.get(key) : d.active || d.drifted;
      const head = h("tr", { class: "group", testid: `drift-${key}`, title: "Click to open or fold",
        data: { key, active: d.active, drifted: d.drifted } },
        h("td", { colspan: t.span },
          h("span", { class: "fold", "aria-hidden": "true" }),
          h("strong", null, `v${d.version} · ${d.kind}`), " ",
          d.active ? badge("drift episode open", "bad", { testid: "drift-active" }) : badge("no episode", "ok"), " ",
          d.drifted ? badge("latest window drifted", "warn") : null,
          h("span", { class: "muted small" },
            ` ${flagged.size ? `${[...flagged].map(featureLabel).join(", ")} · ` : ""}` +
            `${scores.length} tests · ${fmt.int(d.sample_size)} rows · window ended ${fmt.date(d.window_end)}`)));
      let previous = null;
      const rows = scores.map((s) => {
        const first = s.feature !== previous;
        previous = s.feature;
        return h("tr", { class: [s.drifted ? "drifted" : "", first ? "" : "same-feature"].join(" ").trim() || null,
          data: { drifted: s.drifted, feature: s.feature } },
          h("td", null),
          h("td", { class: "mono" }, first ? featureLabel(s.feature) : ""),
          h("td", null, s.test),
          h("td", { class: "num" }, fmt.stat(s.statistic)),
          h("td", { class: "num" }, fmt.pValue(s.p_value)),
          h("td", { class: "num" }, fmt.stat(s.threshold)),
          h("td", null, s.drifted ? badge("drifted", "bad") : h("span", { class: "muted" }, "no")));
      });
      return h("tbody", { class: open ? "open" : null }, head, ...(rows.length ? rows : [emptyRow(t.span, "No scores.")]));
    });
    t.el.querySelectorAll("tbody").forEach((b) => b.remove());
    t.el.append(...(groups.length ? groups : [h("tbody", { class: "open" }, emptyRow(t.span, "No drift window scored yet."))]));
  }

  // ------------------------------------------------------------------ #/alerts

  function alertsView(root, params) {
    feed.setQuery("limit=1"); // the header's totals only
    const state = ["firing", "resolved"].includes(params.get("state")) ? params.get("state") : "";
    const filter = h("div", { class: "segmented", testid: "alerts-filter", role: "group" },
      [["", "All"], ["firing", "Firing"], ["resolved", "Resolved"]].map(([value, label]) =>
        h("a", {
          href: value ? `#/alerts?state=${value}` : "#/alerts",
          class: value === state ? "active" : null,
          "aria-pressed": value === state ? "true" : "false",
          testid: `alerts-filter-${value || "all"}`,
        }, label)));
    const count = h("p", { class: "subtitle", testid: "alerts-count" });
    const t = alertsTable("alerts-table", { showModel: true });
    t.tbody.replaceChildren(emptyRow(t.span, "Loading…"));
    root.append(
      h("div", { class: "page-head" }, h("h1", null, "Alerts"), count, filter),
      h("section", { class: "card flush" }, h("div", { class: "scroll" }, t.el)),
    );
    const query = new URLSearchParams({ limit: "200" });
    if (state) query.set("state", state);
    const poll = poller(async (signal) => {
      try {
        const list = await api(`/v1/alerts?${query}`, signal);
        showNotice(null);
        count.textContent = `${list.length} ${state || "firing and resolved"} alert${list.length === 1 ? "" : "s"}` +
          (list.length >= 200 ? " (latest 200)" : "");
        t.render(list, state ? `No ${state} alerts.` : "No alerts yet.");
        markUpdated();
      } catch (err) {
        if (isAbort(err)) throw err;
        showNotice(`Could not load alerts: ${err.message}`);
      }
    }, ALERTS_POLL_MS);
    return { dispose: () => poll.stop() };
  }

  // ------------------------------------------------------------------ router

  let current = null;

  function route() {
    const raw = location.hash || "#/";
    const [path, query] = raw.replace(/^#/, "").split("?");
    const params = new URLSearchParams(query || "");
    const root = document.getElementById("view");
    if (current) current.dispose();
    current = null;
    root.replaceChildren();
    window.scrollTo(0, 0);

    let section = "overview";
    const model = /^\/models\/([^/]+)\/?$/.exec(path);
    if (model) {
      let name;
      try {
        name = decodeURIComponent(model[1]);
      } catch {
        name = model[1];
      }
      section = "model";
      document.title = `${name} · ModelFleet monitor`;
      current = modelView(root, params, name);
    } else if (path === "/alerts") {
      section = "alerts";
      document.title = "Alerts · ModelFleet monitor";
      current = alertsView(root, params);
    } else {
      document.title = "Fleet · ModelFleet monitor";
      current = overviewView(root, params);
    }
    root.dataset.route = section;
    document.querySelectorAll("[data-nav]").forEach((a) => {
      a.classList.toggle("active", a.dataset.nav === section || (section === "model" && a.dataset.nav === "overview"));
    });
  }

  function setUpAuthForm() {
    const form = auth.form();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = form.querySelector("input").value.trim();
      if (!token) return;
      auth.store(token);
      form.querySelector("input").value = "";
      form.hidden = true;
      feed.start();
      route();
    });
    form.querySelector('[data-action="forget-token"]').addEventListener("click", () => {
      auth.store("");
      feed.start();
      route();
    });
  }

  function start() {
    setUpAuthForm();
    feed.subscribe(renderHeader);
    window.addEventListener("hashchange", route);
    route(); // each view sets the feed's query, which connects it
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
