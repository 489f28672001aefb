import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { ApiError, toProblem, type ErrorCode } from '@photoenhance/contracts';
import { isStorageUnavailable } from '@photoenhance/storage';
import { isRedisUnavailableError } from '@photoenhance/queue';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export function sendProblem(reply: FastifyReply, err: ApiError, instance: string): FastifyReply {
  for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
  if (err.headers.connection === 'close') lingerOnClose(reply);
  return reply.code(err.status).type(PROBLEM_CONTENT_TYPE).send(err.toProblem(instance));
}

/** Every error leaves as RFC 9457 problem+json with a catalogue code; unknown errors are logged and become 500. */
export function installProblemHandlers(app: FastifyInstance, isRedisDown: () => boolean): void {
  app.setNotFoundHandler((req, reply) => {
    void sendProblem(reply, new ApiError('ROUTE_NOT_FOUND', `No route for ${req.method} ${req.url.split('?')[0]}`), req.url);
  });

  app.setErrorHandler((error: FastifyError | ApiError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof ApiError) return sendProblem(reply, error, req.url);
    const fe = error as FastifyError;
    if (fe.validation) {
      return sendProblem(reply, new ApiError('INVALID_REQUEST', fe.message), req.url);
    }
    if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return sendProblem(
        reply,
        new ApiError('MULTIPART_REQUIRED', `Unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}`),
        req.url,
      );
    }
    if (fe.code === 'FST_REQ_FILE_TOO_LARGE' || fe.statusCode === 413) {
      return sendProblem(
        reply,
        new ApiError('IMAGE_TOO_LARGE', 'The request body is larger than the upload limit', { headers: { connection: 'close' } }),
        req.url,
      );
    }
    // Before the Redis test: a storage outage message can also say ECONNREFUSED.
    if (isStorageUnavailable(error)) {
      req.log.warn({ err: error }, 'storage unavailable');
      return sendProblem(reply, storageUnavailable(error.message), req.url);
    }
    if (isRedisDown() || isRedisError(error)) {
      return sendProblem(reply, redisUnavailable(), req.url);
    }
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      return sendProblem(reply, new ApiError('INVALID_REQUEST', fe.message, { status: fe.statusCode }), req.url);
    }
    req.log.error({ err: error }, 'unhandled error');
    return sendProblem(
      reply,
      new ApiError('INTERNAL_ERROR', `Unexpected error (request id ${req.id})`, { extensions: { requestId: req.id } }),
      req.url,
    );
  });
}

export function redisUnavailable(): ApiError {
  return new ApiError('REDIS_UNAVAILABLE', 'The job queue (Redis) is unreachable right now', { headers: { 'retry-after': '5' } });
}

export function storageUnavailable(detail?: string): ApiError {
  return new ApiError('STORAGE_UNAVAILABLE', `The file storage is unreachable right now${detail ? ` (${detail})` : ''}`, {
    headers: { 'retry-after': '5' },
  });
}

function isRedisError(err: Error): boolean {
  return isRedisUnavailableError(err);
}

export interface DrainLimits {
  /** REFUSED_BODY_DRAIN_BYTES */
  bytes: number;
  /** REFUSED_BODY_DRAIN_MS */
  ms: number;
}

/** Per HTTP server (shared by every encapsulated Fastify context of one gateway). */
const drainLimits = new WeakMap<Server, DrainLimits>();

export function setDrainLimits(server: Server, limits: DrainLimits): void {
  drainLimits.set(server, limits);
}

/**
 * Close a refused request's connection without losing the answer. Node ends a `Connection: close` response with
 * socket.destroySoon(): closing a socket with request bytes still arriving sends a RST, and a client that writes its
 * whole body before reading (many do) then gets a reset instead of the 413. So, like Apache's and nginx's lingering
 * close: send the answer and a FIN, read and discard the rest of the body for at most `bytes` and `ms`, then close.
 */
export function lingerOnClose(reply: FastifyReply): void {
  const req = reply.request.raw;
  const socket = req.socket as (Socket & { destroySoon?: () => void }) | null;
  const limits = socket ? drainLimits.get(reply.server.server as Server) : undefined;
  if (!socket || !limits || limits.bytes === 0 || limits.ms === 0 || req.readableEnded) return;
  socket.destroySoon = function lingeringClose(this: Socket): void {
    if (this.writable) this.end();
    let seen = 0;
    const close = (): void => {
      clearTimeout(timer);
      if (this.writableFinished) this.destroy();
      else this.once('finish', () => this.destroy());
    };
    const timer = setTimeout(() => this.destroy(), limits.ms);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    req.unpipe();
    req.removeAllListeners('data');
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limits.bytes) close();
    });
    req.once('end', close);
    req.once('error', close);
    req.resume();
  };
}

/**
 * Answers for what Node refuses before Fastify sees a request (clientError): headers too large (431), headers or
 * body too slow (408), unparsable HTTP (400), as problem+json. Written straight to the socket, then closed.
 */
export function clientErrorProblem(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [code, message]: [ErrorCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['HEADERS_TOO_LARGE', 'The request headers are larger than this server accepts']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['REQUEST_TIMEOUT', 'The request did not arrive in time']
        : ['INVALID_REQUEST', `The request is not valid HTTP/1.1 (${err.code ?? err.message})`];
  const started = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (socket.writable && !started) {
    const problem = toProblem(code, message);
    const body = JSON.stringify(problem);
    socket.end(
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    // Some of the request may still be unread; give the answer a moment to reach the client before the reset.
    setTimeout(() => socket.destroy(), 1000).unref();
  } else {
    socket.destroy(err);
  }
}

/**
 * A connection idle past HTTP_IDLE_TIMEOUT_MS. A request whose body stopped arriving gets a 408 and is closed; one
 * whose body is complete is being worked on (a large archive takes a while to extract) and is left alone; anything
 * else (an idle keep-alive socket, a client that stopped reading a download) is closed.
 */
export function idleTimeoutProblem(socket: Socket): void {
  const res = (socket as Socket & { _httpMessage?: { headersSent?: boolean; req?: { complete?: boolean } } })._httpMessage;
  if (res && !res.headersSent) {
    if (res.req?.complete) return;
    clientErrorProblem(Object.assign(new Error('idle'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
  } else {
    socket.destroy();
  }
}
