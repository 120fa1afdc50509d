// Stoker dashboard script: theme and time-zone toggles, live figures over server-sent
// events, "N new — show" banners instead of moving rows, row selection, confirmations, copy
// buttons and the `/` shortcut. Hand-written, no framework, no build step. Every page works
// without it; it only adds liveness and comfort.
(function () {
  'use strict';

  var root = document.documentElement;
  var prefs = {
    get: function (key) {
      try { return window.localStorage.getItem(key); } catch (e) { return null; }
    },
    set: function (key, value) {
      try {
        if (value === null) { window.localStorage.removeItem(key); } else { window.localStorage.setItem(key, value); }
      } catch (e) { /* private mode: the choice lasts for this page only */ }
    }
  };

  // The theme is applied before the body is drawn (this file loads in <head>), so a dark
  // page never flashes light.
  var theme = prefs.get('stoker.theme');
  if (theme === 'light' || theme === 'dark') { root.setAttribute('data-theme', theme); }

  function all(selector, scope) { return Array.prototype.slice.call((scope || document).querySelectorAll(selector)); }
  function one(selector, scope) { return (scope || document).querySelector(selector); }
  function number(n) { return Number(n).toLocaleString('en-US'); }
  function pad(n) { return (n < 10 ? '0' : '') + n; }

  // --- Theme: system → dark → light → system ---
  function systemDark() { return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches; }
  function themeTitle() {
    var t = root.getAttribute('data-theme');
    return 'Theme: ' + (t ? t : 'system (' + (systemDark() ? 'dark' : 'light') + ')') + ' — click to change';
  }
  function initTheme() {
    all('[data-toggle-theme]').forEach(function (button) {
      button.title = themeTitle();
      button.addEventListener('click', function () {
        var t = root.getAttribute('data-theme');
        var next = t === null ? (systemDark() ? 'light' : 'dark') : (t === 'dark' ? 'light' : null);
        if (t !== null && next !== null && (next === 'dark') === systemDark()) { next = null; }
        if (next) { root.setAttribute('data-theme', next); } else { root.removeAttribute('data-theme'); }
        prefs.set('stoker.theme', next);
        button.title = themeTitle();
      });
    });
  }

  // --- Times: UTC by default, local on demand; the exact UTC instant stays in the title ---
  var tz = prefs.get('stoker.tz') === 'local' ? 'local' : 'utc';
  function stamp(date, local) {
    if (local) {
      return date.getFullYear() + '-' + pad(date.getMonth() + 1) + '-' + pad(date.getDate()) + ' ' +
        pad(date.getHours()) + ':' + pad(date.getMinutes()) + ':' + pad(date.getSeconds());
    }
    return date.toISOString().slice(0, 19).replace('T', ' ');
  }
  function localZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local'; } catch (e) { return 'local'; }
  }
  function applyTimes() {
    var local = tz === 'local';
    all('time[data-t]').forEach(function (el) {
      var date = new Date(el.getAttribute('datetime'));
      if (isNaN(date.getTime())) { return; }
      var text = stamp(date, local) + (local ? '' : ' UTC');
      if (el.getAttribute('data-t') === 'abs') {
        el.textContent = stamp(date, local);
      } else {
        el.title = text;
      }
    });
    all('[data-tz-label]').forEach(function (el) { el.textContent = local ? localZone() : 'UTC'; });
    all('[data-toggle-tz]').forEach(function (b) {
      b.textContent = local ? 'Local' : 'UTC';
      b.setAttribute('aria-label', 'Times shown in ' + (local ? 'local time' : 'UTC') + '; switch');
    });
  }
  function initTimes() {
    applyTimes();
    all('[data-toggle-tz]').forEach(function (button) {
      button.addEventListener('click', function () {
        tz = tz === 'utc' ? 'local' : 'utc';
        prefs.set('stoker.tz', tz === 'local' ? 'local' : null);
        applyTimes();
      });
    });
  }

  // --- Live updates ---
  var liveEls = {};
  function setLive(key, value) {
    (liveEls[key] || []).forEach(function (el) {
      var text = number(value);
      if (el.textContent !== text) {
        el.textContent = text;
        el.classList.remove('bump');
        void el.offsetWidth;
        el.classList.add('bump');
      }
    });
  }
  function applySnapshot(s) {
    // The snapshot's states are disjoint (`available` is due work only, `scheduled` the
    // rest), so every job is in exactly one of them.
    var total = 0;
    Object.keys(s.states || {}).forEach(function (state) {
      setLive('states.' + state, s.states[state]);
      total += s.states[state];
    });
    setLive('total', total);
    if (typeof s.workers_alive === 'number') { setLive('workers_alive', s.workers_alive); }
    (s.queues || []).forEach(function (q) {
      Object.keys(q.states || {}).forEach(function (state) {
        setLive('queue.' + q.name + '.' + state, q.states[state]);
      });
    });
  }

  var seenNew = {};
  var newCount = 0;
  function onJob(ev) {
    var banner = one('[data-new-banner]');
    if (banner) {
      var newest = Number(banner.getAttribute('data-newest') || '0');
      if (ev.id > newest && !seenNew[ev.id]) {
        seenNew[ev.id] = true;
        newCount += 1;
        one('[data-new-count]', banner).textContent = number(newCount);
        banner.hidden = false;
      }
    }
    var stateEl = one('[data-job-state]');
    if (stateEl && ev.state !== stateEl.getAttribute('data-job-state')) {
      var changed = one('[data-job-changed]');
      one('[data-job-new-state]', changed).textContent = ev.state;
      changed.hidden = false;
      // A job's page has no rows to keep still: show the new state at once.
      window.setTimeout(function () { window.location.reload(); }, 400);
    }
  }

  // --- Polling, when the live stream fails ---
  // A proxy that buffers or cuts event streams, or a browser without EventSource, would
  // leave the page frozen. So if the stream has not delivered within STREAM_GRACE_MS (or is
  // closed for good), the page polls every POLL_MS instead: counters from `/ui/snapshot`
  // (the server's one shared snapshot), a job's state and a list's newest rows from the page
  // itself. Polling stops as soon as the stream delivers again.
  var POLL_MS = 5000;
  var STREAM_GRACE_MS = 10000;

  function pageHtml() {
    return fetch(window.location.href, { credentials: 'same-origin', headers: { accept: 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : null; });
  }

  // What one poll does on this page: the counters, or the followed job, or the new rows.
  function pollOnce(wantsSnapshot) {
    if (wantsSnapshot) {
      return fetch('/ui/snapshot', { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) { if (s) { applySnapshot(s); } return !!s; });
    }
    var stateEl = one('[data-job-state]');
    var banner = one('[data-new-banner]');
    if (!stateEl && !banner) { return Promise.resolve(false); }
    return pageHtml().then(function (html) {
      if (html === null) { return false; }
      if (stateEl) {
        var m = /data-job-state="([a-z]+)"/.exec(html);
        if (m) { onJob({ id: 0, state: m[1] }); }
      } else {
        var newest = Number(banner.getAttribute('data-newest') || '0');
        var re = /href="\/jobs\/([0-9]+)"/g;
        var hit;
        while ((hit = re.exec(html)) !== null) {
          var id = Number(hit[1]);
          if (id > newest && !seenNew[id]) { onJob({ id: id, state: 'available' }); }
        }
      }
      return true;
    });
  }

  function initLive() {
    var url = document.body.getAttribute('data-live');
    if (!url) { return; }
    all('[data-live]').forEach(function (el) {
      if (el === document.body) { return; }
      var key = el.getAttribute('data-live');
      (liveEls[key] = liveEls[key] || []).push(el);
    });
    var status = one('[data-live-status]');
    var text = status && one('[data-live-text]', status);
    function show(state, label) {
      if (!status) { return; }
      status.hidden = false;
      status.setAttribute('data-state', state);
      status.title = 'Live updates: ' + label;
      if (text) { text.textContent = label; }
    }
    var wantsSnapshot = url.indexOf('snapshot=false') < 0;
    var poller = null;
    var watchdog = null;
    function poll() {
      pollOnce(wantsSnapshot)
        .then(function (ok) { show(ok ? 'polling' : 'off', ok ? 'polling' : 'offline'); })
        .catch(function () { show('off', 'offline'); });
    }
    function startPolling() {
      if (poller !== null) { return; }
      poll();
      poller = window.setInterval(poll, POLL_MS);
    }
    function stopPolling() {
      if (poller !== null) { window.clearInterval(poller); poller = null; }
    }
    // The stream counts as working once it opens and, on a page of counters, once its first
    // snapshot arrives (a buffering proxy can open a stream that never delivers).
    function armWatchdog() {
      if (watchdog !== null) { window.clearTimeout(watchdog); }
      watchdog = window.setTimeout(startPolling, STREAM_GRACE_MS);
    }
    function delivered() {
      if (watchdog !== null) { window.clearTimeout(watchdog); watchdog = null; }
      stopPolling();
      show('live', 'live');
    }
    if (!window.EventSource) {
      startPolling();
      return;
    }
    var source = new EventSource(url);
    show('connecting', 'connecting');
    armWatchdog();
    source.onopen = function () { if (!wantsSnapshot) { delivered(); } };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        startPolling();
        return;
      }
      if (poller === null) { show('reconnecting', 'reconnecting'); }
      if (watchdog === null) { armWatchdog(); }
    };
    source.addEventListener('snapshot', function (e) {
      delivered();
      try { applySnapshot(JSON.parse(e.data)); } catch (err) { /* a malformed event is skipped */ }
    });
    source.addEventListener('job', function (e) {
      try { onJob(JSON.parse(e.data)); } catch (err) { /* skipped */ }
    });
    source.addEventListener('end', function () {
      source.close();
      if (watchdog !== null) { window.clearTimeout(watchdog); watchdog = null; }
      stopPolling();
      show('off', 'finished');
    });
    window.addEventListener('pagehide', function () { source.close(); stopPolling(); });
  }

  // --- A bulk operation's progress ---
  function initOpProgress() {
    var card = one('[data-op-progress]');
    if (!card) { return; }
    var url = card.getAttribute('data-op-progress');
    var timer = window.setInterval(function () {
      fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) {
          if (!p) { return; }
          one('[data-op-percent]').textContent = p.percent;
          one('[data-op-matched]').textContent = p.matched;
          one('[data-op-done]').textContent = p.done;
          one('[data-op-skipped]').textContent = p.skipped;
          var fill = one('[data-bar-fill]', card);
          if (fill) { fill.setAttribute('width', String(Math.round(p.fraction * 1000) / 10)); }
          if (p.state !== 'running') {
            window.clearInterval(timer);
            window.location.reload();
          }
        })
        .catch(function () { /* try again next tick */ });
    }, 1000);
  }

  // --- Selection on the jobs list ---
  function initSelection() {
    var form = one('[data-selection]');
    if (!form) { return; }
    var boxes = all('input[name="id"]', form);
    var master = one('[data-select-all]', form);
    var counter = one('[data-selected-count]', form);
    function update() {
      var n = boxes.filter(function (b) { return b.checked; }).length;
      counter.textContent = number(n);
      master.checked = n > 0 && n === boxes.length;
      master.indeterminate = n > 0 && n < boxes.length;
      all('[data-needs-selection]', form).forEach(function (b) {
        b.disabled = n === 0 || b.hasAttribute('data-refused');
      });
    }
    var last = null;
    boxes.forEach(function (box, i) {
      box.addEventListener('click', function (e) {
        if (e.shiftKey && last !== null) {
          var lo = Math.min(last, i), hi = Math.max(last, i);
          for (var k = lo; k <= hi; k++) { boxes[k].checked = box.checked; }
        }
        last = i;
        update();
      });
    });
    master.addEventListener('change', function () {
      boxes.forEach(function (b) { b.checked = master.checked; });
      update();
    });
    update();
  }

  function initDialogs() {
    var dialog = one('[data-all-matching]');
    all('[data-show-all-matching]').forEach(function (b) {
      b.addEventListener('click', function () { if (dialog && dialog.showModal) { dialog.showModal(); } });
    });
    all('[data-close-dialog]').forEach(function (b) {
      b.addEventListener('click', function () { var d = b.closest('dialog'); if (d) { d.close(); } });
    });
  }

  // --- Confirmations: on the form, or on the button that submits it ---
  function initConfirm() {
    document.addEventListener('submit', function (e) {
      var button = e.submitter;
      var message = (button && button.getAttribute('data-confirm')) || e.target.getAttribute('data-confirm');
      if (message && !window.confirm(message)) { e.preventDefault(); }
    });
  }

  function initCopy() {
    all('[data-copy]').forEach(function (button) {
      button.addEventListener('click', function () {
        var source = one(button.getAttribute('data-copy'));
        if (!source || !navigator.clipboard) { return; }
        navigator.clipboard.writeText(source.textContent).then(function () {
          var label = button.textContent;
          button.textContent = 'Copied';
          window.setTimeout(function () { button.textContent = label; }, 1200);
        });
      });
    });
  }

  // `/` searches jobs from any page.
  function initKeys() {
    document.addEventListener('keydown', function (e) {
      if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) { return; }
      var t = e.target;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) { return; }
      var search = one('[data-search]');
      e.preventDefault();
      if (search) { search.focus(); search.select(); } else { window.location.href = '/jobs'; }
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    initTheme();
    initTimes();
    initLive();
    initOpProgress();
    initSelection();
    initDialogs();
    initConfirm();
    initCopy();
    initKeys();
  });
})();
