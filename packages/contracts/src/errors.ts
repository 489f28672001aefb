import { Type, type Static } from '@sinclair/typebox';

/**
 * The one error catalogue. Every error a user can see — an HTTP problem or a job failure — has a stable code here,
 * with its HTTP status, a short title and what to do about it. docs/errors.md is checked against this table by a test.
 */
export interface ErrorEntry {
  /** HTTP status when this code is returned by the API; for job failures, the status a job-level error maps to. */
  readonly status: number;
  readonly title: string;
  /** What the user should do about it. Always shown in `detail`. */
  readonly hint: string;
  /** `http`: returned by the API. `job`: recorded on a failed job. */
  readonly kind: 'http' | 'job';
  /** Job failures only: whether another attempt can help. */
  readonly retryable?: boolean;
}

export const ERRORS = {
  IMAGE_REQUIRED: {
    status: 400,
    kind: 'http',
    title: 'No image part',
    hint: 'Send the photo as a multipart file part named "image" (curl -F image=@photo.jpg).',
  },
  INVALID_OPTION: {
    status: 400,
    kind: 'http',
    title: 'Invalid option',
    hint: 'Correct the named field to one of the allowed values, or leave it out to use the default.',
  },
  INVALID_REQUEST: {
    status: 400,
    kind: 'http',
    title: 'Invalid request',
    hint: 'Check the request against the API reference (GET /docs) and send it again.',
  },
  MULTIPART_REQUIRED: {
    status: 415,
    kind: 'http',
    title: 'Multipart body required',
    hint: 'Send the job as multipart/form-data with the photo in a part named "image".',
  },
  UNEXPECTED_FIELD: {
    status: 400,
    kind: 'http',
    title: 'Unexpected part',
    hint: 'Send exactly one file part named "image"; remove other file parts or unknown fields.',
  },
  IMAGE_TOO_LARGE: {
    status: 413,
    kind: 'http',
    title: 'Image too large',
    hint: 'Send a smaller file (re-encode or downscale it), or raise MAX_UPLOAD_BYTES on the gateway.',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    kind: 'http',
    title: 'Unsupported image type',
    hint: 'Send a JPEG, PNG, WebP, BMP or TIFF image; the type is read from the file content, not its name.',
  },
  IMAGE_UNREADABLE: {
    status: 422,
    kind: 'http',
    retryable: false,
    title: 'Image unreadable',
    hint: 'The file is truncated or corrupt: export it again from the original and resend it.',
  },
  IMAGE_DIMENSIONS_TOO_LARGE: {
    status: 422,
    kind: 'http',
    title: 'Image dimensions too large',
    hint: 'Downscale the photo or choose a smaller scale so input and output stay within the pixel limit (MAX_PIXELS).',
  },
  UNKNOWN_ENGINE: {
    status: 400,
    kind: 'http',
    title: 'Unknown engine',
    hint: 'Pick one of the engines listed in this error (or GET /v1/engines), or leave "engine" out for the default.',
  },
  JOB_NOT_FOUND: {
    status: 404,
    kind: 'http',
    title: 'Job not found',
    hint: 'Check the job id; ids come from the 202 answer to POST /v1/jobs.',
  },
  JOB_NOT_COMPLETED: {
    status: 409,
    kind: 'http',
    title: 'Job not completed',
    hint: 'Wait until the job status is "completed" (poll GET /v1/jobs/:id or follow its events), then download again.',
  },
  JOB_EXPIRED: {
    status: 410,
    kind: 'http',
    title: 'Job expired',
    hint: 'Results are kept for JOB_TTL_SECONDS after they finish; submit the photo again.',
  },
  ROUTE_NOT_FOUND: {
    status: 404,
    kind: 'http',
    title: 'No such route',
    hint: 'Check the method and path against the API reference (GET /docs).',
  },
  REDIS_UNAVAILABLE: {
    status: 503,
    kind: 'http',
    title: 'Queue unavailable',
    hint: 'The queue store (Redis) cannot be reached; retry after the Retry-After delay. Operators: check REDIS_URL and the Redis server.',
  },
  NOT_REPLICATED: {
    status: 503,
    kind: 'http',
    title: 'Not replicated',
    hint: 'No Redis replica confirmed the job in time, so it was not accepted (a failover could have lost it); retry after the Retry-After delay. Operators: check the replicas (INFO replication) and REDIS_WAIT_REPLICAS / REDIS_WAIT_TIMEOUT_MS.',
  },
  QUEUE_FULL: { status: 503, kind: 'http', title: 'Queue full', hint: 'Too many jobs are waiting; retry after the Retry-After delay.' },
  NO_WORKER_FOR_ENGINE: {
    status: 503,
    kind: 'http',
    title: 'No worker for this engine',
    hint: 'No live worker host offers this engine right now: start a worker that runs it (WORKER_ENGINES or WORKER_CONFIG), pick an engine GET /v1/engines lists with hosts, or retry after the Retry-After delay.',
  },
  WORKERS_HOLDING: {
    status: 503,
    kind: 'http',
    title: 'Workers holding',
    hint: 'Every worker host is holding for memory; retry after the Retry-After delay.',
  },
  RATE_LIMITED: { status: 429, kind: 'http', title: 'Rate limit exceeded', hint: 'Slow down: retry after the Retry-After delay.' },
  OVERLOADED: {
    status: 503,
    kind: 'http',
    title: 'Gateway overloaded',
    hint: 'The gateway is under pressure; retry after the Retry-After delay.',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    kind: 'http',
    title: 'Idempotency key reused',
    hint: 'Use a new Idempotency-Key for different content.',
  },
  IDEMPOTENCY_KEY_IN_FLIGHT: {
    status: 409,
    kind: 'http',
    title: 'Idempotent request in flight',
    hint: 'A request with this Idempotency-Key is still being accepted; retry after the Retry-After delay to get its answer.',
  },
  BATCH_NOT_FOUND: {
    status: 404,
    kind: 'http',
    title: 'Batch not found',
    hint: 'Check the batch id; ids come from the 202 answer to POST /v1/batches.',
  },
  BATCH_TOO_LARGE: {
    status: 413,
    kind: 'http',
    title: 'Batch too large',
    hint: 'Split the photos into several batches within the limits named in this error (MAX_BATCH_ITEMS, MAX_BATCH_BYTES).',
  },
  ARCHIVE_REFUSED: {
    status: 422,
    kind: 'http',
    title: 'Archive refused',
    hint: 'The ZIP archive breaks a safety limit (see `reason`): send a plain ZIP of photos, without nested archives or path names, within the limits named in this error.',
  },
  WEBHOOK_URL_REFUSED: {
    status: 400,
    kind: 'http',
    title: 'Webhook URL refused',
    hint: 'Use an http(s) URL whose host resolves only to public addresses (see `reason`); operators can allow private ones with WEBHOOK_ALLOW_PRIVATE=true.',
  },
  OPERATOR_AUTH_REQUIRED: {
    status: 401,
    kind: 'http',
    title: 'Operator credential required',
    hint: 'Send the operator token (DASHBOARD_TOKEN) as `Authorization: Bearer <token>`, as the password of HTTP basic auth, or sign in at /dashboard/login.',
  },
  OPERATOR_ACCESS_DISABLED: {
    status: 403,
    kind: 'http',
    title: 'Operator pages disabled',
    hint: 'No operator credential is configured and the gateway listens on a non-loopback address: set DASHBOARD_TOKEN (a long random string) on the gateway, or bind HOST to 127.0.0.1.',
  },
  API_KEY_REQUIRED: {
    status: 401,
    kind: 'http',
    title: 'API key required',
    hint: 'Send your API key as `Authorization: Bearer <key>` or `X-API-Key: <key>` (the CLI and the client read PHOTOENHANCE_API_KEY); the operator hands keys out through API_KEYS or API_KEYS_FILE.',
  },
  API_KEY_INVALID: {
    status: 401,
    kind: 'http',
    title: 'API key not recognised',
    hint: "The key sent is not one of this gateway's keys: check it for typos or a rotated secret, and send only the secret part of a `name:secret` entry.",
  },
  OPERATOR_TOKEN_REQUIRED: {
    status: 403,
    kind: 'http',
    title: 'Operator token required with API keys',
    hint: "API_KEYS is set, so the operator pages (which list every client's jobs) need their own credential even on loopback: set DASHBOARD_TOKEN (a long random string) on the gateway and sign in at /dashboard/login.",
  },
  CROSS_ORIGIN_REFUSED: {
    status: 403,
    kind: 'http',
    title: 'Cross-origin operator request refused',
    hint: "State-changing operator requests must come from the dashboard's own origin, or from a script that sends no Origin header and Content-Type: application/json.",
  },
  HOST_NOT_ALLOWED: {
    status: 421,
    kind: 'http',
    title: 'Host not served',
    hint: 'This gateway answers only for its own host names (loopback names, IP addresses, HOST, the host of PUBLIC_URL): use one of them, or add this name to ALLOWED_HOSTS on the gateway (comma list; `*` allows any).',
  },
  DASHBOARD_NOT_BUILT: {
    status: 503,
    kind: 'http',
    title: 'Dashboard not built',
    hint: 'Build the front-end once: npm run build -w @photoenhance/dashboard (npm start and npm test do it when it is missing or stale).',
  },
  MALFORMED_MULTIPART: {
    status: 400,
    kind: 'http',
    title: 'Malformed multipart body',
    hint: 'Send a well-formed multipart/form-data body (let your HTTP client build it, e.g. curl -F or FormData): every part needs a Content-Disposition: form-data header with a name, file names without line breaks, and the body must end with the closing boundary.',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    kind: 'http',
    title: 'Request headers too large',
    hint: 'Send fewer or shorter headers (cookies, long tokens); the total must stay under the server limit.',
  },
  REQUEST_TIMEOUT: {
    status: 408,
    kind: 'http',
    title: 'Request timed out',
    hint: 'The request (headers or body) arrived too slowly; send it again on a faster link, or ask the operator to raise HTTP_HEADERS_TIMEOUT_MS / HTTP_REQUEST_TIMEOUT_MS.',
  },
  IMAGE_DIMENSIONS_TOO_SMALL: {
    status: 422,
    kind: 'http',
    title: 'Image dimensions too small',
    hint: 'Send a photo at least MIN_IMAGE_SIDE pixels on its shorter side (the limit is named in this error).',
  },
  IMAGE_ASPECT_RATIO_TOO_EXTREME: {
    status: 422,
    kind: 'http',
    title: 'Image aspect ratio too extreme',
    hint: 'Crop the image so its longer side is at most MAX_ASPECT_RATIO times its shorter side (the limit is named in this error).',
  },
  RANGE_NOT_SATISFIABLE: {
    status: 416,
    kind: 'http',
    title: 'Range not satisfiable',
    hint: 'Ask for a byte range inside the file (its size is in Content-Range: bytes */SIZE), or leave the Range header out.',
  },
  INTERNAL_ERROR: {
    status: 500,
    kind: 'http',
    title: 'Internal error',
    hint: 'Retry later; if it persists, report it with the request id from the response.',
  },

  ENGINE_CRASHED: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Engine crashed',
    hint: 'The engine process exited mid-job; the job is retried on a fresh engine. If every attempt crashes, check the engine log.',
  },
  ENGINE_TIMEOUT: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Engine timed out',
    hint: "The job ran past the engine's job timeout; use a smaller image or scale, or raise jobTimeoutMs for the engine.",
  },
  ENGINE_START_FAILED: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Engine failed to start',
    hint: 'The engine did not report ready; run `photoenhance doctor` and check the engine command and its log.',
  },
  ENGINE_MEMORY_LIMIT: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Engine memory limit',
    hint: "The engine passed its memory limit on this photo; use a smaller image, a smaller bgTile, or raise the engine's memoryLimit.",
  },
  ENGINE_GPU_MEMORY_LIMIT: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Engine GPU memory limit',
    hint: "The engine held more GPU memory than its gpuMemoryLimitBytes on this photo and was stopped; leave bgTile unset (automatic tile) or set a smaller one, use a smaller image, or raise the engine's gpuMemoryLimitBytes (gpuMemoryLimitMode: soft recycles between jobs instead of killing).",
  },
  ENGINE_GPU_OOM: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'GPU out of memory',
    hint: 'The GPU ran out of memory; use a smaller bgTile or image, or run fewer engines per GPU.',
  },
  ENGINE_PROTOCOL_ERROR: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Engine protocol error',
    hint: 'The engine sent something that is not the engine protocol (docs/engine-protocol.md); fix the engine.',
  },
  ENGINE_FAILED: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Engine failed',
    hint: 'The engine reported a failure; the message says why.',
  },
  OUTPUT_MISSING: {
    status: 500,
    kind: 'job',
    retryable: true,
    title: 'Output missing',
    hint: 'The engine reported success but wrote no readable output; check the engine.',
  },
  JOB_CANCELED: {
    status: 409,
    kind: 'job',
    retryable: false,
    title: 'Job canceled',
    hint: 'The job was canceled on request; submit it again if that was a mistake.',
  },
  STORAGE_UNAVAILABLE: {
    status: 503,
    kind: 'job',
    retryable: true,
    title: 'Storage unavailable',
    hint: 'The file storage (STORAGE_URL / STORAGE_DIR) cannot be reached right now; nothing is lost: retry after the Retry-After delay, and queued jobs are retried by themselves. Operators: check S3_ENDPOINT, the bucket and /readyz.',
  },
  INPUT_MISSING: {
    status: 500,
    kind: 'job',
    retryable: false,
    title: 'Input missing',
    hint: 'The stored input is gone (expired or deleted); submit the photo again. Operators: every gateway and worker must use the same storage (STORAGE_URL, or one shared STORAGE_DIR).',
  },
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

const ErrorCodeSchema = Type.Union(
  (Object.keys(ERRORS) as ErrorCode[]).map((c) => Type.Literal(c)),
  { description: 'A code from the error catalogue (docs/errors.md).' },
);

/** RFC 9457 problem details as the API returns them; extensions (field, allowed, limitBytes...) beside the fixed members. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ format: 'uri-reference', description: '`/docs/errors#CODE` on the gateway that answered.' }),
    title: Type.String(),
    status: Type.Integer(),
    code: ErrorCodeSchema,
    detail: Type.String({ description: 'What happened, then what to do about it.' }),
    instance: Type.Optional(Type.String()),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details; `code` is from the error catalogue (docs/errors.md).' },
);
export type Problem = Static<typeof ProblemSchema> & { [extension: string]: unknown };

/**
 * Problem `type` URIs are relative to the gateway that answered: `/docs/errors#CODE`, the catalogue page it serves
 * (a domain the project does not own would be a dead or hijackable link).
 */
export const PROBLEM_TYPE_BASE = '/docs/errors#';

/** An error that becomes a problem+json response. `detail` should say what happened; the hint is appended. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly extensions: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { extensions?: Record<string, unknown>; headers?: Record<string, string>; status?: number } = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = opts.status ?? ERRORS[code].status;
    this.extensions = opts.extensions ?? {};
    this.headers = opts.headers ?? {};
  }

  toProblem(instance?: string): Problem {
    return toProblem(this.code, this.message, { status: this.status, instance, extensions: this.extensions });
  }
}

export function toProblem(
  code: ErrorCode,
  message: string,
  opts: { status?: number; instance?: string; extensions?: Record<string, unknown> } = {},
): Problem {
  const entry: ErrorEntry = ERRORS[code];
  return {
    type: PROBLEM_TYPE_BASE + code,
    title: entry.title,
    status: opts.status ?? entry.status,
    code,
    detail: `${message.replace(/\.?$/, '.')} ${entry.hint}`,
    ...(opts.instance ? { instance: opts.instance } : {}),
    ...opts.extensions,
  };
}

/** A job failure as recorded on the job and shown in GET /v1/jobs/:id. */
export const JobErrorSchema = Type.Object({ code: ErrorCodeSchema, message: Type.String() });
export type JobError = Static<typeof JobErrorSchema>;

/**
 * Job failures travel through BullMQ's `failedReason` string; this keeps the code machine-readable.
 * Format: `CODE: message`. Anything else is an ENGINE_FAILED with the raw text.
 */
export function encodeJobError(err: JobError): string {
  return `${err.code}: ${err.message}`;
}

export function decodeJobError(reason: string | undefined | null): JobError | undefined {
  if (!reason) return undefined;
  const m = /^([A-Z][A-Z0-9_]+): ([\s\S]*)$/.exec(reason);
  if (m && isErrorCode(m[1])) return { code: m[1], message: m[2]! };
  return { code: 'ENGINE_FAILED', message: reason };
}
