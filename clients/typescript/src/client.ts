// A small typed wrapper over the generated session.v1 stubs (src/gen/, from proto/).
//
// The generated `SessionService` descriptor is usable directly with `createClient`; this class
// only adds the transport setup, plain TypeScript types and errors a caller can `instanceof`.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import {
  Consistency,
  CreateRequestSchema,
  ListSessionsRequestSchema,
  PutRequestSchema,
  RevokeSessionsRequestSchema,
  RotateRequestSchema,
  SessionService,
  type Session as SessionMessage,
  type SessionInfo as SessionInfoMessage,
} from "./gen/session/v1/session_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "./gen/grpc/health/v1/health_pb.js";
import { createSessionTransport } from "./grpc-transport.js";

export { Code, ConnectError, Consistency, HealthCheckResponse_ServingStatus as ServingStatus };
export { createSessionTransport, type SessionTransportOptions } from "./grpc-transport.js";

/** A session as the service returns it. Times are `Date`s, durations milliseconds. */
export interface Session {
  /** Server-generated id (55 chars; older ones 43). A bearer secret: do not log it. */
  id: string;
  /** Application data; values are opaque bytes. */
  attributes: Record<string, Uint8Array>;
  /** The authenticated user; "" means anonymous. */
  principal: string;
  createdAt?: Date;
  lastAccessedAt?: Date;
  expiresAt?: Date;
  idleTimeoutMs?: number;
  absoluteExpiresAt?: Date;
  /** Incremented by every successful put, starting at 1. */
  version: bigint;
}

/** One session of a principal as `listSessions` returns it: metadata and a handle, never the id. */
export interface SessionInfo {
  /** Revokes the session (`revokeSession`); cannot read or write it. */
  handle: string;
  createdAt?: Date;
  lastAccessedAt?: Date;
  expiresAt?: Date;
  version: bigint;
  /** The requested display attributes the session has. */
  displayAttributes: Record<string, Uint8Array>;
}

/** One page of `listSessions`, newest activity first. */
export interface SessionPage {
  sessions: SessionInfo[];
  /** Pass as `pageToken` for the next page; "" on the last page. */
  nextPageToken: string;
}

/** Any error the service returned: `code` is the gRPC status code. */
export class SessionError extends Error {
  constructor(
    readonly code: Code,
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = "SessionError";
  }
}

/** NOT_FOUND: the session does not exist, expired or was deleted. */
export class SessionNotFoundError extends SessionError {
  constructor(message: string, cause?: unknown) {
    super(Code.NotFound, message, cause);
    this.name = "SessionNotFoundError";
  }
}

/** ABORTED: `expectedVersion` was stale. Re-read the session and retry. */
export class VersionConflictError extends SessionError {
  /** The stored version, parsed from the status message when it carries one. */
  readonly currentVersion?: bigint;
  constructor(message: string, cause?: unknown) {
    super(Code.Aborted, message, cause);
    this.name = "VersionConflictError";
    const m = /current version is (\d+)/.exec(message);
    if (m) this.currentVersion = BigInt(m[1]);
  }
}

/**
 * RESOURCE_EXHAUSTED with reason VALKEY_OUT_OF_MEMORY: Valkey is at its memory limit and refused
 * the write; nothing was written and reads keep working. `status` (503) and `expose` let
 * Express (and http-errors aware handlers) answer 503 with the message.
 */
export class StorageFullError extends SessionError {
  readonly status = 503;
  readonly statusCode = 503;
  readonly expose = true;
  constructor(message: string, cause?: unknown) {
    super(Code.ResourceExhausted, `session storage is full: your change was not saved and your session is intact (${message})`, cause);
    this.name = "StorageFullError";
  }
}

/** The ErrorInfo domain of the service's reasons. */
const ERROR_DOMAIN = "valkey-sessions";

/** The `reason` of the google.rpc.ErrorInfo detail the service attached, if any. */
function errorReason(err: ConnectError): string | undefined {
  for (const detail of err.details) {
    if (!("type" in detail) || detail.type !== "google.rpc.ErrorInfo") continue;
    // ErrorInfo is { string reason = 1; string domain = 2; map metadata = 3; }
    const r = new BinaryReader(detail.value);
    let reason: string | undefined;
    let domain: string | undefined;
    while (r.pos < r.len) {
      const [field, wire] = r.tag();
      if (field === 1 && wire === WireType.LengthDelimited) reason = r.string();
      else if (field === 2 && wire === WireType.LengthDelimited) domain = r.string();
      else r.skip(wire);
    }
    if (domain === ERROR_DOMAIN) return reason;
  }
  return undefined;
}

function toError(err: unknown): unknown {
  if (!(err instanceof ConnectError)) return err;
  switch (err.code) {
    case Code.NotFound:
      return new SessionNotFoundError(err.rawMessage, err);
    case Code.Aborted:
      return new VersionConflictError(err.rawMessage, err);
    case Code.ResourceExhausted:
      if (errorReason(err) === "VALKEY_OUT_OF_MEMORY") return new StorageFullError(err.rawMessage, err);
      return new SessionError(err.code, err.rawMessage, err);
    default:
      return new SessionError(err.code, err.rawMessage, err);
  }
}

function date(ts: Timestamp | undefined): Date | undefined {
  return ts === undefined ? undefined : timestampDate(ts);
}

function fromMessage(s: SessionMessage | undefined): Session {
  if (s === undefined) throw new SessionError(Code.Internal, "response without a session");
  return {
    id: s.id,
    attributes: { ...s.attributes },
    principal: s.principal,
    createdAt: date(s.createdAt),
    lastAccessedAt: date(s.lastAccessedAt),
    expiresAt: date(s.expiresAt),
    idleTimeoutMs:
      s.idleTimeout === undefined
        ? undefined
        : Number(s.idleTimeout.seconds) * 1000 + Math.floor(s.idleTimeout.nanos / 1e6),
    absoluteExpiresAt: date(s.absoluteExpiresAt),
    version: s.version,
  };
}

function fromInfo(s: SessionInfoMessage): SessionInfo {
  return {
    handle: s.handle,
    createdAt: date(s.createdAt),
    lastAccessedAt: date(s.lastAccessedAt),
    expiresAt: date(s.expiresAt),
    version: s.version,
    displayAttributes: { ...s.displayAttributes },
  };
}

export interface CreateOptions {
  principal?: string;
  /** Inactivity timeout; the server default when absent. */
  idleTimeoutMs?: number;
  /** Lifetime cap from creation; the server default when absent. */
  absoluteTimeoutMs?: number;
  /**
   * A caller-chosen id (22..128 URL-safe base64 characters from a CSPRNG) instead of a
   * server-generated one; ALREADY_EXISTS if taken (never overwrites). Not with `principal`.
   */
  proposedId?: string;
}

export interface PutOptions {
  /** Attributes to add or replace. */
  set?: Record<string, Uint8Array>;
  /** Attribute names to remove. */
  remove?: string[];
  /** Apply only if the stored version equals this; VersionConflictError otherwise. */
  expectedVersion?: bigint;
  /** Replace the session's inactivity timeout. */
  idleTimeoutMs?: number;
}

export interface RotateOptions {
  /** Rotate only if the stored version equals this; VersionConflictError otherwise. */
  expectedVersion?: bigint;
  /** The session's principal after the rotation: the login step. */
  principal?: string;
}

export interface ListSessionsOptions {
  /** Sessions per page, 1..100; 0 or absent means the server default (20). */
  pageSize?: number;
  /** `nextPageToken` of the previous page; absent for the first page. */
  pageToken?: string;
  /** Attribute names to return with each session (e.g. a device label), at most 8. */
  displayAttributes?: string[];
}

export interface SessionClientOptions {
  /** Per-call deadline in milliseconds (default 5000). */
  timeoutMs?: number;
  /**
   * Use this transport instead of a plaintext gRPC (HTTP/2) one to `address` (`createSessionTransport`,
   * or any connect `Transport`, e.g. connect-node's `createGrpcTransport`).
   */
  transport?: Transport;
}

/** Client for session.v1.SessionService plus grpc.health.v1.Health on the same server. */
export class SessionClient {
  readonly sessions: Client<typeof SessionService>;
  readonly health: Client<typeof Health>;
  private readonly timeoutMs: number;

  /** `address` is host:port (plaintext) or a full http(s):// URL. */
  constructor(address: string, options: SessionClientOptions = {}) {
    const baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
    const transport = options.transport ?? createSessionTransport({ baseUrl });
    this.sessions = createClient(SessionService, transport);
    this.health = createClient(Health, transport);
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  async create(attributes: Record<string, Uint8Array> = {}, options: CreateOptions = {}): Promise<Session> {
    const req = create(CreateRequestSchema, {
      attributes,
      principal: options.principal ?? "",
      idleTimeout: options.idleTimeoutMs === undefined ? undefined : durationFromMs(options.idleTimeoutMs),
      absoluteTimeout:
        options.absoluteTimeoutMs === undefined ? undefined : durationFromMs(options.absoluteTimeoutMs),
      proposedId: options.proposedId,
    });
    try {
      const res = await this.sessions.create(req, { timeoutMs: this.timeoutMs });
      return fromMessage(res.session);
    } catch (err) {
      throw toError(err);
    }
  }

  /** Reads a session; `strong` forces a read from the primary. Throws SessionNotFoundError. */
  async get(id: string, { strong = false }: { strong?: boolean } = {}): Promise<Session> {
    try {
      const res = await this.sessions.get(
        { id, consistency: strong ? Consistency.STRONG : Consistency.EVENTUAL },
        { timeoutMs: this.timeoutMs },
      );
      return fromMessage(res.session);
    } catch (err) {
      throw toError(err);
    }
  }

  /** Applies one atomic delta. Throws SessionNotFoundError or VersionConflictError. */
  async put(id: string, { set = {}, remove = [], expectedVersion, idleTimeoutMs }: PutOptions): Promise<Session> {
    const req = create(PutRequestSchema, {
      id,
      set,
      remove,
      expectedVersion,
      idleTimeout: idleTimeoutMs === undefined ? undefined : durationFromMs(idleTimeoutMs),
    });
    try {
      const res = await this.sessions.put(req, { timeoutMs: this.timeoutMs });
      return fromMessage(res.session);
    } catch (err) {
      throw toError(err);
    }
  }

  /** Deletes a session; resolves to whether a live session was removed. */
  async delete(id: string): Promise<boolean> {
    try {
      const res = await this.sessions.delete({ id }, { timeoutMs: this.timeoutMs });
      return res.existed;
    } catch (err) {
      throw toError(err);
    }
  }

  /**
   * Moves the session to a new id (the old one is NOT_FOUND afterwards) and resolves to it. With
   * `principal` it is the login step. Throws SessionNotFoundError or VersionConflictError.
   */
  async rotate(id: string, { expectedVersion, principal }: RotateOptions = {}): Promise<Session> {
    const req = create(RotateRequestSchema, { id, expectedVersion, principal });
    try {
      const res = await this.sessions.rotate(req, { timeoutMs: this.timeoutMs });
      return fromMessage(res.session);
    } catch (err) {
      throw toError(err);
    }
  }

  /**
   * One page of the principal's live sessions, newest activity first. An unknown principal has
   * none; a forged or stale `pageToken` throws SessionError (INVALID_ARGUMENT).
   */
  async listSessions(principal: string, options: ListSessionsOptions = {}): Promise<SessionPage> {
    const req = create(ListSessionsRequestSchema, {
      principal,
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
      displayAttributes: options.displayAttributes ?? [],
    });
    try {
      const res = await this.sessions.listSessions(req, { timeoutMs: this.timeoutMs });
      return { sessions: res.sessions.map(fromInfo), nextPageToken: res.nextPageToken };
    } catch (err) {
      throw toError(err);
    }
  }

  /** All of the principal's live sessions, page after page: `for await (const s of ...)`. */
  async *allSessions(
    principal: string,
    options: Omit<ListSessionsOptions, "pageToken"> = {},
  ): AsyncGenerator<SessionInfo, void, undefined> {
    let pageToken = "";
    do {
      const page = await this.listSessions(principal, { ...options, pageToken });
      yield* page.sessions;
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
  }

  /**
   * Ends one session of `principal` by its handle from `listSessions`; resolves to 1. Throws
   * SessionNotFoundError for a handle that is not (or no longer) one of its sessions.
   */
  async revokeSession(principal: string, handle: string): Promise<number> {
    try {
      const res = await this.sessions.revokeSession({ principal, handle }, { timeoutMs: this.timeoutMs });
      return res.revoked;
    } catch (err) {
      throw toError(err);
    }
  }

  /** Ends every session of `principal`, or every one but `exceptId`; resolves to how many. */
  async revokeSessions(principal: string, { exceptId }: { exceptId?: string } = {}): Promise<number> {
    const req = create(RevokeSessionsRequestSchema, { principal, exceptId });
    try {
      const res = await this.sessions.revokeSessions(req, { timeoutMs: this.timeoutMs });
      return res.revoked;
    } catch (err) {
      throw toError(err);
    }
  }

  /** grpc.health.v1 Check: "" is the server as a whole. */
  async check(service = ""): Promise<HealthCheckResponse_ServingStatus> {
    try {
      const res = await this.health.check({ service }, { timeoutMs: this.timeoutMs });
      return res.status;
    } catch (err) {
      throw toError(err);
    }
  }
}
