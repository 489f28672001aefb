import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * The gateway's API keys. An entry is `secret` or `name:secret`; clients send only the secret. The name is what logs
 * show (never the secret); an unnamed key is shown as `key-<8 hex of its hash>`.
 *
 * Who owns a job is the key's client id: `k_<24 hex of sha256(secret)>` for an unnamed key (the id this gateway has
 * always recorded), `n_<name>` for a named one, so two secrets under one name (a rotation) are one client.
 */
export interface ApiClient {
  /** For logs and metrics. */
  name: string;
  /** Recorded as the owner of jobs and batches; scopes rate limits, idempotency keys and compat task lists. */
  id: string;
}

export interface KeyEntry {
  name?: string;
  secret: string;
}

export const MIN_SECRET_LENGTH = 8;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/** `k_<hash>` for a secret: the id unnamed keys have always had. */
export function keyId(secret: string): string {
  return `k_${sha256(secret).toString('hex').slice(0, 24)}`;
}

/** One configured entry, or a sentence saying what is wrong with it (never quoting the secret). */
export function parseKeyEntry(raw: string): KeyEntry | string {
  const entry = raw.trim();
  const colon = entry.indexOf(':');
  if (colon > 0 && NAME.test(entry.slice(0, colon))) {
    const secret = entry.slice(colon + 1);
    if (secret.length < MIN_SECRET_LENGTH)
      return `the secret of key "${entry.slice(0, colon)}" is shorter than ${MIN_SECRET_LENGTH} characters`;
    if (/\s/.test(secret)) return `the secret of key "${entry.slice(0, colon)}" contains white space`;
    return { name: entry.slice(0, colon), secret };
  }
  if (entry.length < MIN_SECRET_LENGTH) return `a key is shorter than ${MIN_SECRET_LENGTH} characters`;
  if (/\s/.test(entry)) return 'a key contains white space';
  return { secret: entry };
}

/** The lines of an API_KEYS_FILE: one key per line; blank lines and `#` comments are skipped. */
export function keyFileEntries(text: string): Array<{ line: number; entry: string }> {
  const out: Array<{ line: number; entry: string }> = [];
  text.split(/\r?\n/).forEach((l, i) => {
    const entry = l.replace(/(^|\s)#.*$/, '').trim();
    if (entry) out.push({ line: i + 1, entry });
  });
  return out;
}

export class Keyring {
  private readonly keys: Array<{ hash: Buffer; client: ApiClient }>;

  /** Entries must have been validated (the config does that, naming the setting). */
  constructor(entries: readonly string[]) {
    this.keys = entries.map((raw) => {
      const e = parseKeyEntry(raw);
      if (typeof e === 'string') throw new Error(`invalid API key entry: ${e}`);
      const hash = sha256(e.secret);
      const client = e.name
        ? { name: e.name, id: `n_${e.name}` }
        : { name: `key-${hash.toString('hex').slice(0, 8)}`, id: keyId(e.secret) };
      return { hash, client };
    });
  }

  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /**
   * The client whose secret this is. Hashes are compared with timingSafeEqual, every key each time (no early exit),
   * so the answer time says nothing about how much of a key matched or which key it was.
   */
  match(presented: string | undefined): ApiClient | undefined {
    if (presented === undefined || this.keys.length === 0) return undefined;
    const h = sha256(presented);
    let found: ApiClient | undefined;
    for (const k of this.keys) {
      if (timingSafeEqual(h, k.hash) && !found) found = k.client;
    }
    return found;
  }
}

const rings = new WeakMap<readonly string[], Keyring>();

/** One keyring per (frozen) config key list, built on first use. */
export function keyringOf(entries: readonly string[]): Keyring {
  let ring = rings.get(entries);
  if (!ring) {
    ring = new Keyring(entries);
    rings.set(entries, ring);
  }
  return ring;
}
