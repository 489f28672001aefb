import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, toProblem, type ErrorCode } from '@photoenhance/contracts';
import { isStorageUnavailable } from '@photoenhance/storage';
import { isRedisUnavailableError } from '@photoenhance/queue';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export function sendProblem(reply: FastifyReply, err: ApiError, instance: string): FastifyReply {
  for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
  if (err.headers.connection === 'close') {
    // The rest of an oversized body is not wanted: give the client a moment to read the answer, then drop the socket.
    const socket = reply.request.raw.socket;
    reply.raw.once('finish', () => setTimeout(() => socket.destroy(), 1000).unref());
  }
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
      return sendProblem(reply, new ApiError('MULTIPART_REQUIRED', `Unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}`), req.url);
    }
    if (fe.code === 'FST_REQ_FILE_TOO_LARGE' || fe.statusCode === 413) {
      return sendProblem(reply, new ApiError('IMAGE_TOO_LARGE', 'The request body is larger than the upload limit', { headers: { connection: 'close' } }), req.url);
    }
    // Before the Redis test: a storage outage message can also say ECONNREFUSED.
    if (isStorageUnavailable(error)) {
      req.log.warn({ err: error.message }, 'storage unavailable');
      return sendProblem(reply, storageUnavailable(error.message), req.url);
    }
    if (isRedisDown() || isRedisError(error)) {
      return sendProblem(reply, redisUnavailable(), req.url);
    }
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      return sendProblem(reply, new ApiError('INVALID_REQUEST', fe.message, { status: fe.statusCode }), req.url);
    }
    req.log.error({ err: error }, 'unhandled error');
    return sendProblem(reply, new ApiError('INTERNAL_ERROR', `Unexpected error (request id ${req.id})`, { extensions: { requestId: req.id } }), req.url);
  });
}

export function redisUnavailable(): ApiError {
  return new ApiError('REDIS_UNAVAILABLE', 'The job queue (Redis) is unreachable right now', { headers: { 'retry-after': '5' } });
}

export function storageUnavailable(detail?: string): ApiError {
  return new ApiError('STORAGE_UNAVAILABLE', `The file storage is unreachable right now${detail ? ` (${detail})` : ''}`, { headers: { 'retry-after': '5' } });
}

function isRedisError(err: Error): boolean {
  return isRedisUnavailableError(err);
}

