/*
 * app.js: the Postino dashboard. Hand-written JavaScript, no framework, no build step.
 *
 * Reads the HTTP API (stats/http.h, documents in stats/encode.h) with the API key the user
 * types; the key is kept in sessionStorage only (gone when the tab closes) and sent as
 * "Authorization: Bearer". Refreshes every REFRESH_MS while the tab is visible.
 *
 * Safety: every string from the API is untrusted (recipients, replies and campaign names
 * come from strangers): it is inserted with textContent or setAttribute only, never as HTML.
 * Charts are SVG elements built one by one; no inline styles (the CSP forbids them).
 *
 * For browser tests: numbers sit in elements with stable ids or data-test attributes, with
 * the raw value in data-value.
 */
'use strict';

(function () {
	const KEY_STORE = 'postino.apikey';
	const REFRESH_MS = 5000;
	const SVG_NS = 'http://www.w3.org/2000/svg';

	/*
	 * Thresholds the big mailbox providers publish (as of 2024):
	 * - Complaints: Google's email sender guidelines (support.google.com/a/answer/81126)
	 *   ask bulk senders to keep the spam rate reported in Postmaster Tools below 0.10% and
	 *   never reach 0.30%; Yahoo's sender best practices (senders.yahooinc.com/best-practices)
	 *   set the same 0.3% ceiling.
	 * - Bounces: mailbox providers publish no figure; 2% is the ceiling sending services
	 *   commonly advise, and Amazon SES puts an account under review at 5% (SES developer
	 *   guide, "Sending review process FAQs").
	 */
	const COMPLAINT_AIM = 0.001;
	const COMPLAINT_MAX = 0.003;
	const BOUNCE_AIM = 0.02;
	const BOUNCE_MAX = 0.05;

	const RANGES = {
		hour: { seconds: 3600, step: 'minute', stepSeconds: 60 },
		day: { seconds: 86400, step: 'hour', stepSeconds: 3600 },
		month: { seconds: 30 * 86400, step: 'day', stepSeconds: 86400 },
	};

	/* Outcomes stacked in the delivery chart, bottom up. */
	const LAYERS = [
		{ field: 'delivered', label: 'Delivered' },
		{ field: 'deferred', label: 'Deferred' },
		{ field: 'bounced_soft', label: 'Bounced (soft)' },
		{ field: 'bounced_hard', label: 'Bounced (hard)' },
		{ field: 'bounced_block', label: 'Blocked' },
		{ field: 'expired', label: 'Expired' },
		{ field: 'suppressed', label: 'Suppressed' },
	];
	const TOTAL_FIELDS = ['received', 'delivered', 'deferred', 'bounced', 'bounced_hard',
		'bounced_soft', 'bounced_block', 'complained', 'suppressed', 'expired'];
	const ID_RE = /^[0-9a-f]{16}$/;

	let key = sessionStorage.getItem(KEY_STORE) || '';
	let timer = null;
	let refreshing = false;
	let searchCursor = null;
	let searchQuery = '';

	/* ---- DOM helpers: text only ---- */

	function $(id) {
		return document.getElementById(id);
	}

	/* An element with attributes (set one by one) and text content. */
	function el(tag, attrs, text) {
		const e = document.createElement(tag);
		for (const name in attrs || {})
			e.setAttribute(name, String(attrs[name]));
		if (text !== undefined && text !== null)
			e.textContent = String(text);
		return e;
	}

	function svg(tag, attrs, text) {
		const e = document.createElementNS(SVG_NS, tag);
		for (const name in attrs || {})
			e.setAttribute(name, String(attrs[name]));
		if (text !== undefined && text !== null)
			e.textContent = String(text);
		return e;
	}

	function clear(node) {
		while (node.firstChild)
			node.removeChild(node.firstChild);
	}

	/* Sets a figure's text and raw value. */
	function setFigure(id, value, text) {
		const node = $(id);
		node.textContent = text !== undefined ? text : (value === null ? '-' : String(value));
		node.setAttribute('data-value', value === null ? '' : String(value));
	}

	function percent(rate) {
		return rate === null || rate === undefined ? '-' : (rate * 100).toFixed(2) + '%';
	}

	function when(iso) {
		if (!iso)
			return '-';
		const d = new Date(iso);
		return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
	}

	function duration(seconds) {
		if (seconds === null || seconds === undefined)
			return '-';
		if (seconds < 120)
			return seconds + ' s';
		if (seconds < 7200)
			return Math.round(seconds / 60) + ' min';
		if (seconds < 172800)
			return Math.round(seconds / 3600) + ' h';
		return Math.round(seconds / 86400) + ' d';
	}

	/* A table row of cells: strings or {text, cls, value, node}. */
	function row(cells, attrs) {
		const tr = el('tr', attrs);
		for (const c of cells) {
			if (c !== null && typeof c === 'object') {
				const td = el('td', c.cls ? { class: c.cls } : {});
				if (c.node)
					td.appendChild(c.node);
				else
					td.textContent = c.text === null || c.text === undefined ? '-' : String(c.text);
				if (c.field)
					td.setAttribute('data-field', c.field);
				if (c.value !== undefined)
					td.setAttribute('data-value', String(c.value));
				tr.appendChild(td);
			} else {
				tr.appendChild(el('td', {}, c === null || c === undefined ? '-' : c));
			}
		}
		return tr;
	}

	function num(field, value) {
		return { text: value, value: value, cls: 'num', field: field };
	}

	function text(field, value) {
		return { text: value, cls: 'text', field: field };
	}

	function setStatus(message, isError) {
		const s = $('status');
		s.textContent = message;
		s.className = isError ? 'status error' : 'status';
	}

	function sectionError(container, err) {
		clear(container);
		const p = el('p', { class: 'section-error' }, 'Not available: ' + err.message);
		if (container.tagName === 'TBODY') {
			const tr = el('tr');
			const td = el('td', { colspan: 8 });
			td.appendChild(p);
			tr.appendChild(td);
			container.appendChild(tr);
		} else {
			container.appendChild(p);
		}
	}

	/* ---- the API ---- */

	class ApiError extends Error {
		constructor(status, message) {
			super(message);
			this.status = status;
		}
	}

	async function api(path) {
		const res = await fetch(path, {
			headers: { Authorization: 'Bearer ' + key },
			cache: 'no-store',
			credentials: 'omit',
			redirect: 'error',
		});
		let body = null;
		try {
			body = await res.json();
		} catch (e) {
			body = null;
		}
		if (!res.ok) {
			const reason = body && typeof body.reason === 'string' ? body.reason : res.statusText;
			throw new ApiError(res.status, reason + ' (' + res.status + ')');
		}
		return body;
	}

	function query(params) {
		const parts = [];
		for (const name in params) {
			const v = params[name];
			if (v !== undefined && v !== null && v !== '')
				parts.push(name + '=' + encodeURIComponent(String(v)));
		}
		return parts.join('&');
	}

	/* ---- charts ---- */

	const W = 800;
	const H = 240;
	const M = { left: 48, right: 12, top: 10, bottom: 24 };

	function axisLabel(x, y, anchor, value) {
		return svg('text', { x: x, y: y, 'text-anchor': anchor }, value);
	}

	/* Buckets of a series spread over [from, to] every step seconds, missing ones as 0. */
	function denseBuckets(series, from, to, step) {
		const byTime = new Map();
		for (const b of (series && series.buckets) || [])
			byTime.set(Math.floor(Date.parse(b.time) / 1000), b);
		const out = [];
		for (let t = from; t <= to; t += step)
			out.push({ t: t, b: byTime.get(t) || null });
		return out;
	}

	function deliveryChart(container, buckets) {
		clear(container);
		const plotW = W - M.left - M.right;
		const plotH = H - M.top - M.bottom;
		let max = 1;
		for (const x of buckets) {
			let sum = 0;
			for (const layer of LAYERS)
				sum += x.b ? x.b[layer.field] || 0 : 0;
			max = Math.max(max, sum);
		}
		const root = svg('svg', {
			viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'delivery over time',
			'data-buckets': buckets.length, 'data-max': max,
		});
		for (const frac of [0, 0.5, 1]) {
			const y = M.top + plotH * (1 - frac);
			root.appendChild(svg('line', { class: 'grid', x1: M.left, x2: W - M.right, y1: y, y2: y }));
			root.appendChild(axisLabel(M.left - 6, y + 4, 'end', Math.round(max * frac)));
		}
		const bw = plotW / Math.max(buckets.length, 1);
		buckets.forEach(function (x, i) {
			let y = M.top + plotH;
			for (const layer of LAYERS) {
				const v = x.b ? x.b[layer.field] || 0 : 0;
				if (v <= 0)
					continue;
				const h = (v / max) * plotH;
				y -= h;
				const rect = svg('rect', {
					class: 's-' + layer.field, x: M.left + i * bw, y: y,
					width: Math.max(bw - 1, 0.5), height: h,
					'data-series': layer.field, 'data-time': x.t, 'data-value': v,
				});
				rect.appendChild(svg('title', {}, new Date(x.t * 1000).toLocaleString() + ': ' +
					layer.label + ' ' + v));
				root.appendChild(rect);
			}
		});
		const ticks = buckets.length > 1 ? [0, Math.floor(buckets.length / 2), buckets.length - 1] : [0];
		for (const i of ticks) {
			if (!buckets[i])
				continue;
			const anchor = i === 0 ? 'start' : (i === buckets.length - 1 ? 'end' : 'middle');
			root.appendChild(axisLabel(M.left + (i + 0.5) * bw, H - 6, anchor,
				new Date(buckets[i].t * 1000).toLocaleString()));
		}
		container.appendChild(root);
	}

	/* A rate over time (a line) against its aim and ceiling (dashed lines). */
	function rateChart(container, buckets, field, aim, ceiling, label) {
		clear(container);
		const h = 120;
		const plotW = W - M.left - M.right;
		const plotH = h - M.top - M.bottom;
		let max = ceiling * 1.5;
		for (const x of buckets) {
			const r = x.b && x.b.rates ? x.b.rates[field] : null;
			if (typeof r === 'number')
				max = Math.max(max, r);
		}
		const root = svg('svg', { viewBox: '0 0 ' + W + ' ' + h, role: 'img', 'aria-label': label });
		const yOf = function (r) {
			return M.top + plotH * (1 - r / max);
		};
		root.appendChild(axisLabel(M.left - 6, M.top + plotH + 4, 'end', '0%'));
		root.appendChild(axisLabel(M.left - 6, M.top + 4, 'end', percent(max)));
		for (const t of [{ v: aim, cls: 'warn' }, { v: ceiling, cls: 'bad' }]) {
			root.appendChild(svg('line', {
				class: 'threshold ' + t.cls, x1: M.left, x2: W - M.right, y1: yOf(t.v), y2: yOf(t.v),
				'data-threshold': t.v,
			}));
			root.appendChild(axisLabel(W - M.right, yOf(t.v) - 3, 'end', percent(t.v)));
		}
		const step = plotW / Math.max(buckets.length, 1);
		let points = '';
		buckets.forEach(function (x, i) {
			const r = x.b && x.b.rates ? x.b.rates[field] : null;
			if (typeof r === 'number')
				points += (M.left + (i + 0.5) * step).toFixed(1) + ',' + yOf(r).toFixed(1) + ' ';
		});
		if (points)
			root.appendChild(svg('polyline', { class: 'rate-line', points: points.trim() }));
		container.appendChild(root);
	}

	function queueChart(container, sites) {
		clear(container);
		const top = sites.slice().sort(function (a, b) {
			return (b.ready + b.leased) - (a.ready + a.leased);
		}).slice(0, 12);
		const barH = 18;
		const labelW = 220;
		const h = Math.max(top.length, 1) * (barH + 6) + 8;
		let max = 1;
		for (const s of top)
			max = Math.max(max, s.ready + s.leased);
		const root = svg('svg', { viewBox: '0 0 ' + W + ' ' + h, role: 'img', 'aria-label': 'queue per site' });
		top.forEach(function (s, i) {
			const y = 4 + i * (barH + 6);
			const name = s.name.length > 34 ? s.name.slice(0, 33) + '\u2026' : s.name;
			root.appendChild(axisLabel(labelW - 6, y + barH - 5, 'end', name));
			let x = labelW;
			for (const part of [{ f: 'ready', v: s.ready }, { f: 'leased', v: s.leased }]) {
				const w = (part.v / max) * (W - labelW - 60);
				if (w > 0) {
					const rect = svg('rect', {
						class: 's-' + part.f, x: x, y: y, width: w, height: barH,
						'data-series': part.f, 'data-value': part.v,
					});
					rect.appendChild(svg('title', {}, s.name + ': ' + part.f + ' ' + part.v));
					root.appendChild(rect);
					x += w;
				}
			}
			root.appendChild(axisLabel(x + 4, y + barH - 5, 'start', s.ready + s.leased));
		});
		container.appendChild(root);
	}

	function legend() {
		const ul = $('delivery-legend');
		clear(ul);
		for (const layer of LAYERS) {
			const li = el('li');
			li.appendChild(el('span', { class: 'swatch s-' + layer.field }));
			li.appendChild(el('span', {}, layer.label));
			ul.appendChild(li);
		}
	}

	/* ---- sections ---- */

	function level(rate, aim, ceiling) {
		if (typeof rate !== 'number')
			return { cls: '', text: 'no data' };
		if (rate >= ceiling)
			return { cls: 'bad', text: 'over ' + percent(ceiling) };
		if (rate >= aim)
			return { cls: 'warn', text: 'over ' + percent(aim) };
		return { cls: 'ok', text: 'fine' };
	}

	function showLevel(id, l) {
		const node = $(id);
		node.textContent = l.text;
		node.className = 'level ' + l.cls;
	}

	function renderTotals(answer, range, from, to) {
		const series = answer.series && answer.series[0];
		const totals = series ? series.totals : null;
		for (const f of TOTAL_FIELDS)
			setFigure('total-' + f, totals ? totals[f] : 0);
		const buckets = denseBuckets(series, Math.floor(Date.parse(answer.from) / 1000) || from,
			Math.floor(Date.parse(answer.to) / 1000) || to, range.stepSeconds);
		deliveryChart($('delivery-chart'), buckets);
		const rates = totals ? totals.rates : {};
		setFigure('bounce-rate', rates.bounce, percent(rates.bounce));
		setFigure('complaint-rate', rates.complaint, percent(rates.complaint));
		showLevel('bounce-level', level(rates.bounce, BOUNCE_AIM, BOUNCE_MAX));
		showLevel('complaint-level', level(rates.complaint, COMPLAINT_AIM, COMPLAINT_MAX));
		rateChart($('bounce-chart'), buckets, 'bounce', BOUNCE_AIM, BOUNCE_MAX, 'bounce rate');
		rateChart($('complaint-chart'), buckets, 'complaint', COMPLAINT_AIM, COMPLAINT_MAX,
			'complaint rate');
	}

	function renderQueue(q) {
		const t = q.totals || {};
		setFigure('queue-ready', t.ready);
		setFigure('queue-scheduled', t.scheduled);
		setFigure('queue-leased', t.leased);
		setFigure('queue-held', t.held);
		setFigure('queue-dead', t.dead);
		setFigure('queue-sites-down', t.sites_down);
		setFigure('queue-oldest', q.oldest_age_s, duration(q.oldest_age_s));
		const sites = q.sites || [];
		queueChart($('queue-chart'), sites);
		const body = $('queue-sites');
		clear(body);
		for (const s of sites) {
			body.appendChild(row([
				text('name', s.name), num('ready', s.ready), num('leased', s.leased),
				{ text: s.down_s > 0 ? duration(s.down_s) : 'up', value: s.down_s, field: 'down' },
				{ text: s.held ? 'held' : '', value: s.held ? 1 : 0, field: 'held' },
				{ text: s.rate_limited ? 'waits ' + s.rate_wait_ms + ' ms' : '', field: 'rate',
					value: s.rate_limited ? 1 : 0 },
			], { 'data-test': 'queue-site' }));
		}
	}

	function renderDomains(answer) {
		const body = $('failing-domains');
		clear(body);
		const rows = (answer.series || []).map(function (s) {
			return { key: s.key, t: s.totals };
		}).filter(function (x) {
			return x.t.bounced > 0 || x.t.deferred > 0 || x.t.expired > 0;
		}).sort(function (a, b) {
			return (b.t.bounced + b.t.expired) - (a.t.bounced + a.t.expired) ||
				b.t.deferred - a.t.deferred;
		}).slice(0, 10);
		if (rows.length === 0)
			body.appendChild(row([{ text: 'No failures in this period.' }]));
		for (const x of rows) {
			body.appendChild(row([
				text('domain', x.key), num('sent', x.t.delivered + x.t.bounced),
				num('bounced', x.t.bounced),
				{ text: percent(x.t.rates.bounce), value: x.t.rates.bounce, field: 'rate' },
				num('bounced_hard', x.t.bounced_hard), num('bounced_soft', x.t.bounced_soft),
				num('bounced_block', x.t.bounced_block), num('deferred', x.t.deferred),
			], { 'data-test': 'failing-domain' }));
		}
	}

	function renderReasons(answer) {
		const body = $('failing-reasons');
		clear(body);
		const groups = new Map();
		for (const e of answer.events || []) {
			const reason = e.reason || 'unclassified';
			const k = reason + '\u0000' + (e.class || '');
			const g = groups.get(k) || { reason: reason, cls: e.class, count: 0, reply: e.reply };
			g.count++;
			groups.set(k, g);
		}
		const top = Array.from(groups.values()).sort(function (a, b) {
			return b.count - a.count;
		}).slice(0, 10);
		if (top.length === 0)
			body.appendChild(row([{ text: 'No bounces in this period.' }]));
		for (const g of top) {
			body.appendChild(row([text('reason', g.reason), text('class', g.cls), num('count', g.count),
				text('reply', g.reply)], { 'data-test': 'failing-reason' }));
		}
		if (answer.next_cursor)
			body.appendChild(row([{ text: 'Counted from the latest ' + (answer.events || []).length +
				' bounces only.' }]));
	}

	/* ---- message search and timeline ---- */

	function messageButton(id) {
		if (typeof id !== 'string' || !ID_RE.test(id))
			return { text: id, field: 'id' };
		const b = el('button', { type: 'button', class: 'link', 'data-id': id }, id);
		b.addEventListener('click', function () {
			openMessage(id);
		});
		return { node: b, field: 'id' };
	}

	function eventRow(e) {
		return row([
			{ text: when(e.time), field: 'time', value: e.time },
			text('type', e.type), messageButton(e.id), text('rcpt', e.rcpt),
			text('campaign', e.campaign), text('reply', e.reply),
		], { 'data-test': 'event-row' });
	}

	async function search(more) {
		const status = $('search-status');
		const body = $('search-results');
		if (!more) {
			searchQuery = query({
				recipient: $('search-recipient').value.trim(),
				campaign: $('search-campaign').value.trim(),
				type: $('search-type').value,
				limit: 50,
			});
			searchCursor = null;
			clear(body);
		}
		const q = searchQuery + (more && searchCursor ? '&cursor=' + encodeURIComponent(searchCursor) : '');
		status.textContent = 'Searching\u2026';
		try {
			const answer = await api('/api/v1/events?' + q);
			for (const e of answer.events || [])
				body.appendChild(eventRow(e));
			searchCursor = answer.next_cursor || null;
			$('search-more').hidden = !searchCursor;
			const n = body.querySelectorAll('tr').length;
			status.textContent = n === 0 ? 'No events match.' : n + ' events.';
			status.setAttribute('data-value', String(n));
		} catch (err) {
			status.textContent = 'Search failed: ' + err.message;
			handleAuth(err);
		}
	}

	async function openMessage(id) {
		if (!ID_RE.test(id))
			return;
		const panel = $('message');
		try {
			const m = await api('/api/v1/messages/' + id);
			$('message-id').textContent = m.id;
			$('message-user').textContent = m.user || '-';
			$('message-sender').textContent = m.sender === '' ? '<>' : (m.sender || '-');
			$('message-campaign').textContent = m.campaign || '-';
			$('message-tags').textContent = (m.tags || []).join(', ') || '-';
			$('message-received').textContent = when(m.received);
			setFigure('message-size', m.size, m.size + ' octets');
			const rb = $('message-recipients');
			clear(rb);
			for (const r of m.recipients || []) {
				rb.appendChild(row([
					text('rcpt', r.rcpt), text('state', r.state), num('attempts', r.attempts),
					{ text: when(r.next_attempt), field: 'next_attempt' }, text('host', r.host),
					text('tls', r.tls), text('last_reply', r.last_reply),
				], { 'data-test': 'message-rcpt' }));
			}
			const tl = $('message-timeline');
			clear(tl);
			for (const e of m.events || []) {
				const li = el('li', { 'data-test': 'timeline-event', 'data-type': e.type || '' });
				li.appendChild(el('span', { class: 'when' }, when(e.time)));
				li.appendChild(el('span', { class: 'what' }, e.type));
				li.appendChild(el('span', {}, e.rcpt));
				const detail = [e.host, e.tls, e.reply, e.reason, e.class].filter(Boolean).join(' \u00b7 ');
				if (detail)
					li.appendChild(el('span', { class: 'detail' }, detail));
				tl.appendChild(li);
			}
			panel.hidden = false;
			panel.scrollIntoView({ block: 'start' });
		} catch (err) {
			$('search-status').textContent = err.status === 404 ? 'No such message.' :
				'Could not open the message: ' + err.message;
			handleAuth(err);
		}
	}

	/* ---- refresh loop and the key ---- */

	function handleAuth(err) {
		if (err instanceof ApiError && err.status === 401) {
			forget();
			setStatus('The API key was refused. Enter another.', true);
			return true;
		}
		return false;
	}

	async function refresh() {
		if (!key || refreshing || document.hidden)
			return;
		refreshing = true;
		const range = RANGES[$('range').value] || RANGES.day;
		const to = Math.floor(Date.now() / 1000);
		const from = to - range.seconds;
		const span = { from: from, to: to, step: range.step };
		try {
			const got = await Promise.allSettled([
				api('/api/v1/stats?' + query(span)),
				api('/api/v1/stats?' + query(Object.assign({ by: 'domain', limit: 100 }, span))),
				api('/api/v1/queue'),
				api('/api/v1/events?' + query({ type: 'bounced', from: from, to: to, limit: 1000 })),
			]);
			let failed = 0;
			for (const g of got) {
				if (g.status === 'rejected') {
					failed++;
					if (handleAuth(g.reason))
						return;
				}
			}
			const show = [
				function (v) { renderTotals(v, range, from, to); },
				renderDomains, renderQueue, renderReasons,
			];
			const where = [$('delivery-chart'), $('failing-domains'), $('queue-chart'), $('failing-reasons')];
			got.forEach(function (g, i) {
				if (g.status === 'fulfilled')
					show[i](g.value);
				else
					sectionError(where[i], g.reason);
			});
			const now = new Date();
			$('updated').textContent = 'Updated ' + now.toLocaleTimeString();
			$('updated').setAttribute('data-value', now.toISOString());
			setStatus(failed ? failed + ' of 4 requests failed; retrying.' : 'Live.', failed > 0);
		} finally {
			refreshing = false;
		}
	}

	function start() {
		$('key-form').hidden = true;
		$('session').hidden = false;
		$('main').hidden = false;
		setStatus('Loading\u2026', false);
		legend();
		refresh();
		if (timer === null)
			timer = setInterval(refresh, REFRESH_MS);
	}

	function forget() {
		key = '';
		sessionStorage.removeItem(KEY_STORE);
		if (timer !== null) {
			clearInterval(timer);
			timer = null;
		}
		$('main').hidden = true;
		$('message').hidden = true;
		$('session').hidden = true;
		$('key-form').hidden = false;
		setStatus('Enter an API key to start.', false);
	}

	document.addEventListener('DOMContentLoaded', function () {
		$('key-form').addEventListener('submit', function (ev) {
			ev.preventDefault();
			const input = $('key-input');
			const k = input.value.trim();
			input.value = '';
			if (!/^[\x21-\x7e]{1,256}$/.test(k)) {
				setStatus('An API key is 1 to 256 printable characters without spaces.', true);
				return;
			}
			key = k;
			sessionStorage.setItem(KEY_STORE, key);
			start();
		});
		$('key-forget').addEventListener('click', forget);
		$('range').addEventListener('change', refresh);
		$('search-form').addEventListener('submit', function (ev) {
			ev.preventDefault();
			search(false);
		});
		$('search-more').addEventListener('click', function () {
			search(true);
		});
		$('message-close').addEventListener('click', function () {
			$('message').hidden = true;
		});
		document.addEventListener('visibilitychange', refresh);
		if (key)
			start();
	});
})();
