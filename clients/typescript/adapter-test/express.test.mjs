// The express-session store from the INSTALLED package (`npm pack` tarball installed into a clean
// directory by clients/adapters-stage.sh), the way Express apps use it: a real Express app with
// express-session, driven over HTTP with a cookie jar, against a running service
// (SESSION_SERVICE_ADDR).
import { execFileSync } from "node:child_process";
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import express from "express";
import session from "express-session";
import { ValkeySessionStore, BASE_KEY } from "valkey-sessions-client/express";
import { SessionClient } from "valkey-sessions-client";

const addr = process.env.SESSION_SERVICE_ADDR;
if (!addr) throw new Error("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions");
const service = new SessionClient(addr);
const servers = [];

function app(store, { maxAge = 30 * 60_000 } = {}) {
  const a = express();
  a.use(session({ store, secret: "test-secret", resave: false, saveUninitialized: false, cookie: { maxAge } }));
  const page = (req) => `user=${req.session.user ?? "-"} items=${(req.session.items ?? []).join(",")}`;
  a.get("/", (req, res) => res.send(page(req)));
  a.post("/items/:item", async (req, res) => {
    const items = [...(req.session.items ?? [])];
    await new Promise((r) => setTimeout(r, Number(req.query.delay_ms ?? 0)));
    items.push(req.params.item);
    req.session.items = items;
    res.send(items.join(","));
  });
  a.post("/login/:user", (req, res, next) => {
    const keep = { items: req.session.items };
    req.session.regenerate((err) => {
      if (err) return next(err);
      Object.assign(req.session, keep, { user: req.params.user });
      res.send(req.params.user);
    });
  });
  a.post("/logout", (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.send("bye"))));
  // A BigInt: JSON cannot carry it. express-session itself JSON-hashes the session (in save and
  // in res.end) before any store runs, so the app must catch the TypeError where it saves; left
  // in the session, express-session's res.end throws and the response never completes.
  a.post("/unserializable", (req, res) => {
    req.session.big = 10n;
    try {
      req.session.save(() => res.send("stored"));
    } catch (err) {
      delete req.session.big;
      res.status(500).send(`error: ${err.message}`);
    }
  });
  // Saves before answering, so a refused write reaches the error handler (express-session's own
  // save at res.end comes after the status was sent).
  a.post("/saved/items/:item", (req, res, next) => {
    req.session.items = [...(req.session.items ?? []), req.params.item];
    req.session.save((err) => (err ? next(err) : res.send(req.session.items.join(","))));
  });
  // eslint-disable-next-line no-unused-vars
  a.use((err, req, res, _next) => res.status(err.status ?? 500).send(`error: ${err.message}`));
  return new Promise((resolve) => {
    const s = a.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${s.address().port}`));
    servers.push(s);
  });
}

class Browser {
  constructor(base) {
    this.base = base;
    this.cookie = "";
  }
  async req(method, path, cookie = this.cookie) {
    const r = await fetch(this.base + path, { method, headers: cookie ? { cookie } : {} });
    const set = r.headers.get("set-cookie");
    if (set && cookie === this.cookie) this.cookie = set.split(";")[0];
    return { status: r.status, body: await r.text(), setCookie: set };
  }
  get(path, cookie) {
    return this.req("GET", path, cookie);
  }
  post(path, cookie) {
    return this.req("POST", path, cookie);
  }
  get sid() {
    // connect.sid=s%3A<id>.<signature>
    const v = decodeURIComponent(this.cookie.split("=")[1] ?? "");
    return v.slice(2, v.lastIndexOf("."));
  }
}

let base;
before(async () => {
  base = await app(new ValkeySessionStore({ address: addr }));
});
after(() => servers.forEach((s) => s.close()));

test("a session survives requests; its cookie id is the service id", async () => {
  const b = new Browser(base);
  assert.equal((await b.get("/")).body, "user=- items=");
  assert.equal(b.cookie, "", "an untouched session sets no cookie (saveUninitialized: false)");
  await b.post("/items/apple");
  await b.post("/items/pear");
  assert.equal((await b.get("/")).body, "user=- items=apple,pear");
  const s = await service.get(b.sid, { strong: true });
  assert.equal(new TextDecoder().decode(s.attributes.items), '["apple","pear"]');
  assert.ok(!(BASE_KEY in s.attributes), "the base is never stored");
  assert.ok(s.idleTimeoutMs > 29 * 60_000 && s.idleTimeoutMs <= 30 * 60_000, `idle ${s.idleTimeoutMs}`);
});

test("a session expires after its idle timeout", async () => {
  const short = await app(new ValkeySessionStore({ address: addr }), { maxAge: 2000 });
  const b = new Browser(short);
  await b.post("/items/apple");
  assert.equal((await b.get("/")).body, "user=- items=apple");
  const old = b.cookie;
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal((await b.get("/", old)).body, "user=- items=", "the cookie names a session that has ended");
});

test("logout destroys the session; login gives a new id and the old cookie no longer works", async () => {
  const b = new Browser(base);
  await b.post("/items/apple");
  const before = b.cookie;
  const beforeSid = b.sid;
  assert.equal((await b.post("/login/ada")).body, "ada");
  assert.notEqual(b.cookie, before);
  assert.equal((await b.get("/")).body, "user=ada items=apple");
  assert.equal((await b.get("/", before)).body, "user=- items=", "old cookie");
  await assert.rejects(service.get(beforeSid, { strong: true }), { name: "SessionNotFoundError" });
  const afterSid = b.sid;
  assert.equal((await b.post("/logout")).body, "bye");
  await assert.rejects(service.get(afterSid, { strong: true }), { name: "SessionNotFoundError" });
  assert.equal((await b.get("/")).body, "user=- items=");
});

test("two concurrent requests each adding an item keep both", async () => {
  const b = new Browser(base);
  await b.post("/items/first");
  for (let round = 0; round < 3; round++) {
    const [r1, r2] = await Promise.all([b.post(`/items/a${round}?delay_ms=300`), b.post(`/items/b${round}?delay_ms=300`)]);
    assert.deepEqual([r1.status, r2.status], [200, 200], `${r1.body} ${r2.body}`);
    const page = (await b.get("/")).body;
    assert.ok(page.includes(`a${round}`) && page.includes(`b${round}`), page);
  }
  assert.equal((await b.get("/")).body.split(",").length, 7, "first + 6 items, none lost");
});

test("a bad cookie starts a new session without an error page", async () => {
  const b = new Browser(base);
  for (const cookie of ["connect.sid=garbage", "connect.sid=s%3Anot-an-id.forgedsig", "connect.sid=", `connect.sid=${"A".repeat(4000)}`]) {
    const r = await b.get("/", cookie);
    assert.equal(r.status, 200, cookie);
    assert.equal(r.body, "user=- items=");
  }
});

test("a session deleted by another device between two requests is gone", async () => {
  const b = new Browser(base);
  await b.post("/login/ada");
  await b.post("/items/apple");
  const sid = b.sid;
  assert.equal(await service.delete(sid), true);
  const r = await b.get("/");
  assert.equal(r.status, 200);
  assert.equal(r.body, "user=- items=");
  await b.post("/items/pear");
  await assert.rejects(service.get(sid, { strong: true }), { name: "SessionNotFoundError" }, "not resurrected");
});

test("an attribute JSON cannot carry is a clear error and stores nothing", async () => {
  const b = new Browser(base);
  await b.post("/items/apple");
  const r = await b.post("/unserializable");
  assert.equal(r.status, 500);
  assert.match(r.body, /BigInt/);
  assert.equal((await b.get("/")).body, "user=- items=apple");
});

test("the service unavailable is an error, never a new empty session", async () => {
  const down = await app(new ValkeySessionStore({ address: "127.0.0.1:1", timeoutMs: 500 }));
  const b = new Browser(base);
  await b.post("/items/apple");
  const r = await fetch(down + "/", { headers: { cookie: b.cookie } });
  assert.equal(r.status, 500);
  assert.equal(r.headers.get("set-cookie"), null, "no new session replaces the user's");
  assert.match(await r.text(), /error/);
  // A brand-new session: express-session starts the response (headers, status 200) before it
  // calls the store at res.end (its design, the same with connect-redis), so the failed save
  // reaches next(err) after the status was sent. Nothing is stored, and the cookie it set leads
  // to the error path, not to an empty session.
  const w = await fetch(down + "/items/x", { method: "POST" });
  await w.text();
  const cookie = (w.headers.get("set-cookie") ?? "").split(";")[0];
  assert.ok(cookie.startsWith("connect.sid="), cookie);
  const next = await fetch(down + "/", { headers: { cookie } });
  assert.equal(next.status, 500);
});

test("storage full is a 503 with a clear message; the cookie and the session stay", async () => {
  const port = process.env.SESSION_SERVICE_VALKEY_PORT;
  assert.ok(port, "with-service.sh sets SESSION_SERVICE_VALKEY_PORT");
  const valkey = (...args) => execFileSync("valkey-cli", ["-p", port, ...args], { encoding: "utf8" });
  const b = new Browser(base);
  assert.equal((await b.post("/saved/items/apple")).body, "apple");
  const cookie = b.cookie;
  valkey("CONFIG", "SET", "maxmemory-policy", "noeviction");
  valkey("CONFIG", "SET", "maxmemory", "1");
  try {
    assert.equal((await b.get("/")).body, "user=- items=apple", "reads keep working");
    const r = await b.post("/saved/items/pear");
    assert.equal(r.status, 503);
    assert.match(r.body, /session storage is full: your change was not saved and your session is intact/);
    // express-session may resend the same cookie (a new expiry for a modified session).
    const sent = r.setCookie === null ? cookie : r.setCookie.split(";")[0];
    assert.equal(sent, cookie, "the cookie is neither replaced nor cleared");
  } finally {
    valkey("CONFIG", "SET", "maxmemory", "0");
  }
  assert.equal(b.cookie, cookie);
  assert.equal((await b.get("/")).body, "user=- items=apple");
  assert.equal((await b.post("/saved/items/pear")).body, "apple,pear");
});

test("a bearer token needs TLS unless the network encrypts", () => {
  assert.throws(() => new ValkeySessionStore({ address: addr, token: "a-secret-token" }), /needs TLS/);
  new ValkeySessionStore({ address: addr, token: "a-secret-token", allowTokenOverPlaintext: true });
});

test("express-session's Store contract: get/set/destroy/touch callbacks", async () => {
  const store = new ValkeySessionStore({ address: addr });
  const sid = ValkeySessionStore.genid();
  assert.equal(sid.length, 43);
  const call = (fn, ...args) => new Promise((res, rej) => fn.call(store, ...args, (err, v) => (err ? rej(err) : res(v))));
  assert.equal(await call(store.get, sid), null);
  const sess = { cookie: { originalMaxAge: 60000, maxAge: 60000, httpOnly: true, path: "/" }, n: 1 };
  await call(store.set, sid, sess);
  assert.equal((await call(store.get, sid)).n, 1);
  sess.n = 2;
  await call(store.set, sid, sess); // a second save in the same request
  assert.equal((await call(store.get, sid)).n, 2);
  await call(store.touch, sid, sess);
  await call(store.destroy, sid);
  assert.equal(await call(store.get, sid), null);
  await call(store.destroy, sid); // idempotent
  await call(store.destroy, "not an id");
  // The store's own check: a value JSON cannot carry is a TypeError naming the key, nothing stored.
  await assert.rejects(call(store.set, sid, { ...sess, big: 1n }), {
    name: "TypeError",
    message: /session key "big" cannot be serialized to JSON/,
  });
  assert.equal(await call(store.get, sid), null);
});
