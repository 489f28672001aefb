import { createHash, type Hash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import { ApiError } from '@photoenhance/contracts';
import { keys } from '@photoenhance/queue';

/**
 * Idempotency-Key on submissions (POST /v1/jobs, POST /v1/batches; IETF draft semantics):
 * - same key + same content (upload bytes hashed while streaming, file names and option fields) → the same job or
 *   batch again: 202 with the same id and `Idempotent-Replayed: true`;
 * - same key + different content → 422 IDEMPOTENCY_KEY_REUSED;
 * - same key while the first request is still being accepted → 409 IDEMPOTENCY_KEY_IN_FLIGHT with Retry-After (the
 *   first may still fail validation, so there is no job to point at yet);
 * - a first request that fails (bad image, queue full) releases the key, so a corrected retry can use it.
 * Keys are scoped per API key (per client address without keys) and expire with the job (JOB_TTL_SECONDS).
 */
export interface IdemRecord {
  state: 'pending' | 'done';
  fingerprint: string;
  kind: 'job' | 'batch';
  id: string;
  createdAt: number;
}

/** While the first request streams and validates its upload. */
const PENDING_SECONDS = 600;
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export function idempotencyKeyOf(req: FastifyRequest): string | undefined {
  const raw = req.headers['idempotency-key'];
  if (raw === undefined) return undefined;
  const v = (Array.isArray(raw) ? raw[0] : raw)?.trim().replace(/^"(.*)"$/, '$1') ?? '';
  if (!KEY_PATTERN.test(v)) {
    throw new ApiError(
      'INVALID_REQUEST',
      'The Idempotency-Key header must be 1 to 255 visible ASCII characters (a UUID is a good choice)',
      { extensions: { header: 'Idempotency-Key' } },
    );
  }
  return v;
}

/** Accumulates what makes a submission "the same": option fields (order-free), file names and bytes. */
export class Fingerprint {
  private readonly files: Array<{ name: string; hash: Hash }> = [];

  file(name: string): Hash {
    const hash = createHash('sha256');
    this.files.push({ name, hash });
    return hash;
  }

  digest(kind: 'job' | 'batch', fields: Record<string, string>): string {
    const h = createHash('sha256').update(`${kind}\n`);
    for (const k of Object.keys(fields).sort()) h.update(`${JSON.stringify(k)}=${JSON.stringify(fields[k])}\n`);
    for (const f of this.files) h.update(`file ${JSON.stringify(f.name)} ${f.hash.copy().digest('hex')}\n`);
    return h.digest('hex');
  }
}

export interface ClaimedKey {
  complete(): Promise<void>;
  release(): Promise<void>;
}
export type Claim = { replay: IdemRecord } | ClaimedKey;

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export class IdempotencyStore {
  constructor(
    private readonly redis: Redis,
    private readonly ttlSeconds: number,
  ) {}

  private key(scope: string, key: string): string {
    return keys.idempotency(createHash('sha256').update(`${scope}\n${key}`).digest('hex'));
  }

  /** Claim `key` for a new submission with id `id`, or answer with what an earlier one decided. */
  async claim(scope: string, key: string, fingerprint: string, kind: IdemRecord['kind'], id: string): Promise<Claim> {
    const k = this.key(scope, key);
    const mine: IdemRecord = { state: 'pending', fingerprint, kind, id, createdAt: Date.now() };
    const pending = JSON.stringify(mine);
    const ok = await this.redis.set(k, pending, 'EX', PENDING_SECONDS, 'NX');
    if (ok === 'OK') {
      return {
        complete: async () => {
          await this.redis.set(k, JSON.stringify({ ...mine, state: 'done' }), 'EX', this.ttlSeconds);
        },
        release: async () => {
          await this.redis.eval(RELEASE, 1, k, pending).catch(() => undefined);
        },
      };
    }
    const raw = await this.redis.get(k);
    // Released in between: the caller may simply try again.
    if (!raw) return this.claim(scope, key, fingerprint, kind, id);
    const prior = JSON.parse(raw) as IdemRecord;
    if (prior.fingerprint !== fingerprint || prior.kind !== kind) {
      throw new ApiError(
        'IDEMPOTENCY_KEY_REUSED',
        `The Idempotency-Key ${JSON.stringify(key)} was used for a different ${prior.kind === kind ? 'content' : prior.kind} (${prior.id})`,
        {
          extensions: { idempotencyKey: key, [prior.kind === 'job' ? 'jobId' : 'batchId']: prior.state === 'done' ? prior.id : undefined },
        },
      );
    }
    if (prior.state === 'pending') {
      throw new ApiError(
        'IDEMPOTENCY_KEY_IN_FLIGHT',
        `A request with the Idempotency-Key ${JSON.stringify(key)} and the same content is still being accepted`,
        {
          extensions: { idempotencyKey: key },
          headers: { 'retry-after': '1' },
        },
      );
    }
    return { replay: prior };
  }
}
