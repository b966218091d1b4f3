// The cross-language scenario against a running service at SESSION_SERVICE_ADDR.
// Same steps as clients/python/tests, clients/go and clients/java.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { after, describe, test } from "node:test";
import {
  Code,
  SessionClient,
  SessionError,
  SessionNotFoundError,
  ServingStatus,
  VersionConflictError,
  type SessionInfo,
} from "../client.js";

const address = process.env.SESSION_SERVICE_ADDR;
if (!address) throw new Error("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions");

const client = new SessionClient(address);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));
const unknownId = () => randomBytes(32).toString("base64url");
const binary = new Uint8Array([0, 1, 2, 255]);
// The id format: an 11-character slot tag, '.', 256 bits as URL-safe base64 without padding.
const idFormat = /^[^.]{11}\.[A-Za-z0-9_-]{43}$/;
const devices = (infos: SessionInfo[]) => infos.map((i) => dec(i.displayAttributes.device));

/** Asserts that `promise` rejects with a SessionError whose code is one of `codes`. */
const rejectsWith = (promise: Promise<unknown>, ...codes: Code[]) =>
  assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof SessionError, String(err));
    assert.ok(codes.includes(err.code), `code ${Code[err.code]}, want ${codes.map((c) => Code[c]).join(" or ")}`);
    return true;
  });

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
    assert.equal(s.id.length, 55);
    assert.match(s.id, idFormat);
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
  test("sessions of a user: list, pages, handles, revoke one, revoke others, login by rotate", async () => {
    const principal = `user-${randomBytes(8).toString("hex")}@example.com`;
    try {
      const ids: Record<string, string> = {};
      for (const device of ["laptop", "phone", "tablet"]) {
        const s = await client.create({ device: enc(device), secret: enc("not listed") }, { principal });
        created.push(s.id);
        assert.equal(s.id.length, 55);
        assert.equal(s.principal, principal);
        ids[device] = s.id;
        await sleep(50); // distinct activity times: the list is newest activity first
      }

      // Two pages of 2 and 1, newest activity first (the last created first).
      const first = await client.listSessions(principal, { pageSize: 2, displayAttributes: ["device"] });
      assert.equal(first.sessions.length, 2);
      assert.notEqual(first.nextPageToken, "");
      const second = await client.listSessions(principal, {
        pageSize: 2,
        pageToken: first.nextPageToken,
        displayAttributes: ["device"],
      });
      assert.equal(second.sessions.length, 1);
      assert.equal(second.nextPageToken, "");
      const listed = [...first.sessions, ...second.sessions];
      assert.deepEqual(devices(listed), ["tablet", "phone", "laptop"]);
      for (let i = 1; i < listed.length; i++) {
        assert.ok(listed[i - 1].lastAccessedAt! >= listed[i].lastAccessedAt!, "newest activity first");
      }
      for (const info of listed) {
        assert.deepEqual(Object.keys(info.displayAttributes), ["device"]);
        assert.equal(info.version, 1n);
        assert.ok(info.createdAt && info.lastAccessedAt && info.expiresAt && info.expiresAt > info.createdAt);
      }
      const all: string[] = [];
      for await (const info of client.allSessions(principal, { pageSize: 2 })) all.push(info.handle);
      assert.deepEqual(all, listed.map((i) => i.handle));

      // A handle revokes, but is not an id: it cannot read the session.
      const handles = Object.fromEntries(listed.map((i) => [dec(i.displayAttributes.device)!, i.handle]));
      assert.equal(new Set(Object.values(handles)).size, 3);
      for (const handle of Object.values(handles)) {
        assert.notEqual(handle, "");
        assert.ok(!Object.values(ids).includes(handle));
        await rejectsWith(client.get(handle, { strong: true }), Code.InvalidArgument, Code.NotFound);
      }

      // Log out one device.
      assert.equal(await client.revokeSession(principal, handles.phone), 1);
      await assert.rejects(client.get(ids.phone, { strong: true }), SessionNotFoundError);

      // Log out everywhere else.
      assert.equal(await client.revokeSessions(principal, { exceptId: ids.laptop }), 1);
      await assert.rejects(client.get(ids.tablet, { strong: true }), SessionNotFoundError);
      assert.equal(dec((await client.get(ids.laptop, { strong: true })).attributes.device), "laptop");
      const left = await client.listSessions(principal, { displayAttributes: ["device"] });
      assert.deepEqual(devices(left.sessions), ["laptop"]);
      assert.equal(left.nextPageToken, "");

      // Bad input: a forged page token; an unknown principal has no sessions.
      await rejectsWith(client.listSessions(principal, { pageToken: "garbage" }), Code.InvalidArgument);
      const nobody = await client.listSessions(`nobody-${randomBytes(8).toString("hex")}@example.com`);
      assert.deepEqual(nobody, { sessions: [], nextPageToken: "" });

      // Login: Rotate an anonymous session to the principal.
      const anonymous = await client.create({ device: enc("desktop") });
      created.push(anonymous.id);
      assert.equal(anonymous.principal, "");
      const rotated = await client.rotate(anonymous.id, { principal });
      created.push(rotated.id);
      assert.equal(rotated.id.length, 55);
      assert.match(rotated.id, idFormat);
      assert.notEqual(rotated.id, anonymous.id);
      assert.equal(rotated.principal, principal);
      assert.equal(rotated.version, anonymous.version + 1n);
      assert.equal(dec(rotated.attributes.device), "desktop");
      await assert.rejects(client.get(anonymous.id, { strong: true }), SessionNotFoundError);
      assert.equal((await client.get(rotated.id, { strong: true })).principal, principal);
      const now = await client.listSessions(principal, { displayAttributes: ["device"] });
      assert.deepEqual(devices(now.sessions).sort(), ["desktop", "laptop"]);
    } finally {
      await client.revokeSessions(principal).catch(() => undefined);
    }
  });
});
