// wsrpc.js: the browser client of wsrpc, also usable in Node 20 and later
// (Node 20 needs --experimental-websocket, or a WebSocket constructor in
// the options). It speaks the wire protocol of fastapi_websocket_rpc and
// fastapi_websocket_pubsub (PROTOCOL.md), and offers the subprotocol
// "wsrpc.v1", so that a wsrpc server also gets each call's deadline
// (timeout_ms) and its cancellation. No dependencies; one ES module.

const EXT = "wsrpc.v1";
const TOKEN_PROTOCOL = "wsrpc.token.";

/** The topic that subscribes to every topic (fastapi_websocket_pubsub's ALL_TOPICS). */
export const ALL_TOPICS = "__EventNotifier_ALL_TOPICS__";

/** The JSON-RPC error codes a wsrpc peer answers with (RpcError.remoteCode). */
export const RemoteCode = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  SERVER_ERROR: -32000,
});

/**
 * RpcError is the one error a call rejects with. code says why:
 * "timeout" (sent, no answer in time: the outcome is unknown),
 * "not_connected" (never sent: no connection in time, or none and
 * waitForReady off), "connection_lost" (sent, then the connection dropped:
 * the outcome is unknown), "aborted" (the call's AbortSignal fired),
 * "closed" (the client was closed) or "remote" (the peer answered with an
 * error: remoteCode, message and data are its).
 */
export class RpcError extends Error {
  constructor(code, message, { remoteCode, data, method, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RpcError";
    this.code = code;
    if (remoteCode !== undefined) this.remoteCode = remoteCode;
    if (data !== undefined) this.data = data;
    if (method !== undefined) this.method = method;
  }

  /** remote returns the error a method exposed to the server throws to answer with code, message and data. */
  static remote(remoteCode, message, data) {
    return new RpcError("remote", message, { remoteCode, data });
  }
}

/** connect returns a Client of url that is already dialling in the background. */
export function connect(url, options) {
  return new Client(url, options);
}

const noop = () => {};

// newID returns 32 lowercase hex digits of a random version 4 UUID, the
// form of the Python library's call ids (crypto.randomUUID needs a secure
// context; getRandomValues does not).
function newID() {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  let s = "";
  for (const x of b) s += (x < 16 ? "0" : "") + x.toString(16);
  return s;
}

// resultType names a result's type as the Python library does.
function resultType(v) {
  switch (typeof v) {
    case "string":
      return "str";
    case "boolean":
      return "bool";
    case "number":
      return Number.isInteger(v) ? "int" : "float";
  }
  if (v == null) return "unknown-type";
  return Array.isArray(v) ? "List" : "Dict";
}

// base64url encodes a string's UTF-8 bytes without padding: a token in
// this form is a valid subprotocol name, whatever its characters.
function base64url(s) {
  let bin = "";
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// wsURL resolves url against the page (relative URLs, http:, https:) and
// returns it as a ws: or wss: URL.
function wsURL(url) {
  const u = new URL(String(url), globalThis.location?.href);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new TypeError(`wsrpc: ${u.protocol} is not a WebSocket URL`);
  }
  u.hash = "";
  return u;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function or(v, def) {
  return v === undefined ? def : v;
}

// A call to the peer, from the moment it is made until it settles.
class Call {
  constructor(method, args, resolve, reject) {
    this.method = method;
    this.args = args;
    this.resolve = resolve;
    this.reject = reject;
    this.id = null; // set when sent
    this.link = null; // the connection it was sent on
    this.deadline = Infinity;
    this.timer = null;
    this.signal = null;
    this.onAbort = null;
    this.settled = false;
  }

  // settle ends the call once: ok(value) or fail(err).
  settle() {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    this.signal?.removeEventListener("abort", this.onAbort);
    if (this.link && this.id !== null) this.link.pending.delete(this.id);
    return true;
  }

  ok(value) {
    if (this.settle()) this.resolve(value);
  }

  fail(err) {
    if (this.settle()) this.reject(err);
  }
}

// Link is one WebSocket connection and what belongs to it alone.
class Link {
  constructor(ws) {
    this.ws = ws;
    this.ext = false; // wsrpc.v1 negotiated: timeout_ms and cancel travel
    this.open = false; // ready for the client's calls (after re-subscribing)
    this.gone = false;
    this.pending = new Map(); // call id -> Call, our calls waiting for an answer
    this.running = new Map(); // call id -> AbortController, the peer's calls to us
    this.topics = new Map(); // topic -> {subscribed, tail}: the server's subscriptions and their last operation
    this.lastRecv = Date.now();
    this.keepAlive = null;
    this.connectTimer = null;
  }
}

/**
 * Client is a connection to a wsrpc (or fastapi_websocket_rpc) server that
 * stays up: it dials in the background, reconnects with jittered backoff,
 * keeps the link alive with _ping_, re-subscribes after every reconnect,
 * and answers the server's calls with its methods.
 */
export class Client {
  #url;
  #opts;
  #state = "connecting";
  #link = null; // the current connection, open or opening
  #everOpen = false;
  #closed = false;
  #attempt = 0;
  #retryTimer = null;
  #waiters = new Set(); // calls and ready() waiting for an open connection
  #methods = new Map();
  #subs = new Map(); // topic -> Set of {handler}: what the client is subscribed to, across reconnects
  #listeners = new Map();
  #channelId = newID();
  #closing = null;

  constructor(url, options = {}) {
    this.#url = wsURL(url);
    const o = options;
    const WS = o.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("wsrpc: no WebSocket: pass options.WebSocket (Node 20: run with --experimental-websocket)");
    }
    const ka = o.keepAlive === false ? { interval: 0 } : o.keepAlive ?? {};
    const rc = o.reconnect === false ? null : o.reconnect ?? {};
    this.#opts = {
      WebSocket: WS,
      callTimeout: or(o.callTimeout, 30000),
      connectTimeout: or(o.connectTimeout, 10000),
      waitForReady: o.waitForReady ?? true,
      sendErrorDetails: !!o.sendErrorDetails,
      token: o.token,
      tokenIn: o.tokenIn ?? "protocol",
      tokenParam: o.tokenParam ?? "access_token",
      keepAliveInterval: or(ka.interval, 30000),
      keepAliveTimeout: or(ka.timeout, or(ka.interval, 30000)),
      reconnect: rc && { minDelay: or(rc.minDelay, 500), maxDelay: or(rc.maxDelay, 20000) },
    };
    if (this.#opts.tokenIn !== "protocol" && this.#opts.tokenIn !== "query") {
      throw new TypeError(`wsrpc: tokenIn must be "protocol" or "query", not ${JSON.stringify(o.tokenIn)}`);
    }
    for (const [name, fn] of Object.entries(o.methods ?? {})) this.expose(name, fn);
    queueMicrotask(() => this.#dial());
  }

  /** The connection state: "connecting", "open", "reconnecting" or "closed". */
  get state() {
    return this.#state;
  }

  /** The channel id this client answers _get_channel_id_ with. */
  get channelId() {
    return this.#channelId;
  }

  /** Whether the open connection negotiated wsrpc.v1 (deadlines and cancellation travel). */
  get extensions() {
    return !!this.#link?.open && this.#link.ext;
  }

  /** on adds a listener for "state" (state, previous), "retry" (info) or "error" (err); it returns a function that removes it. */
  on(event, fn) {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  #emit(event, ...args) {
    for (const fn of this.#listeners.get(event) ?? []) {
      try {
        fn(...args);
      } catch (err) {
        if (event !== "error") this.#emit("error", err);
      }
    }
  }

  #setState(state) {
    const prev = this.#state;
    if (prev === state) return;
    this.#state = state;
    this.#emit("state", state, prev);
  }

  /** expose makes fn callable by the server as name: fn(args, ctx) returns the result or a Promise of it. */
  expose(name, fn) {
    if (typeof name !== "string" || name.startsWith("_") || name === "notify") {
      throw new TypeError(`wsrpc: cannot expose ${JSON.stringify(name)}: built-in, private (_) or pub/sub's notify`);
    }
    if (typeof fn !== "function") throw new TypeError(`wsrpc: method ${name} is not a function`);
    this.#methods.set(name, fn);
  }

  // Connecting.

  async #dial() {
    if (this.#closed) return;
    let url = new URL(this.#url);
    const protocols = [EXT];
    let ws;
    try {
      let token = this.#opts.token;
      if (typeof token === "function") token = await token();
      if (this.#closed) return;
      if (token) {
        if (this.#opts.tokenIn === "query") url.searchParams.set(this.#opts.tokenParam, token);
        else protocols.push(TOKEN_PROTOCOL + base64url(String(token)));
      }
      ws = new this.#opts.WebSocket(url.href, protocols);
    } catch (err) {
      this.#emit("error", err);
      this.#retry(null, { error: err });
      return;
    }
    const link = new Link(ws);
    this.#link = link;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.#onOpen(link);
    ws.onmessage = (ev) => this.#onMessage(link, ev.data);
    ws.onclose = (ev) => this.#drop(link, { code: ev.code, reason: ev.reason });
    // Browsers follow an error with a close event; Node 20's WebSocket
    // does not when the connect fails. An error ends the connection
    // either way.
    ws.onerror = () => this.#drop(link, { code: 1006, reason: "connection failed" });
    if (this.#opts.connectTimeout > 0 && this.#opts.connectTimeout < Infinity) {
      link.connectTimer = setTimeout(() => this.#drop(link, { code: 4000, reason: "connect timeout" }), this.#opts.connectTimeout);
    }
  }

  async #onOpen(link) {
    clearTimeout(link.connectTimer);
    if (link !== this.#link) return;
    link.ext = link.ws.protocol === EXT;
    link.lastRecv = Date.now();
    this.#startKeepAlive(link);
    // Restore the subscriptions before the connection is the client's, so
    // that once "open" is reported, events flow.
    if (this.#subs.size > 0) {
      try {
        await this.#syncTopics(link, [...this.#subs.keys()], this.#opts.callTimeout);
      } catch (err) {
        if (link.gone) return;
        this.#emit("error", err);
      }
      if (link.gone || link !== this.#link) return;
    }
    this.#attempt = 0;
    link.open = true;
    this.#everOpen = true;
    this.#setState("open");
    for (const w of [...this.#waiters]) w.go(link);
  }

  // drop ends link, whatever the reason (closed by the peer, keep-alive,
  // connect timeout), and reconnects unless the client was closed.
  #drop(link, why) {
    if (link.gone) return;
    link.gone = true;
    clearTimeout(link.connectTimer);
    clearInterval(link.keepAlive);
    link.ws.onopen = link.ws.onmessage = link.ws.onclose = link.ws.onerror = null;
    if (link.ws.readyState <= 1) {
      try {
        link.ws.close(why.code >= 3000 && why.code < 5000 ? why.code : 1000, why.reason?.slice(0, 120));
      } catch {
        // already closing
      }
    }
    for (const call of [...link.pending.values()]) {
      call.fail(this.#closed ? closedError(call.method) : new RpcError("connection_lost", `wsrpc: call ${JSON.stringify(call.method)}: connection lost`, { method: call.method }));
    }
    for (const ac of link.running.values()) ac.abort(new RpcError("connection_lost", "wsrpc: connection lost"));
    link.running.clear();
    if (link !== this.#link) return;
    this.#link = null;
    this.#retry(link, why);
  }

  #retry(link, why) {
    if (this.#closed) return;
    const rc = this.#opts.reconnect;
    if (!rc) {
      this.close();
      return;
    }
    const min = rc?.minDelay ?? 500;
    const max = rc?.maxDelay ?? 20000;
    const cap = Math.min(max, min * 2 ** Math.min(this.#attempt, 30));
    const delay = Math.round(Math.min(max, min + Math.random() * cap));
    this.#attempt++;
    this.#setState(this.#everOpen ? "reconnecting" : "connecting");
    this.#emit("retry", { attempt: this.#attempt, delay, code: why?.code, reason: why?.reason, error: why?.error });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#dial();
    }, delay);
  }

  #startKeepAlive(link) {
    const interval = this.#opts.keepAliveInterval;
    if (!(interval > 0 && interval < Infinity)) return;
    const timeout = this.#opts.keepAliveTimeout;
    link.keepAlive = setInterval(() => {
      if (Date.now() - link.lastRecv > interval + timeout) {
        this.#drop(link, { code: 4000, reason: "keep-alive timeout" });
        return;
      }
      this.#callOn(link, "_ping_", {}, timeout).catch(noop);
    }, interval);
  }

  /** ready resolves once the client is open (at once if it is); it rejects as a call that was never sent does. */
  ready(options = {}) {
    return new Promise((resolve, reject) => {
      if (this.#link?.open) return resolve();
      const call = new Call("(ready)", null, resolve, reject);
      this.#wait(call, options, () => call.ok());
    });
  }

  /**
   * close closes the connection (status 1000) and stops reconnecting. Calls
   * still waiting reject with "closed". It resolves once the socket closed.
   */
  close() {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    for (const w of [...this.#waiters]) w.fail(closedError(w.method));
    const link = this.#link;
    this.#closing = new Promise((resolve) => {
      if (!link || link.ws.readyState >= 2) return resolve();
      // Closing takes a close frame back from the server; a server that
      // is gone never sends it.
      const t = setTimeout(resolve, 2000);
      link.ws.addEventListener("close", () => {
        clearTimeout(t);
        resolve();
      });
    });
    if (link) this.#drop(link, { code: 1000, reason: "" });
    this.#link = null;
    this.#setState("closed");
    return this.#closing;
  }

  // Calls to the server.

  /**
   * call calls method on the server with keyword arguments args and
   * resolves with its result. options: timeout (ms; default callTimeout),
   * signal (an AbortSignal), deadline (ms since the epoch, such as a
   * handler's ctx.deadline).
   */
  call(method, args = {}, options = {}) {
    return new Promise((resolve, reject) => {
      if (typeof method !== "string") throw new TypeError("wsrpc: method must be a string");
      args ??= {};
      if (!isObject(args)) throw new TypeError("wsrpc: arguments must be an object of keyword arguments");
      const call = new Call(method, args, resolve, reject);
      const link = this.#link;
      if (link?.open && !this.#closed) {
        this.#arm(call, options);
        if (!call.settled) this.#send(call, link);
        return;
      }
      this.#wait(call, options, (link) => this.#send(call, link));
    });
  }

  // arm sets call's deadline and signal; it fails the call at once when
  // the signal has fired, or the client is closed.
  #arm(call, options) {
    const timeout = options.timeout ?? this.#opts.callTimeout;
    call.deadline = Math.min(options.deadline ?? Infinity, timeout > 0 ? Date.now() + timeout : Infinity);
    const signal = options.signal;
    if (this.#closed) return call.fail(closedError(call.method));
    if (signal?.aborted) return call.fail(abortedError(call.method, signal.reason));
    if (signal) {
      call.signal = signal;
      call.onAbort = () => this.#giveUp(call, abortedError(call.method, signal.reason));
      signal.addEventListener("abort", call.onAbort, { once: true });
    }
    if (call.deadline < Infinity) {
      call.timer = setTimeout(() => {
        if (call.id === null) call.fail(new RpcError("not_connected", `wsrpc: call ${JSON.stringify(call.method)}: not connected`, { method: call.method }));
        else this.#giveUp(call, new RpcError("timeout", `wsrpc: call ${JSON.stringify(call.method)}: timed out`, { method: call.method }));
      }, Math.max(0, call.deadline - Date.now()));
    }
  }

  // wait holds call until a connection is open, then runs go(link), or
  // fails it as not_connected with waitForReady off.
  #wait(call, options, go) {
    this.#arm(call, options);
    if (call.settled) return;
    if (!this.#opts.waitForReady) {
      return call.fail(new RpcError("not_connected", `wsrpc: call ${JSON.stringify(call.method)}: not connected`, { method: call.method }));
    }
    const settle = call.settle.bind(call);
    call.settle = () => {
      this.#waiters.delete(call);
      return settle();
    };
    call.go = (link) => {
      this.#waiters.delete(call);
      if (!call.settled) go(link);
    };
    this.#waiters.add(call);
  }

  // giveUp fails a call that was sent or waits, and tells the server to
  // stop working on it, where the server understands that.
  #giveUp(call, err) {
    const link = call.link;
    const id = call.id;
    if (!call.settled && link && id !== null && link.ext && !link.gone) {
      this.#write(link, { request: null, response: null, cancel: { call_id: id } });
    }
    call.fail(err);
  }

  #send(call, link) {
    call.id = newID();
    call.link = link;
    const req = { method: call.method, arguments: call.args, call_id: call.id };
    if (link.ext && call.deadline < Infinity) req.timeout_ms = Math.max(1, Math.floor(call.deadline - Date.now()));
    let frame;
    try {
      frame = JSON.stringify({ request: req, response: null });
    } catch (err) {
      call.id = null;
      call.fail(err);
      return;
    }
    link.pending.set(call.id, call);
    try {
      link.ws.send(frame);
    } catch (err) {
      call.fail(new RpcError("connection_lost", `wsrpc: call ${JSON.stringify(call.method)}: ${err.message}`, { method: call.method, cause: err }));
    }
  }

  // callOn calls method on link itself, open or not yet (re-subscribing).
  #callOn(link, method, args, timeout) {
    return new Promise((resolve, reject) => {
      const call = new Call(method, args, resolve, reject);
      this.#arm(call, { timeout });
      if (!call.settled) this.#send(call, link);
    });
  }

  #write(link, msg) {
    try {
      link.ws.send(JSON.stringify(msg));
    } catch (err) {
      this.#emit("error", err);
    }
  }

  // Frames from the server.

  #onMessage(link, data) {
    if (link.gone) return;
    link.lastRecv = Date.now();
    let f;
    try {
      f = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch (err) {
      this.#badFrame(link, null, RemoteCode.PARSE_ERROR, "parse error: " + err.message);
      return;
    }
    if (!isObject(f)) return this.#badFrame(link, null, RemoteCode.INVALID_REQUEST, "invalid request: not an object");
    if (isObject(f.request)) this.#onRequest(link, f.request);
    else if (isObject(f.response)) this.#onResponse(link, f.response);
    else if (isObject(f.cancel)) link.running.get(f.cancel.call_id)?.abort(new RpcError("aborted", "wsrpc: call canceled by the caller"));
    else this.#badFrame(link, null, RemoteCode.INVALID_REQUEST, "invalid request: neither request nor response");
  }

  #badFrame(link, id, code, message) {
    this.#emit("error", new Error("wsrpc: bad frame from the server: " + message));
    this.#answerError(link, id, { code, message });
  }

  #onResponse(link, resp) {
    const call = link.pending.get(resp.call_id);
    if (!call) return; // an answer to no pending call: it timed out, or was never ours
    const e = resp.error;
    if (isObject(e) || resp.result_type === "error") {
      const code = isObject(e) && Number.isInteger(e.code) ? e.code : RemoteCode.INTERNAL_ERROR;
      const message = isObject(e) && typeof e.message === "string" ? e.message : "remote error";
      call.fail(new RpcError("remote", message, { remoteCode: code, data: isObject(e) ? e.data : undefined, method: call.method }));
      return;
    }
    call.ok(resp.result);
  }

  #onRequest(link, req) {
    const id = typeof req.call_id === "string" ? req.call_id : null;
    const method = req.method;
    if (typeof method !== "string") return this.#badFrame(link, id, RemoteCode.INVALID_REQUEST, "invalid request: method is not a string");
    const args = req.arguments ?? {};
    if (!isObject(args)) return this.#answerError(link, id, { code: RemoteCode.INVALID_PARAMS, message: "invalid params: arguments are not an object" });
    if (method === "_ping_") return this.#answer(link, id, "pong");
    if (method === "_get_channel_id_") return this.#answer(link, id, this.#channelId);
    if (method === "notify") return this.#onNotify(link, id, args);
    const fn = this.#methods.get(method);
    if (!fn) return this.#answerError(link, id, { code: RemoteCode.METHOD_NOT_FOUND, message: "method not found: " + method });

    const ac = new AbortController();
    let deadline;
    let timer;
    if (link.ext && Number.isInteger(req.timeout_ms) && req.timeout_ms > 0) {
      deadline = Date.now() + req.timeout_ms;
      timer = setTimeout(() => ac.abort(new RpcError("timeout", "wsrpc: the caller's deadline passed")), req.timeout_ms);
      ac.signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
    }
    if (id !== null) link.running.set(id, ac);
    const ctx = { signal: ac.signal, deadline, callId: id, method, client: this };
    const done = (answer) => {
      clearTimeout(timer);
      if (link.running.get(id) === ac) link.running.delete(id);
      // Canceled, past its deadline or its connection gone: the caller
      // stopped waiting.
      if (ac.signal.aborted || link.gone) return;
      answer();
    };
    new Promise((resolve) => resolve(fn(args, ctx))).then(
      (result) => done(() => this.#answer(link, id, result)),
      (err) =>
        done(() => {
          if (err instanceof RpcError && err.code === "remote") {
            const e = { code: Number.isInteger(err.remoteCode) ? err.remoteCode : RemoteCode.INTERNAL_ERROR, message: err.message };
            if (err.data !== undefined) e.data = err.data;
            this.#answerError(link, id, e);
            return;
          }
          this.#emit("error", err);
          const message = this.#opts.sendErrorDetails ? String(err?.message ?? err) : "internal error";
          this.#answerError(link, id, { code: RemoteCode.INTERNAL_ERROR, message });
        }),
    );
  }

  #answer(link, id, result) {
    if (result === undefined) result = null;
    let frame;
    try {
      frame = JSON.stringify({ request: null, response: { result, result_type: resultType(result), call_id: id } });
    } catch (err) {
      this.#emit("error", err);
      return this.#answerError(link, id, { code: RemoteCode.INTERNAL_ERROR, message: "internal error" });
    }
    if (link.gone) return;
    try {
      link.ws.send(frame);
    } catch (err) {
      this.#emit("error", err);
    }
  }

  #answerError(link, id, error) {
    if (link.gone) return;
    this.#write(link, { request: null, response: { result: null, result_type: "error", call_id: id, error } });
  }

  // Pub/sub (fastapi_websocket_pubsub).

  #onNotify(link, id, args) {
    const topic = args.subscription?.topic;
    const handlers = [...(this.#subs.get(topic) ?? [])];
    if (topic !== ALL_TOPICS) handlers.push(...(this.#subs.get(ALL_TOPICS) ?? []));
    for (const h of handlers) {
      try {
        h.handler(args.data, topic);
      } catch (err) {
        this.#emit("error", err);
      }
    }
    this.#answer(link, id, "None"); // as the Python client answers
  }

  // syncTopics makes the server's subscriptions on link match the client's
  // for topics: it subscribes those the client has and the link has not,
  // unsubscribes those the client dropped. Operations on one topic go out
  // one after the other, each after the answer to the one before, so the
  // server (which runs calls concurrently) applies them in order.
  #syncTopics(link, topics, timeout) {
    const add = [];
    const waits = [];
    for (const t of topics) {
      let st = link.topics.get(t);
      if (!st) link.topics.set(t, (st = { subscribed: false, tail: Promise.resolve() }));
      const want = this.#subs.has(t);
      if (want === st.subscribed) {
        waits.push(st.tail);
        continue;
      }
      st.subscribed = want;
      if (want) {
        add.push(st);
      } else {
        st.tail = st.tail.catch(noop).then(() => this.#topicCall(link, "unsubscribe", [t], timeout));
        waits.push(st.tail);
      }
    }
    if (add.length > 0) {
      const names = topics.filter((t) => add.includes(link.topics.get(t)));
      const op = Promise.all(add.map((st) => st.tail.catch(noop))).then(() => this.#topicCall(link, "subscribe", names, timeout));
      for (const st of add) {
        st.tail = op;
        // A subscribe that failed leaves the topic unsubscribed here, to
        // be tried again by the next subscribe.
        op.catch(() => {
          if (st.tail === op) st.subscribed = false;
        });
      }
      waits.push(op);
    }
    return Promise.all(waits).then(noop);
  }

  #topicCall(link, method, topics, timeout) {
    if (link.gone) return Promise.reject(new RpcError("connection_lost", `wsrpc: ${method}: connection lost`, { method }));
    return this.#callOn(link, method, { topics }, timeout);
  }

  /**
   * subscribe calls handler(data, topic) for every event published on
   * topics (a topic or a list), also after reconnects, until unsubscribed.
   * It resolves with a Subscription once the server confirmed; if it
   * rejects, the subscription was not made. options: timeout, signal.
   */
  async subscribe(topics, handler, options = {}) {
    const list = typeof topics === "string" ? [topics] : [...topics];
    if (list.length === 0 || list.some((t) => typeof t !== "string")) throw new TypeError("wsrpc: topics must be a string or a non-empty list of strings");
    if (typeof handler !== "function") throw new TypeError("wsrpc: handler is not a function");
    const entry = { handler };
    for (const t of list) {
      let set = this.#subs.get(t);
      if (!set) this.#subs.set(t, (set = new Set()));
      set.add(entry);
    }
    const sub = {
      topics: list,
      unsubscribe: () => this.#remove(list, (e) => e === entry, options),
    };
    try {
      await this.ready(options);
      const link = this.#link;
      if (!link?.open) throw new RpcError("not_connected", "wsrpc: subscribe: not connected");
      await this.#syncTopics(link, list, options.timeout ?? this.#opts.callTimeout);
    } catch (err) {
      this.#remove(list, (e) => e === entry, options).catch(noop);
      throw err;
    }
    return sub;
  }

  /** unsubscribe removes handler (or every handler) from topics; it resolves once the server confirmed, or at once when not connected. */
  unsubscribe(topics, handler, options = {}) {
    const list = typeof topics === "string" ? [topics] : [...topics];
    return this.#remove(list, (e) => handler === undefined || e.handler === handler, options);
  }

  async #remove(list, match, options) {
    const emptied = [];
    for (const t of list) {
      const set = this.#subs.get(t);
      if (!set) continue;
      for (const e of [...set]) if (match(e)) set.delete(e);
      if (set.size === 0) {
        this.#subs.delete(t);
        emptied.push(t);
      }
    }
    const link = this.#link;
    if (emptied.length > 0 && link && !link.gone && (link.open || link.topics.size > 0)) {
      await this.#syncTopics(link, emptied, options.timeout ?? this.#opts.callTimeout);
    }
  }

  /** topics lists the topics the client is subscribed to. */
  get topics() {
    return [...this.#subs.keys()];
  }

  /**
   * publish publishes data on topics (a topic or a list) and resolves once
   * the server took it (with sync, the default: once its subscribers got
   * it). options: sync, notifierId, timeout, signal. A connection does not
   * get its own publications.
   */
  publish(topics, data = null, options = {}) {
    const list = typeof topics === "string" ? [topics] : [...topics];
    const args = { topics: list, data: data ?? null, sync: options.sync ?? true, notifier_id: options.notifierId ?? null };
    return this.call("publish", args, options);
  }
}

function closedError(method) {
  return new RpcError("closed", `wsrpc: call ${JSON.stringify(method)}: client closed`, { method });
}

function abortedError(method, reason) {
  return new RpcError("aborted", `wsrpc: call ${JSON.stringify(method)}: aborted`, { method, cause: reason });
}
