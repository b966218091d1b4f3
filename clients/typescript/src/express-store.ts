// An express-session `Store` on valkey-sessions (the interface connect-redis implements):
//
//   app.use(session({ store: new ValkeySessionStore({ address: "sessions.internal:50051" }), secret, resave: false, saveUninitialized: false }));
//
// How it maps (docs/adapters.md):
// * Ids: express-session's `genid` (default: 24 random bytes, 32 URL-safe base64 characters) is
//   proposed to the service at Create (`proposed_id`), so the cookie's id is the service's id and
//   a request costs one Get (plus one Put when the session changed). The service writes it with
//   NX: it never overwrites a session. `ValkeySessionStore.genid` (32 bytes) may be passed as
//   `genid` for 256-bit ids.
// * Data: each top-level key of the session (including `cookie`) is one attribute holding its
//   JSON, so the other adapters (axum, Django, gorilla) read the same sessions.
// * Expiry: the cookie's remaining max-age (or `ttlMs` when the cookie has none) is the session's
//   idle timeout; the service refreshes it on reads, so `touch` costs nothing.
// * Concurrency: `get` keeps the version and values it read (under `__valkey_sessions_base`, a
//   reserved key never stored); `set` sends only changed keys with `expected_version`, and on a
//   conflict re-reads, merges (arrays and objects item by item; `cookie` from this request) and
//   retries: two concurrent requests that each add an item keep both. Both setting one scalar to
//   different values is an error, never a silent loss.
// * Login: `req.session.regenerate()` is express-session's cycle: destroy (Delete) the old id,
//   a new `genid`, Create. The old cookie finds nothing afterwards.
// * Faults: the service unreachable is an error passed to `next(err)` (Express answers 500),
//   never an empty session; a session deleted elsewhere reads as none (express-session starts a
//   new one) and a concurrent save does not resurrect it.
// * Storage full: a write Valkey refused for memory is a `StorageFullError` (status 503, a
//   message for the user); Express's error handling answers 503 and the cookie stays. express-
//   session saves at `res.end`, after the status is sent, so a route that must answer 503 calls
//   `req.session.save(cb)` before responding (as for a redirect after login).
import { randomBytes } from "node:crypto";
import session from "express-session";
import type { SessionData } from "express-session";
import { Code, type Transport } from "@connectrpc/connect";
import { SessionClient, SessionError, SessionNotFoundError, StorageFullError, VersionConflictError } from "./client.js";
import { createSessionTransport } from "./grpc-transport.js";

/** Reserved key holding what `get` read; never stored in the service. */
export const BASE_KEY = "__valkey_sessions_base";
const CONFLICT_RETRIES = 8;

export interface ValkeySessionStoreOptions {
  /** host:port (plaintext) or http(s):// URL of the service. */
  address?: string;
  /**
   * A bearer token: the caller identity, which decides the tenant the sessions live in. A
   * credential: refused with a plaintext (http) address unless `allowTokenOverPlaintext`.
   */
  token?: string;
  /** Send `token` over plaintext: only a loopback sidecar or a network that encrypts (a mesh). */
  allowTokenOverPlaintext?: boolean;
  /** PEM CA certificate(s) for an https:// address with a private CA. */
  ca?: string | Buffer;
  /** Idle timeout when the cookie has no max-age (default 1 day). */
  ttlMs?: number;
  /** Longest idle timeout sent (default 24 h, the service's default maximum). */
  maxIdleMs?: number;
  /** Per-call deadline (default 2000 ms). */
  timeoutMs?: number;
  /** An existing client (its transport, TLS and token) instead of the options above. */
  client?: SessionClient;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Base {
  v: string;
  d: Record<string, Json>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function transportFor(o: ValkeySessionStoreOptions): Transport {
  const baseUrl = /^https?:\/\//.test(o.address ?? "") ? o.address! : `http://${o.address ?? "127.0.0.1:50051"}`;
  if (o.token !== undefined && !baseUrl.startsWith("https://") && !o.allowTokenOverPlaintext) {
    throw new TypeError(
      "a bearer token needs TLS (an https:// address): it would travel in clear; set allowTokenOverPlaintext only where the network encrypts",
    );
  }
  return createSessionTransport({
    baseUrl,
    nodeOptions: o.ca === undefined ? undefined : { ca: o.ca },
    interceptors:
      o.token === undefined
        ? []
        : [
            (next) => async (req) => {
              req.header.set("authorization", `Bearer ${o.token}`);
              return next(req);
            },
          ],
  });
}

function equal(a: Json | undefined, b: Json | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

class Conflict extends Error {}

/** Three-way merge of one value changed concurrently (undefined = absent). */
export function merge(base: Json | undefined, theirs: Json | undefined, mine: Json | undefined): Json | undefined {
  if (equal(mine, base)) return theirs;
  if (equal(theirs, base) || equal(theirs, mine)) return mine;
  if (Array.isArray(theirs) && Array.isArray(mine)) {
    const b = Array.isArray(base) ? base : [];
    const has = (list: Json[], v: Json) => list.some((x) => equal(x, v));
    const out = theirs.filter((v) => !has(b, v) || has(mine, v));
    for (const v of mine) if (!has(b, v) && !has(out, v)) out.push(v);
    return out;
  }
  const isObj = (v: unknown): v is Record<string, Json> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObj(theirs) && isObj(mine)) {
    const b = isObj(base) ? base : {};
    const out: Record<string, Json> = {};
    for (const k of new Set([...Object.keys(b), ...Object.keys(theirs), ...Object.keys(mine)])) {
      const v = merge(b[k], theirs[k], mine[k]);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
  throw new Conflict();
}

export class ValkeySessionStore extends session.Store {
  readonly client: SessionClient;
  private readonly ttlMs: number;
  private readonly maxIdleMs: number;

  /** 32 random bytes as URL-safe base64 (43 characters): pass as express-session's `genid`. */
  static genid(): string {
    return randomBytes(32).toString("base64url");
  }

  constructor(options: ValkeySessionStoreOptions = {}) {
    super();
    this.client =
      options.client ??
      new SessionClient(options.address ?? "127.0.0.1:50051", {
        transport: transportFor(options),
        timeoutMs: options.timeoutMs ?? 2000,
      });
    this.ttlMs = options.ttlMs ?? 86_400_000;
    this.maxIdleMs = options.maxIdleMs ?? 86_400_000;
  }

  private idleMs(sess: SessionData): number {
    const c = sess.cookie as { expires?: Date | string | null; maxAge?: number | null } | undefined;
    let ms = this.ttlMs;
    if (c?.expires) ms = new Date(c.expires).getTime() - Date.now();
    else if (typeof c?.maxAge === "number") ms = c.maxAge;
    return Math.min(Math.max(Math.ceil(ms / 1000) * 1000, 1000), this.maxIdleMs);
  }

  private static decode(attributes: Record<string, Uint8Array>): Record<string, Json> {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(attributes)) {
      try {
        out[k] = JSON.parse(dec.decode(v));
      } catch {
        throw new SessionError(Code.DataLoss, `session attribute ${JSON.stringify(k)} is not JSON`);
      }
    }
    return out;
  }

  private static data(sess: SessionData): Record<string, Json> {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(sess)) {
      if (k === BASE_KEY || typeof v === "function" || v === undefined) continue;
      let text: string;
      try {
        text = JSON.stringify(v);
      } catch (err) {
        throw new TypeError(`session key ${JSON.stringify(k)} cannot be serialized to JSON: ${(err as Error).message}`);
      }
      out[k] = JSON.parse(text);
    }
    return out;
  }

  private async read(sid: string): Promise<{ version: bigint; data: Record<string, Json> } | null> {
    try {
      const s = await this.client.get(sid, { strong: true });
      return { version: s.version, data: ValkeySessionStore.decode(s.attributes) };
    } catch (err) {
      // Unknown, expired, deleted, or not an id the service accepts: no session.
      if (err instanceof SessionNotFoundError) return null;
      if (err instanceof SessionError && err.code === Code.InvalidArgument) return null;
      throw err;
    }
  }

  override get(sid: string, callback: (err: unknown, session?: SessionData | null) => void): void {
    this.read(sid).then(
      (found) => {
        if (found === null) return callback(null, null);
        const sess = { ...found.data } as Record<string, unknown>;
        sess.cookie ??= { originalMaxAge: null, expires: null, httpOnly: true, path: "/" };
        sess[BASE_KEY] = { v: found.version.toString(), d: found.data } satisfies Base;
        callback(null, sess as unknown as SessionData);
      },
      (err) => callback(err),
    );
  }

  override set(sid: string, sess: SessionData, callback?: (err?: unknown) => void): void {
    this.save(sid, sess).then(
      () => callback?.(),
      (err) => callback?.(err),
    );
  }

  private async save(sid: string, sess: SessionData): Promise<void> {
    const holder = sess as unknown as Record<string, unknown>;
    let target = ValkeySessionStore.data(sess);
    const idleTimeoutMs = this.idleMs(sess);
    let base = holder[BASE_KEY] as Base | undefined;
    if (base === undefined) {
      try {
        const attributes: Record<string, Uint8Array> = {};
        for (const [k, v] of Object.entries(target)) attributes[k] = enc.encode(JSON.stringify(v));
        const created = await this.client.create(attributes, { idleTimeoutMs, proposedId: sid });
        holder[BASE_KEY] = { v: created.version.toString(), d: target } satisfies Base;
        return;
      } catch (err) {
        if (!(err instanceof SessionError && err.code === Code.AlreadyExists)) throw err;
        const current = await this.read(sid); // saved before in this request
        if (current === null) return;
        base = { v: current.version.toString(), d: current.data };
      }
    }
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      const set: Record<string, Uint8Array> = {};
      for (const [k, v] of Object.entries(target)) if (!equal(base.d[k], v)) set[k] = enc.encode(JSON.stringify(v));
      const remove = Object.keys(base.d).filter((k) => !(k in target));
      try {
        const put = await this.client.put(sid, { set, remove, expectedVersion: BigInt(base.v), idleTimeoutMs });
        holder[BASE_KEY] = { v: put.version.toString(), d: target } satisfies Base;
        return;
      } catch (err) {
        // Deleted meanwhile (logout elsewhere, revoked, expired): not resurrected.
        if (err instanceof SessionNotFoundError) return;
        if (!(err instanceof VersionConflictError)) throw err;
      }
      const current = await this.read(sid);
      if (current === null) return;
      const merged: Record<string, Json> = {};
      for (const k of new Set([...Object.keys(base.d), ...Object.keys(current.data), ...Object.keys(target)])) {
        let v: Json | undefined;
        if (k === "cookie") v = target[k] ?? current.data[k];
        else {
          try {
            v = merge(base.d[k], current.data[k], target[k]);
          } catch (e) {
            if (e instanceof Conflict) {
              throw new SessionError(
                Code.Aborted,
                `concurrent requests set session key ${JSON.stringify(k)} to different values; this request's change was not saved`,
              );
            }
            throw e;
          }
        }
        if (v !== undefined) merged[k] = v;
      }
      target = merged;
      base = { v: current.version.toString(), d: current.data };
    }
    throw new SessionError(Code.Aborted, `still conflicting after ${CONFLICT_RETRIES} merges`);
  }

  override destroy(sid: string, callback?: (err?: unknown) => void): void {
    this.client.delete(sid).then(
      () => callback?.(),
      (err) => (err instanceof SessionError && err.code === Code.InvalidArgument ? callback?.() : callback?.(err)),
    );
  }

  /** The service refreshes the idle timeout on every read (`get`): nothing more to do. */
  override touch(_sid: string, _sess: SessionData, callback?: () => void): void {
    callback?.();
  }
}

export { StorageFullError };
export default ValkeySessionStore;
