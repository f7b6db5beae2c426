// A minimal lambdad client in JavaScript, written from docs/protocol.md alone, that runs the
// conformance checks against a live daemon and prints one JSON line per check.
//
//   node client.mjs SOCKET FUNCTION_ZIP   (env LAMBDAD_NODE_MODULES: where @msgpack/msgpack is)
//
// The zip holds a function whose handler sleeps event.s seconds and returns {"n": event.n}.
// Exit status 0 only if every check passed.

import net from "node:net";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(process.env.LAMBDAD_NODE_MODULES + "/");
const { encode, decodeMultiStream } = require("@msgpack/msgpack");

const [socketPath, zipPath] = process.argv.slice(2);
const results = [];
function check(name, ok, detail) {
  results.push({ name, ok: Boolean(ok), detail: ok ? undefined : detail });
}

// One connection: frames are msgpack maps back to back; responses are matched by id.
class Connection {
  constructor(path) {
    this.socket = net.createConnection(path);
    this.pending = new Map(); // id -> resolve
    this.unmatched = []; // frames with "id": nil (or an id nobody waits for), in order
    this.order = []; // the ids of every frame, in arrival order
    this.waiters = [];
    this.ended = new Promise((resolve) => {
      this.socket.on("end", resolve); // the daemon's EOF
    });
    this.closed = new Promise((resolve) => this.socket.on("close", resolve));
    this.socket.on("error", (err) => {
      this.error = err;
    });
    this.reader = this.read();
    this.nextId = 1;
  }

  async read() {
    for await (const frame of decodeMultiStream(this.socket)) {
      this.order.push(frame.id);
      const resolve = frame.id === null ? undefined : this.pending.get(frame.id);
      if (resolve) {
        this.pending.delete(frame.id);
        resolve(frame);
      } else {
        this.unmatched.push(frame);
        for (const wake of this.waiters.splice(0)) wake();
      }
    }
  }

  writeRaw(bytes) {
    this.socket.write(bytes);
  }

  // Send a request; resolves to the whole response frame ({id, ok} or {id, error}).
  request(op, args, { id, encodeOptions } = {}) {
    const rid = id ?? this.nextId++;
    const frame = args === undefined ? { id: rid, op } : { id: rid, op, args };
    const answer = new Promise((resolve) => this.pending.set(Number(rid), resolve));
    this.socket.write(encode(frame, encodeOptions));
    return answer;
  }

  async call(op, args) {
    const frame = await this.request(op, args);
    if (frame.error) throw Object.assign(new Error(frame.error.message), frame.error);
    return frame.ok;
  }

  async nextUnmatched() {
    while (this.unmatched.length === 0) await new Promise((r) => this.waiters.push(r));
    return this.unmatched.shift();
  }

  async hello() {
    const ok = await this.call("hello", { version: 1, client: "conformance-js/1" });
    if (ok.version !== 1) throw new Error(`hello answered ${JSON.stringify(ok)}`);
    return ok;
  }
}

const text = new TextEncoder();
const json = (obj) => text.encode(JSON.stringify(obj));
const unjson = (bytes) => JSON.parse(new TextDecoder().decode(bytes));
const withTimeout = (promise, ms, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms)),
  ]);

async function handshake() {
  const c = new Connection(socketPath);
  // The doc's bytes, exactly: {"id": 0, "op": "hello", "args": {"version": 1}}
  const hex = "83 a2 69 64 00 a2 6f 70 a5 68 65 6c 6c 6f a4 61 72 67 73 81 a7 76 65 72 73 69 6f 6e 01";
  const answer = new Promise((resolve) => c.pending.set(0, resolve));
  c.writeRaw(Buffer.from(hex.replaceAll(" ", ""), "hex"));
  const frame = await answer;
  check("handshake: the doc's hex bytes are answered", frame.id === 0 && frame.ok?.version === 1,
    frame);
  check("handshake: server and missing", typeof frame.ok?.server === "string" &&
    Array.isArray(frame.ok?.missing), frame);
  return c;
}

async function operations(c) {
  const zip = readFileSync(zipPath);
  const deployed = await c.call("deploy", { name: "js-sleep", code: zip, timeout_s: 5 });
  check("deploy: a FunctionDescription", deployed.function?.name === "js-sleep" &&
    typeof deployed.function.version === "string" && typeof deployed.created === "boolean",
    deployed);
  await c.call("deploy", { name: "js-timeout", code: zip, timeout_s: 0.2 });
  await c.call("deploy", { name: "js-throttled", code: zip, concurrency: 0 });
  const again = await c.call("deploy", { name: "js-sleep", code: zip, timeout_s: 5 });
  check("deploy: identical again is not created", again.created === false, again);
  const got = await c.call("get", { name: "js-sleep" });
  check("get", got.function?.handler === "app.handler", got);
  const listed = await c.call("list");
  check("list: sorted descriptions", Array.isArray(listed.functions) &&
    listed.functions.some((f) => f.name === "js-sleep"), listed);
  check("ping", Object.keys(await c.call("ping", {})).length === 0, "ping");

  const sync = await c.call("invoke", { name: "js-sleep", payload: json({ n: 7, s: 0 }) });
  check("invoke sync: result is JSON text in bin", sync.result instanceof Uint8Array &&
    unjson(sync.result).n === 7 && sync.error === null && sync.function_error === null, sync);
  check("invoke sync: report", typeof sync.report?.duration_ms === "number" &&
    Number.isInteger(sync.report.billed_ms) && ["warm", "pool", "fork"].includes(sync.report.source),
    sync.report);
  const asStr = await c.call("invoke", { name: "js-sleep", payload: '{"n": 8, "s": 0}' });
  check("invoke sync: payload as str", unjson(asStr.result).n === 8, asStr);
  const failed = await c.call("invoke", { name: "js-sleep", payload: json({ raise: "boom" }) });
  check("invoke sync: a handler error is data", failed.function_error === "Unhandled" &&
    failed.error?.errorMessage === "boom" && Array.isArray(failed.error.stackTrace), failed);
  const timedOut = await c.call("invoke", { name: "js-timeout", payload: json({ s: 2 }) });
  check("invoke sync: Sandbox.Timedout", timedOut.function_error === "Unhandled" &&
    timedOut.error?.errorType === "Sandbox.Timedout" && !("stackTrace" in timedOut.error),
    timedOut.error);
  const tail = await c.call("invoke", { name: "js-sleep", payload: json({ s: 0 }), log_tail: true });
  check("invoke: log_tail", typeof tail.log_tail === "string" && tail.log_tail.includes("REPORT"),
    tail);
  const dry = await c.call("invoke", { name: "js-sleep", type: "dryrun" });
  check("invoke dryrun", dry.status === 204 && typeof dry.version === "string", dry);
  const queued = await c.call("invoke", { name: "js-sleep", type: "async", payload: json({ s: 0 }) });
  check("invoke async", queued.status === 202 && typeof queued.event_id === "string", queued);
  const stats = await c.call("stats", { name: "js-sleep" });
  check("stats", stats.name === "js-sleep" && Number.isInteger(stats.stats?.invocations), stats);
  const all = await c.call("stats");
  check("stats: host", typeof all.stats?.async?.pending === "number", all);
  const logs = await c.call("logs", { name: "js-sleep" });
  check("logs: data and an opaque cursor", logs.data instanceof Uint8Array &&
    typeof logs.cursor === "object", logs);
  const more = await c.call("logs", { name: "js-sleep", cursor: logs.cursor });
  check("logs: follow with the cursor", more.data instanceof Uint8Array, more);
  const dead = await c.call("dead_letters", {});
  check("dead_letters", Array.isArray(dead.events), dead);
}

async function pipelining(c) {
  // 100 requests in flight at once; slow ones first, so answers come in completion order.
  const sent = [];
  for (let i = 0; i < 100; i++) {
    const args = i % 10 === 0
      ? { name: "js-sleep", payload: json({ n: i, s: 0.2 }) }
      : { name: "js-sleep", type: "dryrun" };
    sent.push(c.request("invoke", args, { id: 1000 + i }));
  }
  const frames = await Promise.all(sent);
  check("pipelining: 100 answers matched by id",
    frames.every((f, i) => f.id === 1000 + i && f.ok !== undefined), frames.filter((f) => f.error));
  const slow = frames.filter((f, i) => i % 10 === 0);
  check("pipelining: invokes carry their own payload",
    slow.every((f, k) => unjson(f.ok.result).n === k * 10), slow.length);
  const order = c.order.filter((id) => id >= 1000 && id < 1100);
  check("pipelining: completion order, not request order", order[0] !== 1000, order.slice(0, 5));

  // An id that is an integral float (what encode() makes of 2**32 with useBigInt64).
  const big = await c.request("ping", {}, { id: 2 ** 32, encodeOptions: { useBigInt64: true } });
  check("ids: an integral float id is answered as that integer", big.id === 2 ** 32 && big.ok,
    big);
}

function expectError(frame, type, name, extra = () => true) {
  const e = frame.error;
  check(`error ${type}: ${name}`, e && e.type === type && typeof e.message === "string" &&
    e.message.length > 0 && !e.fatal && extra(e), frame);
}

async function errors(c) {
  expectError(await c.request("frobnicate", {}), "ProtocolError", "unknown op",
    (e) => Array.isArray(e.ops) && e.ops.includes("invoke"));
  expectError(await c.request("invoke", { name: "no-such-fn" }), "ResourceNotFound",
    "no such function", (e) => e.name === "no-such-fn");
  expectError(await c.request("invoke", { name: "js-sleep", qualifier: "99" }), "ResourceNotFound",
    "no such version", (e) => e.name === "js-sleep" && e.qualifier === "99");
  expectError(await c.request("invoke", { name: "js-sleep", type: "later" }),
    "InvalidParameterValue", "bad type", (e) => e.field === "type");
  expectError(await c.request("invoke", { name: "js-sleep", Payload: json({}) }),
    "InvalidParameterValue", "unknown argument", (e) => e.field === "Payload");
  expectError(await c.request("invoke", { name: "js-sleep", payload: "not json" }),
    "InvalidRequest", "payload that is not JSON");
  expectError(await c.request("invoke", {
    name: "js-sleep", type: "async", payload: json({ pad: "x".repeat(262144) }),
  }), "RequestTooLarge", "async payload over 256 KiB", (e) => e.limit === 262144);
  expectError(await c.request("invoke", { name: "js-throttled", payload: json({}) }),
    "TooManyRequests", "reserved concurrency 0",
    (e) => e.reason === "ReservedFunctionConcurrentInvocationLimitExceeded");
  expectError(await c.request("redrive", { event_id: "no-such-event" }), "ResourceNotFound",
    "redrive of an unknown event");
  // A frame without a usable id is refused with "id": nil, and is not fatal.
  for (const [id, what] of [[-1, "negative id"], [5.5, "fractional id"], ["7", "string id"]]) {
    c.writeRaw(encode({ id, op: "ping" }));
    expectError(await withTimeout(c.nextUnmatched(), 5000, what), "ProtocolError", what,
      (e) => e.message.startsWith("'id' must be an integer"));
  }
  check("errors: the connection still works", Object.keys(await c.call("ping")).length === 0);

  const fresh = new Connection(socketPath);
  expectError(await fresh.request("ping", {}), "ProtocolError", "request before hello");
  expectError(await fresh.request("hello", { version: 2 }), "UnsupportedVersion",
    "version 2", (e) => JSON.stringify(e.supported) === "[1]");
  expectError(await fresh.request("hello", {}), "UnsupportedVersion", "no version",
    (e) => e.message.includes("no 'version'"));
  await fresh.hello();
  check("hello: accepted after refusals", true);
  fresh.socket.end();
  await withTimeout(fresh.ended, 5000, "EOF after end()");
}

async function fatal() {
  const c = new Connection(socketPath);
  await c.hello();
  const slow = c.request("invoke", { name: "js-sleep", payload: json({ n: 1, s: 0.3 }) });
  c.writeRaw(Uint8Array.of(0xc1)); // never used by msgpack: fatal
  const error = await withTimeout(c.nextUnmatched(), 5000, "the fatal frame");
  check("fatal: one error frame, id nil, fatal true", error.id === null &&
    error.error?.type === "ProtocolError" && error.error.fatal === true, error);
  const answer = await withTimeout(slow, 5000, "the in-flight invoke's answer");
  check("fatal: a request read before the bad bytes is still answered",
    unjson(answer.ok.result).n === 1, answer);
  await withTimeout(c.ended, 5000, "the daemon's EOF after a fatal error");
  check("fatal: then the daemon's EOF", c.unmatched.length === 0, c.unmatched);
  c.socket.end();
  await withTimeout(c.closed, 5000, "close");
  check("fatal: no reset", c.error === undefined, String(c.error));

  const big = new Connection(socketPath);
  await big.hello();
  // An invoke whose payload is a bin32 declaring 100 MiB: refused from the header alone.
  const head = encode({ id: 9, op: "invoke", args: { name: "js-sleep", payload: new Uint8Array() } });
  const cut = head.subarray(0, head.length - 2); // drop bin8 with length 0 (c4 00)
  big.writeRaw(Buffer.concat([cut, Uint8Array.of(0xc6, 0x06, 0x40, 0x00, 0x00), json({})]));
  const tooLarge = await withTimeout(big.nextUnmatched(), 5000, "FrameTooLarge");
  check("fatal: FrameTooLarge from the header", tooLarge.error?.type === "FrameTooLarge" &&
    tooLarge.error.limit === 8 * 1024 * 1024 && tooLarge.error.fatal === true, tooLarge);
  await withTimeout(big.ended, 5000, "EOF after FrameTooLarge");
  big.socket.end();
}

async function halfClose() {
  const c = new Connection(socketPath);
  await c.hello();
  const answers = [1, 2, 3].map((n) =>
    c.request("invoke", { name: "js-sleep", payload: json({ n, s: 0.1 }) }));
  c.socket.end(); // half-close: we send nothing more, but still read
  const frames = await withTimeout(Promise.all(answers), 10000, "answers after half-close");
  check("half-close: every request sent is answered",
    frames.map((f) => unjson(f.ok.result).n).join() === "1,2,3", frames);
  await withTimeout(c.ended, 5000, "the daemon's EOF after ours");
  check("half-close: then the daemon's EOF", c.error === undefined, String(c.error));
}

try {
  const c = await handshake();
  await operations(c);
  await pipelining(c);
  await errors(c);
  await fatal();
  await halfClose();
  c.socket.end();
  await withTimeout(c.ended, 5000, "final EOF");
} catch (err) {
  check("no exception", false, String(err && err.stack || err));
}
for (const r of results) process.stdout.write(JSON.stringify(r) + "\n");
process.exit(results.every((r) => r.ok) ? 0 : 1);
