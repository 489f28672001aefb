import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { lookup as dnsLookupAsync } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { ApiError, WEBHOOK_EVENTS, type WebhookEvent } from '@photoenhance/contracts';

/**
 * Transition ranges that carry an IPv4 address inside an IPv6 one (RFC 4291 mapped, RFC 6145 translated, RFC 6052
 * NAT64, RFC 3056 6to4, RFC 4380 Teredo): allowed only when every embedded IPv4 address is itself public.
 */
const EMBEDS_IPV4 = new Set(['ipv4Mapped', 'rfc6145', 'rfc6052', '6to4', 'teredo']);

function v4(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

/** The IPv4 addresses an IPv6 address of a transition range leads to. */
export function embeddedIpv4(ip: ipaddr.IPv6, range: string): ipaddr.IPv4[] {
  const p = ip.parts;
  switch (range) {
    case '6to4':
      return [v4(p[1]!, p[2]!)];
    case 'teredo':
      // Server address in bits 32-63; client address in the last 32 bits, inverted.
      return [v4(p[2]!, p[3]!), v4(~p[6]! & 0xffff, ~p[7]! & 0xffff)];
    case 'ipv4Compatible':
    case 'ipv4Mapped':
    case 'rfc6145':
    case 'rfc6052':
      return [v4(p[6]!, p[7]!)];
    default:
      return [];
  }
}

/**
 * Why an address is not a public unicast one, or undefined when it is. Ranges come from ipaddr.js, which follows the
 * IANA IPv4 and IPv6 special-purpose address registries (loopback, private, link-local, CGNAT, multicast,
 * documentation, benchmarking, reserved, discard-only, ORCHID, unique-local, deprecated site-local, ...); embedded IPv4
 * addresses are decoded and judged too. IPv4-compatible IPv6 (::a.b.c.d, deprecated by RFC 4291), which ipaddr.js
 * calls unicast, is refused outright, as is NAT64's local-use prefix 64:ff9b:1::/48 (RFC 8215).
 */
export function specialRange(address: string): string | undefined {
  if (isIP(address) === 6) address = canonicalIpv6(address);
  if (!ipaddr.isValid(address)) return 'not an IP address';
  const ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv4') {
    const range = ip.range();
    return range === 'unicast' ? undefined : range;
  }
  const v6 = ip as ipaddr.IPv6;
  const range = v6.range();
  if (range === 'unicast') {
    return v6.parts.slice(0, 6).every((x) => x === 0) ? 'ipv4Compatible (deprecated)' : undefined;
  }
  if (range === 'rfc6052' && v6.parts[2] !== 0) return 'rfc8215 (local-use NAT64)';
  if (EMBEDS_IPV4.has(range)) {
    for (const inner of embeddedIpv4(v6, range)) {
      const innerRange = inner.range();
      if (innerRange !== 'unicast') return `${range} to ${inner.toString()} (${innerRange})`;
    }
    return undefined;
  }
  return range;
}

/** IPv6 in hex groups only: ipaddr.js reads the dotted tail of `::8.8.8.8` (IPv4-compatible) as IPv4-mapped. */
function canonicalIpv6(address: string): string {
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

/** Loopback, private, link-local, CGNAT, multicast, documentation, reserved, ...: not a public address. */
export function isPrivateAddress(address: string): boolean {
  return specialRange(address) !== undefined;
}

export type RefusalReason = 'not-configured' | 'invalid-url' | 'scheme' | 'unresolvable' | 'private-address' | 'invalid-events';

export class WebhookRefused extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'WebhookRefused';
  }
}

export function refusal(err: WebhookRefused, url: string): ApiError {
  return new ApiError('WEBHOOK_URL_REFUSED', err.message, { extensions: { reason: err.reason, webhook: url.slice(0, 200) } });
}

function parseUrl(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new WebhookRefused('invalid-url', `The webhook ${JSON.stringify(raw.slice(0, 100))} is not an absolute URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new WebhookRefused('scheme', `The webhook must use http or https, not ${u.protocol.replace(':', '')}`);
  return u;
}

/**
 * Resolve the webhook's host and check every address it resolves to. Called at submission (a clear 400) and again by
 * the delivery itself (DNS may change in between), which connects only to an address checked here.
 */
export async function assertDeliverable(raw: string, allowPrivate: boolean): Promise<URL> {
  const u = parseUrl(raw);
  if (allowPrivate) return u;
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await dnsLookupAsync(host, { all: true, verbatim: true })).map((a) => a.address);
    } catch (err) {
      throw new WebhookRefused(
        'unresolvable',
        `The webhook host ${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
  }
  const bad = addresses.map((a) => [a, specialRange(a)] as const).filter(([, r]) => r !== undefined);
  if (bad.length > 0) {
    throw new WebhookRefused(
      'private-address',
      `The webhook host ${host} resolves to a non-public address (${bad.map(([a, r]) => `${a}: ${r}`).join(', ')})`,
    );
  }
  return u;
}

/** A DNS lookup for http.request that refuses private addresses at connection time (no check-then-use gap). */
export function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, result) => {
      const list = (Array.isArray(result) ? result : []) as LookupAddress[];
      if (err) return (callback as (e: Error | null, a: LookupAddress[]) => void)(err, []);
      const bad = allowPrivate ? [] : list.filter((a) => isPrivateAddress(a.address));
      if (bad.length > 0 || list.length === 0) {
        return (callback as (e: Error | null, a: LookupAddress[]) => void)(
          new WebhookRefused('private-address', `${hostname} resolves to ${bad.map((a) => a.address).join(', ') || 'nothing'}`),
          [],
        );
      }
      if (options.all) return (callback as (e: Error | null, a: LookupAddress[]) => void)(null, list);
      const first = list[0]!;
      return (callback as (e: Error | null, a: string, f: number) => void)(null, first.address, first.family);
    });
  };
}

export interface WebhookSpec {
  url: string;
  events: WebhookEvent[];
}

/**
 * Take `webhook` and `webhookEvents` out of submission fields (the rest are job options) and check them.
 * Throws 400 WEBHOOK_URL_REFUSED with a `reason`.
 */
export async function takeWebhook(
  fields: Record<string, string>,
  opts: { secret?: string; allowPrivate: boolean },
): Promise<WebhookSpec | undefined> {
  const url = fields.webhook?.trim();
  const rawEvents = fields.webhookEvents;
  delete fields.webhook;
  delete fields.webhookEvents;
  if (!url) {
    if (rawEvents !== undefined) throw refusal(new WebhookRefused('invalid-events', '"webhookEvents" was sent without "webhook"'), '');
    return undefined;
  }
  try {
    if (!opts.secret) throw new WebhookRefused('not-configured', 'This gateway sends no webhooks: its operator has not set WEBHOOK_SECRET');
    await assertDeliverable(url, opts.allowPrivate);
    const events =
      rawEvents === undefined
        ? [...WEBHOOK_EVENTS]
        : rawEvents
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
    const unknown = events.filter((e) => !(WEBHOOK_EVENTS as readonly string[]).includes(e));
    if (unknown.length || events.length === 0) {
      throw new WebhookRefused(
        'invalid-events',
        `"webhookEvents" must be a comma list of ${WEBHOOK_EVENTS.join(', ')}; received ${JSON.stringify(rawEvents)}`,
      );
    }
    return { url, events: [...new Set(events)] as WebhookEvent[] };
  } catch (err) {
    if (err instanceof WebhookRefused) throw refusal(err, url);
    throw err;
  }
}
