// A run's stream over server-sent events. The browser's EventSource reconnects by itself after a
// dropped connection and sends Last-Event-ID, so the server replays exactly what was missed; this
// class still checks every index (a duplicate is dropped, a gap is reported) so the page can
// promise "no gap, no duplicate" and show it. The page asks for `attempts=final`: each step's
// output once, the final attempt's; the server says how many events it left out before each
// message (`omitted`), which is not a gap.

export class RunStream {
  /**
   * @param {string} runId
   * @param {{onEvent: Function, onState: Function, onEnd: Function}} handlers
   */
  constructor(runId, { onEvent, onState, onEnd }) {
    this.runId = runId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onEnd = onEnd;
    this.lastIndex = 0;
    this.connects = 0;
    this.duplicates = 0;
    this.gaps = 0;
    this.ended = false;
    this.source = null;
  }

  start(after = null) {
    const url = `/v1/runs/${encodeURIComponent(this.runId)}/stream?attempts=final${after ? `&after=${after}` : ""}`;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    source.addEventListener("open", () => {
      this.connects += 1;
      this.onState("connected", this);
    });
    source.addEventListener("message", (e) => this.receive(e));
    source.addEventListener("end", () => this.finish("ended"));
    source.addEventListener("error", (e) => {
      if (e instanceof MessageEvent && e.data) {
        // The server could not continue the stream (e.g. the history it needed was trimmed).
        let error = {};
        try { error = JSON.parse(e.data).error || {}; } catch { /* keep the generic message */ }
        this.close();
        this.onState("failed", this, error);
        return;
      }
      if (this.ended) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused outright (400/404/410): no automatic retry; the page falls back to polling.
        this.onState("closed", this);
      } else {
        this.onState("reconnecting", this);
      }
    });
  }

  receive(e) {
    let message;
    try { message = JSON.parse(e.data); } catch { return; }
    const index = Number(message.index);
    if (index <= this.lastIndex) {
      this.duplicates += 1;
      return;
    }
    if (index !== this.lastIndex + 1 + Number(message.omitted || 0)) this.gaps += 1;
    this.lastIndex = index;
    this.onEvent(message, this);
    if (message.final) this.finish("finished");
  }

  finish(reason) {
    if (this.ended) return;
    this.ended = true;
    this.close();
    this.onEnd(reason, this);
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
  }
}
