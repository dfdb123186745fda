// What wsrpc.d.ts promises an editor, as code that must type-check, where
// each line marked ts-expect-error must be a type error. No TypeScript is installed for
// the tests (wsrpc.js has no build step); check it by hand with
//
//   npx -p typescript@5 tsc --noEmit --strict --target es2022 --module esnext \
//     --moduleResolution bundler --lib es2022,dom test/types.ts
import { connect, RpcError, ALL_TOPICS } from "../wsrpc.js";

interface Demo {
  add: (args: { a: number; b: number }) => number;
  greet: () => string;
  opt: (args?: { n?: number }) => Promise<boolean>;
}
interface Topics {
  time: string;
  news: { id: number };
}

export async function check() {
  const c = connect<Demo, Topics>("/ws", { token: () => "t", methods: { whoami: (_args, ctx) => ctx.signal.aborted } });
  const n: number = await c.call("add", { a: 1, b: 2 });
  const n2: number = await c.call<"add">("add", { a: 1, b: 2 }, { timeout: 100 });
  const s: string = await c.call("greet");
  const b: boolean = await c.call("opt");
  const p: "pong" = await c.call("_ping_");
  await c.subscribe("time", (iso) => {
    const x: string = iso;
  });
  await c.subscribe("news", (d) => {
    const x: number = d.id;
  });
  await c.subscribe(ALL_TOPICS, (_d, topic) => {});
  await c.subscribe("other", (_d) => {});
  await c.publish("news", { id: 1 });
  c.on("state", (st) => {
    const y: "open" | "connecting" | "reconnecting" | "closed" = st;
  });
  try {
    await c.call("add", { a: 1, b: 2 });
  } catch (e) {
    if (e instanceof RpcError && e.code === "remote") console.log(e.remoteCode);
  }
  const untyped = connect("/ws");
  const v: unknown = await untyped.call("whatever", { x: 1 });
  await untyped.call("whatever");
  // @ts-expect-error unknown method
  await c.call("nope");
  // @ts-expect-error wrong argument type
  await c.call("add", { a: "1", b: 2 });
  // @ts-expect-error missing arguments
  await c.call("add");
  // @ts-expect-error wrong event data
  await c.publish("news", "x");
  // @ts-expect-error wrong result type
  const bad: string = await c.call("add", { a: 1, b: 2 });
  return [n, n2, s, b, p, v, bad];
}
