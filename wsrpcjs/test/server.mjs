// server.mjs starts `wsrpc serve` for the tests, as a private process on
// a loopback port. The binary is $WSRPC_BIN (the Go test that runs these
// tests sets it); without it, it is built once from this repository with
// `go build` into a temporary directory.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
let built = null;

function binary() {
  if (process.env.WSRPC_BIN) return process.env.WSRPC_BIN;
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), "wsrpcjs-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    built = join(dir, "wsrpc");
    execFileSync("go", ["build", "-o", built, "."], { cwd: join(repo, "cmd", "wsrpc"), stdio: "inherit" });
  }
  return built;
}

/**
 * startServer runs `wsrpc serve --addr 127.0.0.1:PORT ...args` (port 0: a
 * free one) and resolves once it serves. The result has addr, ws (the
 * ws:// URL of /ws), http (the demo page's URL), stderr() (its log so far)
 * and stop(signal = "SIGKILL"), which resolves once it exited.
 */
export function startServer({ port = 0, args = [] } = {}) {
  const proc = spawn(binary(), ["serve", "--addr", `127.0.0.1:${port}`, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  proc.stderr.setEncoding("utf8").on("data", (s) => (err += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error("wsrpc serve did not start in 20 s: " + err));
    }, 20000);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`wsrpc serve exited (${code ?? signal}): ${err}`));
    });
    proc.stdout.setEncoding("utf8").on("data", (s) => {
      out += s;
      const m = /demo page on http:\/\/([^/\s]+)\//.exec(out);
      if (!m) return;
      clearTimeout(timer);
      proc.stdout.resume();
      const addr = m[1];
      resolve({
        addr,
        port: Number(addr.split(":").pop()),
        ws: `ws://${addr}/ws`,
        http: `http://${addr}/`,
        stderr: () => err,
        // stop stops the server and resolves once it exited; it rejects
        // if the race detector (a test binary run as wsrpc) found a race.
        async stop(signal = "SIGKILL") {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          await exited;
          if (err.includes("WARNING: DATA RACE")) throw new Error("wsrpc serve: data race:\n" + err);
        },
      });
    });
  });
}

/** nextState resolves with the client's next state that is one of states. */
export function nextState(client, ...states) {
  return new Promise((resolve) => {
    const off = client.on("state", (s) => {
      if (states.includes(s)) {
        off();
        resolve(s);
      }
    });
  });
}
