// A connect `Transport` for the gRPC protocol whose unary calls go straight to node:http2.
//
// Why: connect-node's `createGrpcTransport` runs every unary call through its generic streaming
// machinery: async-generator pipelines (down-levelled, several promises per stage) to frame,
// serialize and parse one message, an AbortController linked to a deadline controller and aborted
// on every completion (a DOMException with a stack trace), a "sentinel completed early"
// ConnectError created on every completion, and web `Headers` copies of each header block. On
// Node 20 that is ~300 µs of CPU per unary call at 16 in flight, where node:http2 plus
// protobuf-es for the same Get is ~75 µs (docs/benchmarks.md, "Framework adapters"). Our service
// is all unary (Health.Watch aside), so unary calls here do only what a gRPC unary call needs:
// one HTTP/2 stream from connect-node's `Http2SessionManager` (connection reuse, reconnects,
// GOAWAY, keepalive PINGs: the same as before), one length-prefixed protobuf-es message each way,
// status from the trailers through connect's own helpers (so errors are the same `ConnectError`s,
// details and metadata included). Interceptors, `CallOptions` (signal, timeoutMs, headers,
// contextValues) and the `Transport` contract are kept; streaming calls are delegated to
// connect-node's gRPC transport on the same HTTP/2 session.
import * as http2 from "node:http2";
import { create, fromBinary, isMessage, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type ContextValues,
  type Interceptor,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createMethodUrl, getAbortSignalReason } from "@connectrpc/connect/protocol";
import {
  contentTypeProto,
  findTrailerError,
  headerGrpcStatus,
  requestHeader,
  validateResponse,
} from "@connectrpc/connect/protocol-grpc";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

export interface SessionTransportOptions {
  /** http://host:port (plaintext HTTP/2) or https://host:port. */
  baseUrl: string;
  /** connect interceptors, applied to unary and streaming calls. */
  interceptors?: Interceptor[];
  /** Options for `http2.connect` (e.g. `ca` for a private CA). */
  nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
  /** Deadline for calls that set none; none when absent. */
  defaultTimeoutMs?: number;
  /** Keepalive, as in connect-node (defaults there: PING after 5 min without data, 15 s timeout). */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  pingIdleConnection?: boolean;
  idleConnectionTimeoutMs?: number;
  /** Largest response message accepted (default 4 MiB, as gRPC's default). */
  readMaxBytes?: number;
}

const {
  NGHTTP2_NO_ERROR,
  NGHTTP2_STREAM_CLOSED,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_CANCEL,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INADEQUATE_SECURITY,
  NGHTTP2_HTTP_1_1_REQUIRED,
} = http2.constants;

/** Node errors to gRPC codes, as connect-node maps them. */
function fromNodeError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  let code = Code.Internal;
  const codes: string[] = [];
  for (let e: unknown = reason, i = 0; e instanceof Error && i < 8; e = (e as { cause?: unknown }).cause, i++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === "string") codes.push(c);
  }
  if (codes.some((c) => ["ERR_STREAM_WRITE_AFTER_END", "ERR_STREAM_DESTROYED", "ERR_HTTP2_INVALID_STREAM", "ECONNRESET"].includes(c))) {
    code = Code.Aborted;
  } else if (codes.some((c) => ["ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED"].includes(c))) {
    code = Code.Unavailable;
  }
  const ce = ConnectError.from(reason, code);
  if (ce !== reason) ce.cause = reason;
  return ce;
}

/** RST_STREAM codes to gRPC codes (PROTOCOL-HTTP2.md), as connect-node maps them. */
function fromResetCode(rstCode: number): ConnectError | undefined {
  if (rstCode === NGHTTP2_NO_ERROR || rstCode === NGHTTP2_STREAM_CLOSED || rstCode > NGHTTP2_HTTP_1_1_REQUIRED) return undefined;
  const code =
    rstCode === NGHTTP2_REFUSED_STREAM
      ? Code.Unavailable
      : rstCode === NGHTTP2_CANCEL
        ? Code.Canceled
        : rstCode === NGHTTP2_ENHANCE_YOUR_CALM
          ? Code.ResourceExhausted
          : rstCode === NGHTTP2_INADEQUATE_SECURITY || rstCode === NGHTTP2_HTTP_1_1_REQUIRED
            ? Code.PermissionDenied
            : Code.Internal;
  return new ConnectError(`http/2 stream closed with error code 0x${rstCode.toString(16)}`, code);
}

// What connect's `requestHeader` sets, so the fast path sends the same headers.
const userAgent = requestHeader(true, undefined, undefined).get("user-agent") ?? "connect-es";

function toHeaders(h: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* ":" pseudo-header */) continue;
    const v = h[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.append(k, x);
    else out.set(k, v);
  }
  return out;
}

/** The gRPC protocol over node:http2; see the file comment. */
export function createSessionTransport(options: SessionTransportOptions): Transport {
  const baseUrl = options.baseUrl;
  const sessionManager = new Http2SessionManager(
    baseUrl,
    {
      pingIntervalMs: options.pingIntervalMs,
      pingTimeoutMs: options.pingTimeoutMs,
      pingIdleConnection: options.pingIdleConnection,
      idleConnectionTimeoutMs: options.idleConnectionTimeoutMs,
    },
    options.nodeOptions,
  );
  const streaming = createGrpcTransport({
    baseUrl,
    interceptors: options.interceptors,
    defaultTimeoutMs: options.defaultTimeoutMs,
    sessionManager,
    // Only identity encoding is negotiated, as on the unary path.
    acceptCompression: [],
  });
  const interceptors = options.interceptors ?? [];
  const readMaxBytes = options.readMaxBytes ?? 4 * 1024 * 1024;

  // Per method: its URL and path (interceptors may change `req.url`; then it is parsed again).
  const urls = new Map<DescMethodUnary, { url: string; path: string }>();
  function urlOf(method: DescMethodUnary): { url: string; path: string } {
    let u = urls.get(method);
    if (u === undefined) {
      const url = createMethodUrl(baseUrl, method);
      u = { url, path: new URL(url).pathname };
      urls.set(method, u);
    }
    return u;
  }

  // The innermost `next`: one HTTP/2 stream. `call` lets the deadline or the caller's signal
  // cancel it while in flight.
  function send<I extends DescMessage, O extends DescMessage>(
    req: UnaryRequest<I, O>,
    call: Call,
  ): Promise<UnaryResponse<I, O>> {
    const method = req.method;
    const body = toBinary(method.input, req.message);
    const frame = Buffer.allocUnsafe(5 + body.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(body.byteLength, 1);
    frame.set(body, 5);
    let headers: http2.OutgoingHttpHeaders;
    if (req === call.req && call.header === undefined) {
      // Nobody looked at the headers: what `requestHeader` would have produced, without `Headers`.
      headers = { "content-type": contentTypeProto, "user-agent": userAgent, te: "trailers" };
      if (call.timeoutMs !== undefined) headers["grpc-timeout"] = `${call.timeoutMs}m`;
    } else {
      headers = {};
      req.header.forEach((v, k) => {
        headers[k] = v;
      });
    }
    const known = urlOf(method as DescMethodUnary);
    let path = known.path;
    if (req.url !== known.url) {
      const url = new URL(req.url);
      if (url.origin !== sessionManager.authority) {
        return Promise.reject(
          new ConnectError(`cannot make a request to ${url.origin}: the http2 session is connected to ${sessionManager.authority}`, Code.Internal),
        );
      }
      path = url.pathname + url.search;
    }
    return new Promise<UnaryResponse<I, O>>((resolve, reject) => {
      let stream: http2.ClientHttp2Stream | undefined;
      let settled = false;
      let rawHeader: http2.IncomingHttpHeaders | undefined;
      let rawTrailer: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      let received = 0;
      const fail = (err: unknown, rstCode = http2.constants.NGHTTP2_CANCEL) => {
        if (settled) return;
        settled = true;
        call.cancel = undefined;
        if (stream !== undefined && !stream.closed) stream.close(rstCode);
        reject(fromNodeError(err));
      };
      call.cancel = fail;
      sessionManager.request("POST", path, headers, {}).then((s) => {
        stream = s;
        if (settled) {
          s.close(http2.constants.NGHTTP2_CANCEL);
          return;
        }
        s.on("response", (h) => {
          rawHeader = h;
        });
        s.on("data", (c: Buffer) => {
          received += c.length;
          if (received > readMaxBytes + 5) {
            fail(new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
            return;
          }
          chunks.push(c);
        });
        s.on("trailers", (t) => {
          rawTrailer = t;
        });
        s.on("error", (e) => {
          if (s.writableEnded && (e as { code?: string }).code === "ERR_STREAM_WRITE_AFTER_END") return;
          fail(e);
        });
        s.on("close", () => {
          if (settled) return;
          if (received > 0) sessionManager.notifyResponseByteRead(s);
          const hasStatus = rawTrailer["grpc-status"] !== undefined || rawHeader?.["grpc-status"] !== undefined;
          const rstErr = hasStatus ? undefined : fromResetCode(s.rstCode);
          if (rstErr !== undefined) return fail(rstErr);
          const rh = rawHeader;
          if (rh === undefined) return fail(new ConnectError("protocol error: stream closed without response headers", Code.Unavailable));
          const rt = rawTrailer;
          try {
            const message = finish(method, rh, rt, chunks, received);
            settled = true;
            call.cancel = undefined;
            // Web `Headers` only when someone reads them (interceptors, onHeader/onTrailer).
            let header: Headers | undefined, trailer: Headers | undefined;
            resolve({
              stream: false,
              service: method.parent,
              method,
              message,
              get header() {
                return (header ??= toHeaders(rh));
              },
              get trailer() {
                return (trailer ??= toHeaders(rt));
              },
            });
          } catch (e) {
            fail(e);
          }
        });
        s.end(frame);
      }, fail);
    });
  }

  // The one message of a unary response, or undefined; envelope errors throw.
  function parseBody<O extends DescMessage>(method: DescMethodUnary<DescMessage, O>, chunks: Buffer[], received: number): MessageShape<O> | undefined {
    if (received === 0) return undefined;
    let message: MessageShape<O> | undefined;
    const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received);
    let off = 0;
    while (off < buf.length) {
      if (buf.length - off < 5) throw new ConnectError("protocol error: incomplete envelope", Code.Internal);
      const flags = buf[off];
      const len = buf.readUInt32BE(off + 1);
      if (buf.length - off - 5 < len) throw new ConnectError("protocol error: incomplete envelope", Code.Internal);
      if ((flags & 0b1) !== 0) throw new ConnectError("protocol error: received compressed output without negotiated compression", Code.Internal);
      if (message !== undefined) {
        throw new ConnectError("protocol error: received extra output message for unary method", Code.Unimplemented);
      }
      try {
        // A copy in a plain Uint8Array, as connect's envelope reader gives: `bytes` fields are
        // views of it, so they must be Uint8Arrays (not Buffers) owning no pooled memory.
        const bytes = new Uint8Array(len);
        bytes.set(buf.subarray(off + 5, off + 5 + len));
        message = fromBinary(method.output, bytes);
      } catch (e) {
        throw new ConnectError("parse binary: " + String(e instanceof Error ? e.message : e), Code.Internal);
      }
      off += 5 + len;
    }
    return message;
  }

  // The response of one unary call, with connect's checks (protocol-grpc/transport.js): a fast
  // path for the usual success (200, gRPC content type, identity encoding, grpc-status 0 in the
  // trailers), connect's helpers on web `Headers` for everything else.
  function finish<O extends DescMessage>(
    method: DescMethodUnary<DescMessage, O>,
    rh: http2.IncomingHttpHeaders,
    rt: http2.IncomingHttpHeaders,
    chunks: Buffer[],
    received: number,
  ): MessageShape<O> {
    const ct = rh["content-type"];
    const enc = rh["grpc-encoding"];
    if (
      Number(rh[":status"]) === 200 &&
      (ct === contentTypeProto || ct === "application/grpc") &&
      (enc === undefined || enc === "identity") &&
      rh["grpc-status"] === undefined &&
      rt["grpc-status"] === "0" &&
      rt["grpc-status-details-bin"] === undefined
    ) {
      const message = parseBody(method, chunks, received);
      if (message !== undefined) return message;
    }
    const header = toHeaders(rh);
    const trailer = toHeaders(rt);
    const { headerError } = validateResponse(Number(rh[":status"]), header);
    const encoding = header.get("grpc-encoding");
    if (encoding !== null && encoding.toLowerCase() !== "identity") {
      throw new ConnectError(`unsupported response encoding "${encoding}"`, Code.Internal, header);
    }
    const message = parseBody(method, chunks, received);
    const trailerError = findTrailerError(trailer);
    if (trailerError) {
      header.forEach((value, key) => trailerError.metadata.append(key, value));
      throw trailerError;
    }
    if (!header.has(headerGrpcStatus) && !trailer.has(headerGrpcStatus)) {
      throw new ConnectError("protocol error: missing status", Code.Internal);
    }
    if (message === undefined) {
      if (headerError) throw headerError;
      throw new ConnectError(
        "protocol error: missing output message for unary method",
        trailer.has(headerGrpcStatus) ? Code.Unimplemented : Code.Unknown,
      );
    }
    if (headerError) {
      throw new ConnectError("protocol error: received output message for unary method with error status", Code.Unknown);
    }
    return message;
  }

  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      timeoutMs = timeoutMs === undefined ? options.defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs;
      const call = new Call(signal, timeoutMs);
      if (header !== undefined) call.header = requestHeader(true, timeoutMs, header);
      const req: UnaryRequest<I, O> = {
        stream: false,
        service: method.parent,
        method,
        requestMethod: "POST",
        url: urlOf(method as DescMethodUnary).url,
        // Created on first use, like `signal`: most calls never look at them.
        get header() {
          return (call.header ??= requestHeader(true, timeoutMs, undefined));
        },
        contextValues: contextValues ?? createContextValues(),
        message: isMessage(input, method.input) ? (input as MessageShape<I>) : create(method.input, input as MessageInitShape<I>),
        get signal() {
          return call.signal();
        },
      };
      call.req = req as UnaryRequest;
      let next = ((r: UnaryRequest<I, O>) => send(r, call)) as (r: UnaryRequest<I, O>) => Promise<UnaryResponse<I, O>>;
      for (let i = interceptors.length - 1; i >= 0; i--) {
        next = interceptors[i](next as never) as never;
      }
      return new Promise<UnaryResponse<I, O>>((resolve, reject) => {
        call.start(timeoutMs, reject);
        if (call.aborted !== undefined) return;
        let p: Promise<UnaryResponse<I, O>>;
        try {
          p = next(req);
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(
          (res) => {
            if (call.finish()) resolve(res);
          },
          (err) => {
            if (call.finish()) reject(ConnectError.from(err));
          },
        );
      });
    },
    stream: (method, signal, timeoutMs, header, input, contextValues) =>
      streaming.stream(method, signal, timeoutMs, header, input, contextValues),
  };
}

/** Deadline and cancellation of one unary call. */
class Call {
  /** The request as created, and its headers once someone asked for them. */
  req: UnaryRequest | undefined;
  header: Headers | undefined;
  /** Cancels the HTTP/2 stream in flight, if any. */
  cancel: ((err: unknown) => void) | undefined;
  /** Why the call was aborted (deadline or the caller's signal); undefined while it runs. */
  aborted: ConnectError | undefined;
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reject: ((err: unknown) => void) | undefined;
  private done = false;
  private readonly onAbort = () => this.abort(ConnectError.from(getAbortSignalReason(this.userSignal!), Code.Canceled));

  constructor(
    private readonly userSignal: AbortSignal | undefined,
    readonly timeoutMs: number | undefined,
  ) {}

  start(timeoutMs: number | undefined, reject: (err: unknown) => void) {
    this.reject = reject;
    if (this.userSignal !== undefined) {
      if (this.userSignal.aborted) return this.onAbort();
      this.userSignal.addEventListener("abort", this.onAbort);
    }
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    }
  }

  /** The request's AbortSignal: aborted by the deadline, the caller's signal, or completion. */
  signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted !== undefined) this.controller.abort(this.aborted);
      else if (this.done) this.controller.abort();
    }
    return this.controller.signal;
  }

  private abort(err: ConnectError) {
    if (this.done) return;
    this.aborted = err;
    this.cleanup();
    this.controller?.abort(err);
    this.cancel?.(err);
    this.reject!(err);
  }

  /** The call completed; false when it had been aborted already. */
  finish(): boolean {
    if (this.done) return false;
    this.cleanup();
    this.controller?.abort();
    return true;
  }

  private cleanup() {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.userSignal?.removeEventListener("abort", this.onAbort);
  }
}
