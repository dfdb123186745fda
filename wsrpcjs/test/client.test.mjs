// The client against a real `wsrpc serve`: calls, errors, deadlines and
// cancellation, reconnects, keep-alive, subscriptions, tokens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { connect, RpcError, ALL_TOPICS } from "../wsrpc.js";
import { startServer, nextState } from "./server.mjs";

let srv;
const clients = [];

// open returns a client of the shared server (or url), closed after the tests.
function open(options = {}, url = srv.ws) {
  const c = connect(url, options);
  clients.push(c);
  return c;
}

// rejection returns what promise rejects with, failing if it resolves.
async function rejection(promise) {
  try {
    const v = await promise;
    assert.fail(`resolved with ${JSON.stringify(v)}, want a rejection`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

// response returns the response the server got to its call_me_back call
// id: get_response refuses until the answer is back, so it asks again,
// at most 500 times.
async function response(c, id) {
  for (let i = 0; ; i++) {
    try {
      return await c.call("get_response", { call_id: id });
    } catch (err) {
      if (i >= 500 || !/no response kept/.test(err.message)) throw err;
    }
  }
}

// freePort returns a loopback port that nothing listens on now.
function freePort() {
  return new Promise((resolve) => {
    const l = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = l.address();
      l.close(() => resolve(port));
    });
  });
}

before(async () => {
  srv = await startServer();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await srv.stop("SIGTERM");
});

test("calls with keyword arguments, with wsrpc.v1 negotiated", async () => {
  const c = open();
  assert.equal(await c.call("add", { a: 1, b: 2.5 }), 3.5);
  assert.equal(await c.call("concat", { a: "hello", b: " world" }), "hello world");
  assert.equal(await c.call("_ping_"), "pong");
  assert.equal(c.state, "open");
  assert.equal(c.extensions, true);
  await assert.rejects(c.call("add", [1, 2]), TypeError);
});

test("remote errors carry the server's code, message and data", async () => {
  const c = open();
  let err = await rejection(c.call("no_such_method"));
  assert.ok(err instanceof RpcError);
  assert.equal(err.code, "remote");
  assert.equal(err.remoteCode, -32601);
  assert.equal(err.message, "method not found: no_such_method");
  err = await rejection(c.call("add", { a: "one", b: 2 }));
  assert.equal(err.remoteCode, -32602);
  err = await rejection(c.call("register_wake_up_call", { time_delta: -1, name: "x" }));
  assert.equal(err.remoteCode, -32602);
  // The connection survives every error.
  assert.equal(await c.call("multiply", { a: 6, b: 7 }), 42);
});

test("the server calls the client's methods, nested in the client's own call", async () => {
  let ctxSeen;
  const c = open({
    methods: {
      whoami(args, ctx) {
        ctxSeen = ctx;
        return "node";
      },
    },
  });
  const t0 = Date.now();
  assert.equal(await c.call("greet", {}, { timeout: 5000 }), "hello, node");
  // The server's call carried the deadline that ours sent (timeout_ms).
  assert.equal(ctxSeen.method, "whoami");
  assert.ok(ctxSeen.deadline > t0 && ctxSeen.deadline <= t0 + 5000 + 50, `deadline ${ctxSeen.deadline - t0} ms after the call`);
  assert.equal(ctxSeen.signal.aborted, false);
});

test("the built-ins and the server's calls back, through call_me_back", async () => {
  const c = open({ methods: { whoami: ({ prefix }) => `${prefix}node` } });
  for (const [method, args, want] of [
    ["whoami", { prefix: "it's " }, "it's node"],
    ["_get_channel_id_", {}, c.channelId],
  ]) {
    const id = await c.call("call_me_back", { method_name: method, args });
    assert.equal((await response(c, id)).result, want, method);
  }
  assert.match(c.channelId, /^[0-9a-f]{32}$/);
});

// hanging returns a method that never answers, and promises: called
// (resolves when the server calls it) and aborted (resolves with its
// ctx.signal's reason when the call is canceled).
function hanging() {
  let onCall, onAbort;
  const called = new Promise((r) => (onCall = r));
  const aborted = new Promise((r) => (onAbort = r));
  const method = (args, ctx) => {
    ctx.signal.addEventListener("abort", () => onAbort(ctx.signal.reason));
    onCall(ctx);
    return new Promise(() => {});
  };
  return { method, called, aborted };
}

test("a per-call timeout rejects with timeout, and cancels the server's handler and its nested call", async () => {
  const whoami = hanging();
  const c = open({ methods: { whoami: whoami.method } });
  await c.ready();
  const call = rejection(c.call("greet", {}, { timeout: 1000 }));
  await whoami.called; // the server's greet is calling us back
  const err = await call;
  assert.equal(err.code, "timeout");
  assert.equal(err.method, "greet");
  // greet's context ended (cancel frame, or the deadline it got), so its
  // call to whoami was canceled in turn: the cancellation crossed back.
  const reason = await whoami.aborted;
  assert.ok(reason instanceof RpcError, String(reason));
  assert.equal(await c.call("add", { a: 1, b: 1 }), 2);
});

test("an AbortSignal rejects with aborted and sends the cancel", async () => {
  const whoami = hanging();
  const c = open({ methods: { whoami: whoami.method } });
  await c.ready();
  const ac = new AbortController();
  const call = rejection(c.call("greet", {}, { signal: ac.signal, timeout: 10000 }));
  await whoami.called; // abort once the server's nested call reached us
  ac.abort(new Error("user left"));
  const err = await call;
  assert.equal(err.code, "aborted");
  assert.equal(err.cause.message, "user left");
  assert.equal((await whoami.aborted).code, "aborted"); // the server canceled whoami: no deadline had passed
  const pre = new AbortController();
  pre.abort();
  assert.equal((await rejection(c.call("add", { a: 1, b: 2 }, { signal: pre.signal }))).code, "aborted");
});

test("not_connected: never sent, with waitForReady off or no connection in time", async () => {
  const url = `ws://127.0.0.1:${await freePort()}/ws`;
  const c = open({ waitForReady: false, reconnect: { minDelay: 50, maxDelay: 100 } }, url);
  assert.equal((await rejection(c.call("add", { a: 1, b: 2 }))).code, "not_connected");
  const w = open({ reconnect: { minDelay: 50, maxDelay: 100 } }, url);
  const retried = new Promise((r) => w.on("retry", r));
  const err = await rejection(w.call("add", { a: 1, b: 2 }, { timeout: 300 }));
  assert.equal(err.code, "not_connected");
  assert.equal(w.state, "connecting");
  const info = await retried;
  assert.ok(info.delay >= 50 && info.delay <= 100, `retry delay ${info.delay} ms`);
});

test("closed: calls after close, and calls waiting at close", async () => {
  const c = connect(srv.ws);
  await c.ready();
  const states = [];
  c.on("state", (s) => states.push(s));
  const url = `ws://127.0.0.1:${await freePort()}/ws`;
  const w = connect(url);
  const waiting = rejection(w.call("add", { a: 1, b: 2 }));
  await Promise.all([c.close(), w.close()]);
  assert.deepEqual(states, ["closed"]);
  assert.equal((await waiting).code, "closed");
  assert.equal((await rejection(c.call("add", { a: 1, b: 2 }))).code, "closed");
  assert.equal((await rejection(c.ready())).code, "closed");
});

test("a server that goes away: connection_lost for calls in flight, then reconnects and re-subscribes", async () => {
  let s = await startServer();
  try {
    const whoami = hanging();
    const c = open({ reconnect: { minDelay: 20, maxDelay: 100 }, methods: { whoami: whoami.method } }, s.ws);
    const events = [];
    let gotEvent;
    await c.subscribe("time", (data, topic) => {
      events.push(data);
      gotEvent?.();
    });
    const inFlight = rejection(c.call("greet")); // stays open: whoami never answers
    const reconnecting = nextState(c, "reconnecting");
    await whoami.called; // greet runs on the server
    await s.stop("SIGKILL");
    assert.equal(await reconnecting, "reconnecting");
    const err = await inFlight;
    assert.equal(err.code, "connection_lost");
    const reopened = nextState(c, "open");
    s = await startServer({ port: s.port });
    assert.equal(await reopened, "open");
    // The subscription was made again: the restarted server's time arrives.
    const before = events.length;
    await new Promise((r) => (gotEvent = r));
    assert.ok(events.length > before);
    assert.deepEqual(c.topics, ["time"]);
    assert.equal(await c.call("add", { a: 2, b: 2 }), 4);
  } finally {
    await s.stop();
  }
});

test("keep-alive finds a silent link and reconnects", async () => {
  // A proxy that stops forwarding when frozen: the link stays up, silent.
  let frozen = false;
  const sockets = new Set();
  const proxy = net.createServer((down) => {
    const up = net.connect(srv.port, "127.0.0.1");
    sockets.add(down).add(up);
    down.on("data", (b) => frozen || up.write(b));
    up.on("data", (b) => frozen || down.write(b));
    const end = () => (down.destroy(), up.destroy());
    down.on("close", end).on("error", end);
    up.on("close", end).on("error", end);
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  try {
    const c = open({ keepAlive: { interval: 200, timeout: 300 }, reconnect: { minDelay: 20, maxDelay: 50 } }, `ws://127.0.0.1:${proxy.address().port}/ws`);
    await c.ready();
    // Pings keep a live but idle link up past interval + timeout.
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(c.state, "open");
    const retry = new Promise((r) => c.on("retry", r));
    frozen = true;
    const info = await retry;
    assert.equal(info.reason, "keep-alive timeout");
    frozen = false;
    await nextState(c, "open");
    assert.equal(await c.call("add", { a: 1, b: 2 }), 3);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => proxy.close(r));
  }
});

test("publish and subscribe: delivered in order, not to the publisher, until unsubscribed", async () => {
  const sub = open();
  const pub = open();
  const got = [];
  const marks = [];
  const news = await sub.subscribe("news", (data, topic) => got.push([topic, data]));
  let marked;
  await sub.subscribe("marker", (data) => (marks.push(data), marked?.()));
  let own = 0;
  await pub.subscribe("news", () => own++);
  const n = 100;
  for (let i = 0; i < n; i++) await pub.publish("news", { i }, { sync: false });
  const seen = new Promise((r) => (marked = r));
  await pub.publish("marker", 1); // sync: answered once sub took it
  await seen;
  assert.deepEqual(
    got,
    Array.from({ length: n }, (_, i) => ["news", { i }]),
  );
  assert.equal(own, 0);
  await news.unsubscribe();
  assert.deepEqual(sub.topics, ["marker"]);
  await pub.publish("news", { i: "late" });
  const seen2 = new Promise((r) => (marked = r));
  await pub.publish("marker", 2);
  await seen2;
  assert.equal(got.length, n, "an event after unsubscribe was delivered");
});

test("ALL_TOPICS receives every topic with its name", async () => {
  const sub = open();
  const pub = open();
  const got = [];
  let done;
  const all = new Promise((r) => (done = r));
  await sub.subscribe(ALL_TOPICS, (data, topic) => {
    if (topic === "a" || topic === "b") got.push(topic + "=" + data);
    if (got.length === 2) done();
  });
  await pub.publish(["a", "b"], 1);
  await all;
  assert.deepEqual(got.sort(), ["a=1", "b=1"]);
});

test("a subscribe made while connecting is made once connected", async () => {
  const port = await freePort();
  const c = open({ reconnect: { minDelay: 20, maxDelay: 50 } }, `ws://127.0.0.1:${port}/ws`);
  let got;
  const first = new Promise((r) => (got = r));
  const subscribed = c.subscribe("time", (data) => got(data), { timeout: 20000 });
  await new Promise((r) => c.on("retry", r)); // nothing listens yet
  const s = await startServer({ port });
  try {
    await subscribed;
    assert.match(await first, /^\d{4}-\d\d-\d\dT/);
  } finally {
    await c.close();
    await s.stop();
  }
});

test("tokens reach Authenticate by subprotocol and by query, and stay out of the server's log", async () => {
  const token = "tok-3c9d7e-secret";
  const s = await startServer({ args: ["--token", token] });
  try {
    const byProtocol = open({ token: async () => token }, s.ws);
    assert.equal(await byProtocol.call("add", { a: 1, b: 1 }), 2);
    assert.equal(byProtocol.extensions, true);
    const byQuery = open({ token, tokenIn: "query" }, s.ws);
    assert.equal(await byQuery.call("add", { a: 1, b: 2 }), 3);
    // A wrong token is refused (403): the client keeps trying, and a call
    // is never sent.
    const wrong = open({ token: "wrong-token", reconnect: { minDelay: 20, maxDelay: 50 } }, s.ws);
    assert.equal((await rejection(wrong.call("add", { a: 1, b: 2 }, { timeout: 300 }))).code, "not_connected");
    await Promise.all([byProtocol.close(), byQuery.close(), wrong.close()]);
  } finally {
    await s.stop("SIGTERM");
  }
  const log = s.stderr();
  assert.match(log, /msg=connected/);
  for (const secret of [token, "wrong-token", "access_token", Buffer.from(token).toString("base64url")]) {
    assert.ok(!log.includes(secret), `the server's log holds ${secret}:\n${log}`);
  }
});

test("methods the client exposes: errors answered with codes, unknown and private names refused", async () => {
  const c = open({
    methods: {
      whoami() {
        throw RpcError.remote(4001, "not telling", { why: "private" });
      },
    },
  });
  const errors = [];
  c.on("error", (e) => errors.push(e));
  const err = await rejection(c.call("greet"));
  // The server's greet passed on our error as its own.
  assert.equal(err.code, "remote");
  assert.equal(err.remoteCode, 4001, err.message);
  assert.throws(() => c.expose("_hidden", () => 1), TypeError);
  assert.throws(() => c.expose("notify", () => 1), TypeError);
  const id = await c.call("call_me_back", { method_name: "nope", args: {} });
  const got = await response(c, id);
  assert.equal(got.result_type, "error");
  assert.equal(got.error?.code, -32601);
  assert.equal(errors.length, 0);
});
