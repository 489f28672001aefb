import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

/**
 * Who is calling: the API key they present (when keys are configured and theirs is one), else their address.
 * Scopes rate limits, idempotency keys and compat task lists. Authentication itself (refusing unknown keys) is not
 * decided here.
 */
export interface ClientIdentity {
  kind: 'key' | 'address';
  /** `k_<hash>` for a key (the key itself is never stored), the address otherwise. */
  id: string;
}

export function presentedKey(req: FastifyRequest): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const x = req.headers['x-api-key'];
  return typeof x === 'string' && x.trim() ? x.trim() : undefined;
}

export function keyId(key: string): string {
  return `k_${createHash('sha256').update(key).digest('hex').slice(0, 24)}`;
}

export function clientIdentity(req: FastifyRequest, apiKeys: readonly string[]): ClientIdentity {
  if (apiKeys.length > 0) {
    const key = presentedKey(req);
    if (key !== undefined) {
      const id = keyId(key);
      // Compare hashes, so the check does not leak the keys through timing.
      if (apiKeys.some((k) => keyId(k) === id)) return { kind: 'key', id };
    }
  }
  return { kind: 'address', id: req.ip };
}

/** The owner recorded on jobs and batches: the key id when keys are in use, else undefined (everything is shared). */
export function ownerOf(req: FastifyRequest, apiKeys: readonly string[]): string | undefined {
  if (apiKeys.length === 0) return undefined;
  const who = clientIdentity(req, apiKeys);
  return who.kind === 'key' ? who.id : 'anonymous';
}
