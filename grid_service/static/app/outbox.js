// Offline first: every fix and report waits in IndexedDB, in order, with the event id the
// phone gave it, until the API has it. The queue drains when the network is there, with
// back-off when it is not; the API dedupes on event_id, so a post repeated after a lost
// answer stores nothing twice. Refused items (a 4xx for the item itself) are set aside,
// so that one bad item never blocks the rest.

const DB_NAME = "wangge-app";
const DB_VERSION = 1;
const MAX_BATCH = 200; // the gateway takes 500; a smaller batch fits a slow uplink
const MIN_BACKOFF_MS = 2_000;
const MAX_BACKOFF_MS = 60_000;

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDb() {
  const request = indexedDB.open(DB_NAME, DB_VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
    db.createObjectStore("refused", { keyPath: "seq" });
  };
  return promised(request);
}

export class HttpError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}: ${body?.code || ""} ${body?.detail || ""}`);
    this.status = status;
    this.body = body || {};
  }
}

export class Outbox {
  /** `send(items)` posts the first items (all check-ins, or one report) and returns how
   * many of them are delivered; it throws HttpError or a network TypeError.
   * `onUnauthorized(error)` is told of a 401: the queue then waits, kept, for a sign-in. */
  constructor({ send, onChange, onUnauthorized }) {
    this.send = send;
    this.onChange = onChange || (() => {});
    this.onUnauthorized = onUnauthorized || (() => {});
    this.db = openDb();
    this.draining = false;
    this.timer = null;
    this.failures = 0;
    this.retryAt = null;
    // A 401 (the session expired, the token was revoked): nothing is sent, and nothing
    // dropped, until someone signs in again and drainNow() is called.
    this.paused = false;
    window.addEventListener("online", () => { if (!this.paused) this.drainNow(); });
  }

  async _tx(stores, mode, work) {
    const db = await this.db;
    const tx = db.transaction(stores, mode);
    const result = await work(tx);
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    return result;
  }

  async add(item) {
    await this._tx(["outbox"], "readwrite", (tx) =>
      promised(tx.objectStore("outbox").add({ ...item, queued_at: Date.now() })));
    this.onChange();
  }

  async count() {
    return this._tx(["outbox"], "readonly", (tx) => promised(tx.objectStore("outbox").count()));
  }

  async refusedCount() {
    return this._tx(["refused"], "readonly", (tx) => promised(tx.objectStore("refused").count()));
  }

  async first(limit) {
    return this._tx(["outbox"], "readonly", (tx) => promised(tx.objectStore("outbox").getAll(null, limit)));
  }

  async update(item) {
    await this._tx(["outbox"], "readwrite", (tx) => promised(tx.objectStore("outbox").put(item)));
  }

  async remove(seqs) {
    await this._tx(["outbox"], "readwrite", (tx) => {
      const store = tx.objectStore("outbox");
      return Promise.all(seqs.map((seq) => promised(store.delete(seq))));
    });
  }

  async setAside(item, error) {
    await this._tx(["outbox", "refused"], "readwrite", (tx) => Promise.all([
      promised(tx.objectStore("outbox").delete(item.seq)),
      promised(tx.objectStore("refused").put({ ...item, photos: undefined, refusal: error.body })),
    ]));
  }

  /** Drain after `delayMs` unless a drain is due sooner (batches a patrol's fixes). */
  drainSoon(delayMs) {
    if (this.timer !== null && this.retryAt !== null && this.retryAt <= Date.now() + delayMs) return;
    clearTimeout(this.timer);
    this.retryAt = Date.now() + delayMs;
    this.timer = setTimeout(() => this.drain(), delayMs);
  }

  /** Stop sending until drainNow() (signed out: the queue stays for the next sign-in). */
  pause() {
    this.paused = true;
    clearTimeout(this.timer);
    this.timer = null;
    this.retryAt = null;
  }

  drainNow() {
    this.failures = 0;
    this.paused = false;
    clearTimeout(this.timer);
    this.timer = null;
    this.retryAt = null;
    return this.drain();
  }

  async drain() {
    if (this.draining || this.paused) return;
    this.draining = true;
    this.timer = null;
    this.retryAt = null;
    this.onChange();
    try {
      for (;;) {
        const items = await this.first(MAX_BATCH);
        if (items.length === 0) { this.failures = 0; break; }
        const batch = items[0].kind === "checkin"
          ? items.slice(0, firstOtherKind(items))
          : [items[0]];
        try {
          const delivered = await this.send(batch, (item) => this.update(item));
          await this.remove(batch.slice(0, delivered).map((item) => item.seq));
          this.failures = 0;
        } catch (error) {
          if (error instanceof HttpError && error.status === 401) {
            this.pause();
            this.onUnauthorized(error);
            break;
          }
          if (error instanceof HttpError && isRefusal(error.status)) {
            // The item itself is wrong (e.g. a time the server refuses): set it aside.
            const index = Number.isInteger(error.body.index) ? error.body.index : 0;
            await this.remove(batch.slice(0, index).map((item) => item.seq));
            await this.setAside(batch[index], error);
            continue;
          }
          this.failures += 1;
          const backoff = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** (this.failures - 1));
          const retryAfter = error instanceof HttpError ? Number(error.retryAfter || 0) * 1000 : 0;
          const delay = Math.max(backoff * (0.75 + Math.random() * 0.5), retryAfter);
          this.retryAt = Date.now() + delay;
          this.timer = setTimeout(() => this.drain(), delay);
          break;
        }
      }
    } finally {
      this.draining = false;
      this.onChange();
    }
  }
}

function firstOtherKind(items) {
  const index = items.findIndex((item) => item.kind !== "checkin");
  return index === -1 ? items.length : index;
}

export function isRefusal(status) {
  // 4xx but: 401 (token), 408 (timeout), 429 (rate): those are retried, not the item's fault.
  return status >= 400 && status < 500 && ![401, 408, 429].includes(status);
}
