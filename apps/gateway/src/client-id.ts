import type { FastifyRequest } from 'fastify';
import { keyringOf } from './auth/keyring.js';

/**
 * Who is calling: the API key they present (when keys are configured and theirs is one), else their address.
 * Scopes rate limits, idempotency keys and compat task lists. Refusing requests without a valid key is the job of
 * auth/api-keys.ts; this only names the caller.
 */
export interface ClientIdentity {
  kind: 'key' | 'address';
  /** The key's client id (`k_<hash>` or `n_<name>`; the secret itself is never stored), the address otherwise. */
  id: string;
  /** The key's name for logs (`name` of a `name:secret` entry), absent for an address. */
  name?: string;
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

/** Resolved once per request (the rate limiter, the auth hook and the routes all ask). */
const resolved = new WeakMap<FastifyRequest, ClientIdentity>();

export function clientIdentity(req: FastifyRequest, apiKeys: readonly string[]): ClientIdentity {
  const known = resolved.get(req);
  if (known) return known;
  let who: ClientIdentity = { kind: 'address', id: req.ip };
  if (apiKeys.length > 0) {
    const client = keyringOf(apiKeys).match(presentedKey(req));
    if (client) who = { kind: 'key', id: client.id, name: client.name };
  }
  resolved.set(req, who);
  return who;
}

/** The owner recorded on jobs and batches: the key's client id when keys are in use, else undefined (everything is shared). */
export function ownerOf(req: FastifyRequest, apiKeys: readonly string[]): string | undefined {
  if (apiKeys.length === 0) return undefined;
  const who = clientIdentity(req, apiKeys);
  return who.kind === 'key' ? who.id : 'anonymous';
}
