// What one Get costs a Node process through the TypeScript client alone (connect-node's gRPC
// transport over node:http2), without Express: the express-session row's explanation in
// docs/benchmarks.md. Run from the app directory bench/adapters/run.py installs:
//
//   cp bench/adapters/node/client-cost.mjs $CARGO_TARGET_DIR/bench-adapters/node-app/
//   SESSION_SERVICE_BIN=$CARGO_TARGET_DIR/release/valkey-sessions bash clients/with-service.sh \
//     node $CARGO_TARGET_DIR/bench-adapters/node-app/client-cost.mjs
import { SessionClient } from "valkey-sessions-client";

const client = new SessionClient(process.env.SESSION_SERVICE_ADDR, { timeoutMs: 2000 });
const s = await client.create({ user: new TextEncoder().encode('{"name":"bench"}') });
const total = 4000, inFlight = 16;
for (const round of [1, 2, 3]) {
  const t0 = performance.now(), cpu0 = process.cpuUsage();
  let n = 0;
  await Promise.all([...Array(inFlight)].map(async () => {
    while (n < total) {
      n++;
      await client.get(s.id, { strong: true });
    }
  }));
  const ms = performance.now() - t0, cpu = process.cpuUsage(cpu0);
  console.log(`round ${round}: ${((total / ms) * 1000).toFixed(0)} Gets/s, ${((cpu.user + cpu.system) / total).toFixed(0)} µs CPU per Get (${inFlight} in flight)`);
}
process.exit(0);
