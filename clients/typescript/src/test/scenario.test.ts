// The cross-language scenario against a running service at SESSION_SERVICE_ADDR.
// Same steps as clients/python/tests, clients/go and clients/java.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, test } from "node:test";
import {
  Code,
  SessionClient,
  SessionError,
  SessionNotFoundError,
  ServingStatus,
  VersionConflictError,
} from "../client.js";

const address = process.env.SESSION_SERVICE_ADDR;
if (!address) throw new Error("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions");

const client = new SessionClient(address);
const enc = (s: string) => new TextEncoder().encode(s);
const unknownId = () => randomBytes(32).toString("base64url");
const binary = new Uint8Array([0, 1, 2, 255]);

describe("session.v1 scenario (TypeScript)", () => {
  const created: string[] = [];
  after(async () => {
    for (const id of created) await client.delete(id).catch(() => undefined);
  });

  test("health check: server and session.v1.SessionService are SERVING", async () => {
    assert.equal(await client.check(""), ServingStatus.SERVING);
    assert.equal(await client.check("session.v1.SessionService"), ServingStatus.SERVING);
  });

  test("health watch: first message is SERVING", async () => {
    const ctl = new AbortController();
    for await (const res of client.health.watch({ service: "session.v1.SessionService" }, { signal: ctl.signal })) {
      assert.equal(res.status, ServingStatus.SERVING);
      break;
    }
    ctl.abort();
  });

  test("create with attributes, then get", async () => {
    const s = await client.create({ user: enc("alice"), blob: binary }, { principal: "alice", idleTimeoutMs: 60_000 });
    created.push(s.id);
    assert.equal(s.id.length, 43);
    assert.equal(s.version, 1n);
    assert.equal(s.principal, "alice");
    assert.equal(s.idleTimeoutMs, 60_000);
    assert.deepEqual(s.attributes.user, enc("alice"));
    assert.ok(s.expiresAt && s.createdAt && s.expiresAt > s.createdAt);

    for (const strong of [false, true]) {
      const got = await client.get(s.id, { strong });
      assert.equal(got.id, s.id);
      assert.equal(got.version, 1n);
      assert.equal(got.principal, "alice");
      assert.deepEqual(got.attributes.user, enc("alice"));
      assert.deepEqual(got.attributes.blob, binary);
    }
  });

  test("put with expected_version, then a stale put is ABORTED", async () => {
    const s = await client.create({ user: enc("alice"), cart: enc("empty") });
    created.push(s.id);
    const updated = await client.put(s.id, { set: { cart: enc("3 items") }, remove: ["user"], expectedVersion: 1n });
    assert.equal(updated.version, 2n);
    assert.deepEqual(Object.keys(updated.attributes), ["cart"]);
    assert.deepEqual(updated.attributes.cart, enc("3 items"));

    await assert.rejects(
      client.put(s.id, { set: { cart: enc("stale") }, expectedVersion: 1n }),
      (err: unknown) => {
        assert.ok(err instanceof VersionConflictError, String(err));
        assert.equal(err.code, Code.Aborted);
        assert.equal(err.currentVersion, 2n);
        return true;
      },
    );
    const got = await client.get(s.id, { strong: true });
    assert.equal(got.version, 2n);
    assert.deepEqual(got.attributes.cart, enc("3 items"));

    const unconditional = await client.put(s.id, { set: { n: enc("1") } });
    assert.equal(unconditional.version, 3n);
  });

  test("delete, then get is NOT_FOUND and delete again reports existed=false", async () => {
    const s = await client.create({ user: enc("bob") });
    assert.equal(await client.delete(s.id), true);
    await assert.rejects(client.get(s.id, { strong: true }), SessionNotFoundError);
    await assert.rejects(client.put(s.id, { set: { a: enc("b") } }), SessionNotFoundError);
    assert.equal(await client.delete(s.id), false);
  });

  test("unknown id is NOT_FOUND, malformed id is INVALID_ARGUMENT", async () => {
    await assert.rejects(client.get(unknownId()), SessionNotFoundError);
    await assert.rejects(client.get("not-a-session-id"), (err: unknown) => {
      assert.ok(err instanceof SessionError);
      assert.equal(err.code, Code.InvalidArgument);
      return true;
    });
  });
});
