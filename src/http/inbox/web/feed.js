// The live feed (`GET /api/events`) as an EventSource that misses nothing.
//
// On a plain drop the browser reconnects by itself and sends Last-Event-ID, so the server resumes
// after the last event seen. When the server answers an error instead (503, 401, or nothing at
// all while the daemon restarts) the EventSource closes for good: then a new one is opened with
// `?after=<last seq seen>` after a back-off of 1 s, 2 s, 4 s … at most 10 s. A seq at or below
// the last one seen is a repeat and is dropped. If the stream broke before any event came, there is
// no seq to resume from: `onGap` is called once it is open again, and the page reloads what it
// shows.

const TYPES = [
  "message.received",
  "message.created",
  "message.status",
  "message.updated",
  "conversation.updated",
  "conversation.merged",
  "channel.status",
  "feed.reset",
];
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 10_000;

export class Feed {
  /**
   * `onEvent(event)` gets each event (the parsed `data:` JSON, with `seq` and `type`);
   * `onState("live" | "reconnecting")`; `onGap()` when events may have been missed;
   * `beforeReconnect()` resolves false when the session is gone (then the feed stops).
   */
  constructor({ onEvent, onState, onGap, beforeReconnect }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onGap = onGap;
    this.beforeReconnect = beforeReconnect;
    this.lastSeq = null;
    this.source = null;
    this.timer = null;
    this.backoff = FIRST_BACKOFF_MS;
    this.broken = false;
    this.stopped = true;
  }

  /** Opens the stream (live only at first); resolves once it is open or after `waitMs`. */
  start(waitMs = 500) {
    this.stopped = false;
    this.broken = false;
    this.backoff = FIRST_BACKOFF_MS;
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      this.open(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
  }

  open(onFirstOpen) {
    const url = this.lastSeq === null ? "/api/events" : `/api/events?after=${this.lastSeq}`;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    source.onopen = () => {
      if (source !== this.source) return;
      this.backoff = FIRST_BACKOFF_MS;
      const missed = this.broken && this.lastSeq === null;
      this.broken = false;
      this.onState("live");
      if (onFirstOpen) onFirstOpen();
      onFirstOpen = null;
      if (missed) this.onGap();
    };
    source.onerror = () => {
      if (source !== this.source || this.stopped) return;
      this.broken = true;
      this.onState("reconnecting");
      if (source.readyState === EventSource.CLOSED) this.reconnectLater();
    };
    const deliver = (message) => {
      if (source !== this.source) return;
      const seq = Number(message.lastEventId);
      if (Number.isSafeInteger(seq) && seq > 0) {
        if (this.lastSeq !== null && seq <= this.lastSeq) return;
        this.lastSeq = seq;
      }
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (!event.type) event.type = message.type;
      try {
        this.onEvent(event);
      } catch (error) {
        console.error("event not applied", event.type, error);
      }
    };
    for (const type of TYPES) source.addEventListener(type, deliver);
    source.onmessage = deliver;
  }

  reconnectLater() {
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.timer);
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.timer = setTimeout(async () => {
      if (this.stopped) return;
      let stillSignedIn = true;
      try {
        stillSignedIn = await this.beforeReconnect();
      } catch {
        stillSignedIn = true; // unreachable: try the stream anyway, and back off again if it fails
      }
      if (this.stopped) return;
      if (stillSignedIn) this.open();
      else this.stop();
    }, delay);
  }
}
