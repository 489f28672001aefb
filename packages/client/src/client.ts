import { openAsBlob } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { BatchView, HostState, JobAccepted, JobOptionsInput, JobStatus, JobView, Problem } from '@photoenhance/contracts';
import { ApiProblemError, GatewayUnreachableError, parseRetryAfter } from './errors.js';

export interface ClientOptions {
  /** Gateway origin, e.g. http://127.0.0.1:8080 (a trailing slash or path prefix is kept). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <key>` when set. */
  apiKey?: string;
  /** Defaults to the global fetch (Node 20). */
  fetch?: typeof fetch;
}

/** Options as a client sends them; every field optional, the gateway applies defaults. */
export type SubmitOptions = Partial<JobOptionsInput> & { engine?: string };

export interface SubmitExtras {
  /** Same key + same content replays the first answer (IETF Idempotency-Key draft). */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** Called with every view whose status or progress changed. */
  onProgress?: (view: JobView) => void;
  /** First poll interval; grows by half each poll up to `maxPollMs`. Default 250. */
  pollMs?: number;
  /** Default 2 000. */
  maxPollMs?: number;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  contentType: string | undefined;
  /** The file name the gateway suggested (Content-Disposition), if any. */
  filename: string | undefined;
}

export interface EnginesView {
  engines: Array<{ name: string; hosts: string[]; [k: string]: unknown }>;
}

export const FINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'canceled'];

const CONTENT_TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.bmp': 'image/bmp',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
};

/** Names of unfinished downloads (`.<name>.<12 hex>.part`), left behind only if the process was killed mid-download. */
export const PARTIAL_DOWNLOAD = /^\..+\.[0-9a-f]{12}\.part$/;

export class PhotoEnhanceClient {
  readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(opts: ClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new TypeError(`baseUrl must be an http(s) URL such as http://127.0.0.1:8080; received ${JSON.stringify(opts.baseUrl)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`baseUrl must start with http:// or https://; received ${JSON.stringify(opts.baseUrl)}`);
    }
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.apiKey = opts.apiKey;
    this.fetchImpl = opts.fetch ?? globalThis.fetch;
  }

  /** Upload a photo (streamed from disk) and queue a job. */
  async submit(filePath: string, options: SubmitOptions = {}, extras: SubmitExtras = {}): Promise<JobAccepted> {
    const form = new FormData();
    // Fields before the file, so the gateway knows the options before it reads the image.
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined && value !== null) form.append(key, String(value));
    }
    const type = CONTENT_TYPES[extname(filePath).toLowerCase()] ?? 'application/octet-stream';
    const blob = await openAsBlob(filePath, { type });
    form.append('image', blob, basename(filePath));
    const headers: Record<string, string> = {};
    if (extras.idempotencyKey) headers['idempotency-key'] = extras.idempotencyKey;
    const res = await this.request('POST', '/v1/jobs', { body: form, headers, signal: extras.signal });
    return (await res.json()) as JobAccepted;
  }

  async get(id: string, signal?: AbortSignal): Promise<JobView> {
    const res = await this.request('GET', `/v1/jobs/${encodeURIComponent(id)}`, { signal });
    return (await res.json()) as JobView;
  }

  /**
   * Poll until the job reaches a final status (completed, failed, canceled) and return that view. Polls back off from
   * `pollMs` to `maxPollMs`; 503/429 answers are waited out (Retry-After) rather than thrown.
   */
  async waitFor(id: string, opts: WaitOptions = {}): Promise<JobView> {
    const first = opts.pollMs ?? 250;
    const max = Math.max(first, opts.maxPollMs ?? 2000);
    let delay = first;
    let last: { status: JobStatus; progress: number } | undefined;
    for (;;) {
      opts.signal?.throwIfAborted();
      let view: JobView | undefined;
      try {
        view = await this.get(id, opts.signal);
      } catch (err) {
        if (!(err instanceof ApiProblemError) || (err.status !== 503 && err.status !== 429)) throw err;
        await sleep((err.retryAfterSeconds ?? delay / 1000) * 1000, opts.signal);
        continue;
      }
      if (!last || last.status !== view.status || last.progress !== view.progress) {
        last = { status: view.status, progress: view.progress };
        opts.onProgress?.(view);
        delay = first;
      }
      if (FINAL_STATUSES.includes(view.status)) return view;
      await sleep(delay, opts.signal);
      delay = Math.min(max, Math.round(delay * 1.5));
    }
  }

  /** Stream the result to `destPath` through a temporary file beside it, renamed into place when complete. */
  async download(id: string, destPath: string, signal?: AbortSignal): Promise<DownloadResult> {
    const res = await this.request('GET', `/v1/jobs/${encodeURIComponent(id)}/result`, { signal });
    if (!res.body) throw new Error(`the gateway sent no body for the result of ${id}`);
    await mkdir(dirname(destPath), { recursive: true });
    const tmp = join(dirname(destPath), `.${basename(destPath)}.${randomBytes(6).toString('hex')}.part`); // matches PARTIAL_DOWNLOAD
    try {
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), createWriteStream(tmp, { flags: 'wx' }), { signal });
      await rename(tmp, destPath);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    const { size } = await stat(destPath);
    return {
      path: destPath,
      bytes: size,
      contentType: res.headers.get('content-type') ?? undefined,
      filename: parseDispositionFilename(res.headers.get('content-disposition')),
    };
  }

  /** Cancel a job; idempotent on the gateway side. */
  async cancel(id: string): Promise<Record<string, unknown>> {
    const res = await this.request('DELETE', `/v1/jobs/${encodeURIComponent(id)}`);
    return (await res.json()) as Record<string, unknown>;
  }

  async engines(): Promise<EnginesView> {
    return (await (await this.request('GET', '/v1/engines')).json()) as EnginesView;
  }

  async system(): Promise<{ hosts: HostState[] }> {
    return (await (await this.request('GET', '/v1/system')).json()) as { hosts: HostState[] };
  }

  async health(): Promise<Record<string, unknown>> {
    return (await (await this.request('GET', '/healthz')).json()) as Record<string, unknown>;
  }

  /** GET /v1/batches/:id. Fields are typed as the contracts say; read them defensively against older gateways. */
  async getBatch(id: string, signal?: AbortSignal): Promise<BatchView> {
    const res = await this.request('GET', `/v1/batches/${encodeURIComponent(id)}`, { signal });
    return (await res.json()) as BatchView;
  }

  /** Any JSON GET under the gateway (e.g. an optional endpoint probed by `watch`); errors as for every call. */
  async getJson<T = unknown>(path: string, signal?: AbortSignal): Promise<T> {
    return (await (await this.request('GET', path.startsWith('/') ? path : `/${path}`, { signal })).json()) as T;
  }

  /** One request; non-2xx answers become ApiProblemError, transport failures GatewayUnreachableError. */
  private async request(
    method: string,
    path: string,
    init: { body?: FormData; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const url = this.baseUrl + path;
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json;q=0.9, */*;q=0.5', ...init.headers };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let res: Response;
    try {
      res = await this.fetchImpl(url, { method, headers, body: init.body, signal: init.signal });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new GatewayUnreachableError(this.baseUrl, err);
    }
    if (res.ok) return res;
    throw await toProblemError(res);
  }
}

async function toProblemError(res: Response): Promise<ApiProblemError> {
  const retryAfterSeconds = parseRetryAfter(res.headers.get('retry-after'));
  const text = await res.text().catch(() => '');
  let problem: Problem | undefined;
  try {
    const body = JSON.parse(text) as unknown;
    if (body && typeof body === 'object' && typeof (body as Problem).code === 'string') problem = body as Problem;
  } catch {
    // not JSON: keep the text as the detail
  }
  const fallbackDetail = text ? `HTTP ${res.status} ${res.statusText}: ${text.slice(0, 200)}` : `HTTP ${res.status} ${res.statusText}`;
  return new ApiProblemError(res.status, problem, { retryAfterSeconds, fallbackDetail });
}

export function parseDispositionFilename(header: string | null): string | undefined {
  if (!header) return undefined;
  const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(header);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      // fall through to the plain parameter
    }
  }
  const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/.exec(header);
  const name = plain?.[1]?.replace(/\\(.)/g, '$1') ?? plain?.[2];
  return name ? basename(name) : undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
