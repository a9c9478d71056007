// Airlock admin UI: the only script. Keeps the approvals queue live: when the server says
// the queue changed (server-sent events), the list is fetched again and swapped in — unless
// the reviewer is typing a reason, in which case it waits for the next change.
(function () {
  const list = document.getElementById('approvals-live');
  if (!list || !window.EventSource) return;
  const source = new EventSource('/ui/approvals/events');
  let pending = false;
  async function refresh() {
    const active = document.activeElement;
    if (active && list.contains(active) && active.tagName === 'INPUT' && active.value) {
      pending = true;
      return;
    }
    pending = false;
    const r = await fetch('/ui/approvals?fragment=1', { credentials: 'same-origin' });
    if (r.ok) {
      list.innerHTML = await r.text();
      list.setAttribute('data-updated', String(Date.now()));
    }
  }
  source.addEventListener('changed', refresh);
  document.addEventListener('focusout', function () { if (pending) refresh(); });
})();
