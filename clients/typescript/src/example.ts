// Example: one session's life. Run `npm run example` with SESSION_SERVICE_ADDR=host:port.
import { SessionClient, ServingStatus, VersionConflictError } from "./client.js";

const address = process.env.SESSION_SERVICE_ADDR ?? "127.0.0.1:50051";
const client = new SessionClient(address);
const enc = new TextEncoder();
const dec = new TextDecoder();

console.log("health:", ServingStatus[await client.check("session.v1.SessionService")]);

const session = await client.create({ theme: enc.encode("dark") }, { principal: "alice", idleTimeoutMs: 60_000 });
console.log(`created session version ${session.version}, expires ${session.expiresAt?.toISOString()}`);

const read = await client.get(session.id);
console.log("theme =", dec.decode(read.attributes.theme));

const updated = await client.put(session.id, {
  set: { cart: enc.encode("3 items") },
  expectedVersion: read.version,
});
console.log(`put -> version ${updated.version}, attributes ${Object.keys(updated.attributes).sort().join(",")}`);

try {
  await client.put(session.id, { set: { cart: enc.encode("stale") }, expectedVersion: read.version });
} catch (err) {
  if (!(err instanceof VersionConflictError)) throw err;
  console.log(`stale put rejected (ABORTED), current version ${err.currentVersion}`);
}

// Login (or privilege change): a new id, the old one is NOT_FOUND from now on.
const rotated = await client.rotate(session.id, { principal: "alice" });
console.log(`rotated to a new id, version ${rotated.version}`);

// Where alice is logged in: each session with a revocation handle (never its id).
let n = 0;
for await (const _ of client.allSessions("alice", { displayAttributes: ["theme"] })) n++;
console.log(`alice has ${n} session(s)`);

console.log("deleted:", await client.delete(rotated.id));
