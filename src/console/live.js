// Live updates: one EventSource on `GET /api/v1/events/stream` for the whole console.
//
// Listeners get every change envelope (`{change, event_id, camera_id, …}`). While the
// stream is not open (the server lacks it, the network dropped, the session expired) the
// status pill says so and listeners get a `poll` tick every POLL_MS instead, so pages
// refetch what they show: the console never silently goes stale.

const STREAM = '/api/v1/events/stream';
const POLL_MS = 10_000;
const RETRY_MS = 15_000;

export class Live {
  constructor() {
    this.state = 'closed';
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.source = null;
    this.pollTimer = null;
    this.retryTimer = null;
    this.stopped = true;
  }

  /** `fn(msg)` where `msg` is `{type: 'change', envelope}` or `{type: 'poll'}`. Returns an unsubscribe function. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onState(fn) {
    this.stateListeners.add(fn);
    fn(this.state);
    return () => this.stateListeners.delete(fn);
  }

  emit(msg) {
    for (const fn of [...this.listeners]) {
      try {
        fn(msg);
      } catch (e) {
        console.error('live listener failed', e);
      }
    }
  }

  setState(s) {
    if (s === this.state) return;
    this.state = s;
    for (const fn of this.stateListeners) fn(s);
    // Poll while the stream is not delivering.
    if (s === 'open') this.stopPolling();
    else this.startPolling();
  }

  startPolling() {
    if (this.pollTimer || this.stopped) return;
    this.pollTimer = setInterval(() => {
      if (!document.hidden) this.emit({ type: 'poll' });
    }, POLL_MS);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    if (typeof EventSource === 'undefined') {
      this.setState('closed');
      this.startPolling();
      return;
    }
    this.setState('connecting');
    const src = new EventSource(STREAM);
    this.source = src;
    src.addEventListener('open', () => {
      if (this.source !== src) return;
      const wasDown = this.state !== 'open';
      this.setState('open');
      // Whatever changed while we were away: let pages refetch once.
      if (wasDown) this.emit({ type: 'poll' });
    });
    const onMessage = (ev) => {
      if (this.source !== src) return;
      let envelope;
      try {
        envelope = JSON.parse(ev.data);
      } catch {
        console.warn('live: message is not JSON', ev.data);
        return;
      }
      this.emit({ type: 'change', envelope });
    };
    src.addEventListener('change', onMessage);
    src.addEventListener('message', onMessage);
    src.addEventListener('error', () => {
      if (this.source !== src) return;
      if (src.readyState === EventSource.CLOSED) {
        // The server refused the stream (404 on an older box, 401, 5xx): the browser
        // will not retry by itself. Poll, and try again later.
        this.setState('closed');
        this.retryTimer = setTimeout(() => {
          if (!this.stopped) this.connect();
        }, RETRY_MS);
      } else {
        // The browser reconnects by itself (with Last-Event-ID).
        this.setState('connecting');
      }
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopPolling();
    if (this.source) this.source.close();
    this.source = null;
    this.setState('closed');
    this.stopPolling();
  }
}
