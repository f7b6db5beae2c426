// lambdad's Node.js runtime client: Lambda's Node programming model over the Runtime API.
//
// Started at pool time by sandbox/runtimes/node.py, already confined (unprivileged uid,
// seccomp). It warms up, says so on fd 4, then blocks reading the function's configuration
// from fd 3 (JSON: env, taskRoot, handler), written by the sandbox's agent at Init. Then: Lambda's environment,
// the handler loaded (CommonJS or ES module), and the loop: GET next -> handler(event,
// context[, callback]) -> POST response | error.
//
// Lambda's semantics kept here: `context` with getRemainingTimeInMillis(), awsRequestId,
// functionName, callbackWaitsForEmptyEventLoop (a callback's result is sent once the event loop
// is empty, unless it is set to false), errors as {errorType, errorMessage, trace}, console
// lines as `<ISO time>\t<request id>\t<LEVEL>\t<message>` with newlines as \r.

import { closeSync, existsSync, readSync, writeSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { format } from "node:util";

const CONFIG_FD = 3;
const READY_FD = 4; // one byte: warmed up, waiting for the configuration
const API_PREFIX = "/2018-06-01/runtime";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let currentRequestId; // undefined outside an invocation, as on Lambda

// -- logging --------------------------------------------------------------------------------

function logLine(level, args) {
  const message = format(...args).replace(/\n/g, "\r");
  process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${message}\n`);
}

function patchConsole() {
  console.log = (...args) => logLine("INFO", args);
  console.info = (...args) => logLine("INFO", args);
  console.warn = (...args) => logLine("WARN", args);
  console.error = (...args) => logLine("ERROR", args);
  console.debug = (...args) => logLine("DEBUG", args);
  console.trace = (...args) => logLine("TRACE", args);
  console.fatal = (...args) => logLine("FATAL", args);
}

// -- errors ---------------------------------------------------------------------------------

function errorShape(err, typeOverride) {
  if (err instanceof Error) {
    return {
      errorType: typeOverride ?? err.name ?? "Error",
      errorMessage: String(err.message ?? ""),
      trace: String(err.stack ?? "").split("\n"),
    };
  }
  return {
    errorType: typeOverride ?? typeof err,
    errorMessage: typeof err === "string" ? err : safeStringify(err),
    trace: [],
  };
}

function safeStringify(value) {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

class UserError extends Error {
  constructor(name, message, cause) {
    super(message);
    this.name = name;
    if (cause?.stack) this.stack = `${name}: ${message}\n${cause.stack}`;
  }
}

// -- the Runtime API ------------------------------------------------------------------------

function api(method, route, body, headers = {}) {
  const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
  return new Promise((resolve, reject) => {
    const all = { ...headers };
    if (body !== undefined) {
      all["Content-Type"] = "application/json";
      all["Content-Length"] = Buffer.byteLength(body);
    }
    const req = http.request(
      { host, port: Number(port), method, path: API_PREFIX + route, agent, headers: all },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function postError(route, shape) {
  logLine("ERROR", [`${route.startsWith("/init") ? "Init" : "Invoke"} Error \t${JSON.stringify(shape)}`]);
  await api("POST", route, JSON.stringify(shape), {
    "Lambda-Runtime-Function-Error-Type": shape.errorType,
  });
}

// -- configuration and handler --------------------------------------------------------------

function readConfig() {
  const chunks = [];
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    let n;
    try {
      n = readSync(CONFIG_FD, buf, 0, buf.length, null);
    } catch (err) {
      if (err.code === "EAGAIN" || err.code === "EINTR") continue;
      throw err;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  closeSync(CONFIG_FD);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function loadHandler(taskRoot, handlerString) {
  const slash = handlerString.lastIndexOf("/");
  const dir = handlerString.slice(0, slash + 1);
  const base = handlerString.slice(slash + 1);
  const dot = base.indexOf(".");
  if (dot < 1) {
    throw new UserError("Runtime.MalformedHandlerName", "Bad handler");
  }
  const moduleName = base.slice(0, dot);
  const names = base.slice(dot + 1).split(".");
  const stem = path.resolve(taskRoot, dir, moduleName);
  const file = [".js", ".mjs", ".cjs"].map((ext) => stem + ext).find((f) => existsSync(f));
  if (file === undefined) {
    throw new UserError(
      "Runtime.ImportModuleError",
      `Error: Cannot find module '${dir}${moduleName}'`,
    );
  }
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new UserError("Runtime.UserCodeSyntaxError", `${err.name}: ${err.message}`, err);
    }
    if (err?.code === "ERR_MODULE_NOT_FOUND" || err?.code === "MODULE_NOT_FOUND") {
      throw new UserError("Runtime.ImportModuleError", `Error: ${err.message}`, err);
    }
    throw err;
  }
  const lookup = (root) => names.reduce((obj, key) => (obj == null ? undefined : obj[key]), root);
  let fn = lookup(mod);
  if (fn === undefined && mod.default !== undefined) fn = lookup(mod.default);
  if (typeof fn !== "function") {
    throw new UserError(
      "Runtime.HandlerNotFound",
      `${dir}${moduleName}.${names.join(".")} is undefined or not exported`,
    );
  }
  return fn;
}

// -- one invocation -------------------------------------------------------------------------

function makeContext(headers, env) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"]);
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  if (headers["lambda-runtime-client-context"]) {
    context.clientContext = JSON.parse(headers["lambda-runtime-client-context"]);
  }
  if (headers["lambda-runtime-cognito-identity"]) {
    context.identity = JSON.parse(headers["lambda-runtime-cognito-identity"]);
  }
  return context;
}

let failCurrent = null; // set while an invocation runs: uncaught errors end it

function run(handler, event, context) {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome) => {
      if (settled) return;
      settled = true;
      failCurrent = null;
      resolve(outcome);
    };
    failCurrent = (err, type) => settle({ error: errorShape(err, type) });
    const callback = (err, result) => {
      const outcome = err != null ? { error: errorShape(err) } : { result };
      if (context.callbackWaitsForEmptyEventLoop) {
        // Lambda's rule: the answer goes when nothing is left on the event loop.
        process.once("beforeExit", () => settle(outcome));
      } else {
        settle(outcome);
      }
    };
    context.done = callback;
    context.succeed = (result) => callback(null, result);
    context.fail = (err) => callback(err ?? "handled");
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (err) {
      settle({ error: errorShape(err) });
      return;
    }
    if (returned && typeof returned.then === "function") {
      returned.then(
        (result) => settle({ result }),
        (err) => settle({ error: errorShape(err) }),
      );
    }
  });
}

process.on("uncaughtException", (err) => {
  if (failCurrent) failCurrent(err);
  else logLine("ERROR", [`Uncaught Exception \t${JSON.stringify(errorShape(err))}`]);
});
process.on("unhandledRejection", (reason) => {
  const err = reason instanceof Error ? reason : new Error(String(reason));
  if (failCurrent) failCurrent(err, "Runtime.UnhandledPromiseRejection");
  else logLine("ERROR", [`Unhandled Promise Rejection \t${JSON.stringify(errorShape(err))}`]);
});

// -- main -----------------------------------------------------------------------------------

async function main() {
  writeSync(READY_FD, "r");
  closeSync(READY_FD);
  const config = readConfig();
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, config.env);
  process.chdir(config.taskRoot);
  patchConsole();
  let handler;
  try {
    handler = await loadHandler(config.taskRoot, config.handler);
  } catch (err) {
    await postError("/init/error", errorShape(err));
    return;
  }
  for (;;) {
    const next = await api("GET", "/invocation/next");
    if (next.status !== 200) {
      throw new Error(`next: HTTP ${next.status} ${next.body}`);
    }
    const id = next.headers["lambda-runtime-aws-request-id"];
    currentRequestId = id;
    process.env._X_AMZN_TRACE_ID = next.headers["lambda-runtime-trace-id"] ?? "";
    let outcome;
    try {
      const event = next.body.length ? JSON.parse(next.body.toString("utf8")) : null;
      outcome = await run(handler, event, makeContext(next.headers, process.env));
    } catch (err) {
      outcome = { error: errorShape(err, "Runtime.UnmarshalError") };
    }
    if (outcome.error === undefined) {
      let body;
      try {
        body = JSON.stringify(outcome.result === undefined ? null : outcome.result);
      } catch (err) {
        outcome = { error: errorShape(err, "Runtime.MarshalError") };
      }
      if (body !== undefined) {
        await api("POST", `/invocation/${id}/response`, body);
      }
    }
    if (outcome.error !== undefined) {
      await postError(`/invocation/${id}/error`, outcome.error);
    }
    currentRequestId = undefined;
  }
}

// Warm-up at pool time, before saying ready: what the first cold start would otherwise pay —
// the module loader (import() of a CommonJS file), the HTTP client, the handler call path,
// formatting.
async function warmUp() {
  const here = path.dirname(new URL(import.meta.url).pathname);
  const mod = await import(pathToFileURL(path.join(here, "warmup.cjs")).href);
  await run(mod.handler ?? mod.default.handler, { warm: true }, makeContext({}, {}));
  // One real round trip, to a throw-away server of its own on the sandbox's loopback: the
  // client's request and response paths (and llhttp) are then compiled.
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => res.end('{"warm":true}'));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  const saved = process.env.AWS_LAMBDA_RUNTIME_API;
  process.env.AWS_LAMBDA_RUNTIME_API = `127.0.0.1:${port}`;
  try {
    await api("POST", "/warm-up", JSON.stringify({ warm: true }));
    await api("GET", "/warm-up");
  } finally {
    process.env.AWS_LAMBDA_RUNTIME_API = saved;
    agent.destroy(); // no connection to the throw-away server survives
    await new Promise((resolve) => server.close(resolve));
  }
  format("%s %d %j", "warm", 1, { up: true });
  JSON.stringify(errorShape(new Error("warm-up")));
  JSON.parse('{"a":[1,2.5,"x",null,true]}');
  new Date().toISOString();
}

warmUp()
  .catch(() => {})
  .then(main)
  .catch((err) => {
    logLine("ERROR", [`lambdad runtime failed \t${JSON.stringify(errorShape(err))}`]);
    process.exit(1);
  });
