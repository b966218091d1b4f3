// The Express app of the express-session row of the adapter benchmark
// (bench/adapters/run.py): one program, two stores, installed by run.py into a scratch directory
// with the `npm pack` tarball of clients/typescript, express, express-session, connect-redis and
// redis (versions pinned in run.py).
//
//   node app.mjs valkey-sessions 127.0.0.1:50051
//   node app.mjs connect-redis redis://127.0.0.1:6379
//
// GET /init writes a small session (a user object and a 10-item cart), GET /read reads it and
// renders a line of HTML ("read the session, render"). Listens on a free loopback port and
// prints it on stdout.
import express from "express";
import session from "express-session";

const [kind, url] = process.argv.slice(2);
let store;
if (kind === "valkey-sessions") {
  const { ValkeySessionStore } = await import("valkey-sessions-client/express");
  store = new ValkeySessionStore({ address: url });
} else if (kind === "connect-redis") {
  // connect-redis's README setup: one node-redis client, connected before use.
  const { RedisStore } = await import("connect-redis");
  const { createClient } = await import("redis");
  const client = createClient({ url });
  await client.connect();
  store = new RedisStore({ client });
} else {
  throw new Error(`unknown store ${kind}`);
}

const app = express();
app.use(session({ store, secret: "bench-secret", resave: false, saveUninitialized: false, cookie: { maxAge: 30 * 60_000 } }));
app.get("/init", (req, res) => {
  req.session.user = { name: "bench", roles: ["reader"] };
  req.session.cart = [...Array(10).keys()];
  res.send("ok");
});
app.get("/read", (req, res) => {
  const user = req.session.user ?? {};
  const cart = req.session.cart ?? [];
  res.send(`<html><body><p>${user.name ?? "-"}</p><p>${cart.length} items</p></body></html>`);
});
// eslint-disable-next-line no-unused-vars
app.use((err, req, res, _next) => res.status(500).send(`error: ${err.message}`));
const server = app.listen(0, "127.0.0.1", () => console.log(server.address().port));
