import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { lookup as dnsLookupAsync } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { ApiError, WEBHOOK_EVENTS, type WebhookEvent } from '@photoenhance/contracts';

/** Addresses a webhook may never reach unless the operator allows it (WEBHOOK_ALLOW_PRIVATE). */
const BLOCKED = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) BLOCKED.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['2001:db8::', 32]] as const) BLOCKED.addSubnet(net, bits, 'ipv6');

/** Loopback, private, link-local, CGNAT, multicast, documentation or unspecified: not a public address. */
export function isPrivateAddress(address: string): boolean {
  const v = isIP(address);
  if (v === 4) return BLOCKED.check(address, 'ipv4');
  if (v === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return BLOCKED.check(mapped[1]!, 'ipv4');
    return BLOCKED.check(address, 'ipv6');
  }
  return true;
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
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new WebhookRefused('scheme', `The webhook must use http or https, not ${u.protocol.replace(':', '')}`);
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
      throw new WebhookRefused('unresolvable', `The webhook host ${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  const bad = addresses.filter(isPrivateAddress);
  if (bad.length > 0) throw new WebhookRefused('private-address', `The webhook host ${host} resolves to a loopback, private or link-local address (${bad.join(', ')})`);
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
        return (callback as (e: Error | null, a: LookupAddress[]) => void)(new WebhookRefused('private-address', `${hostname} resolves to ${bad.map((a) => a.address).join(', ') || 'nothing'}`), []);
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
export async function takeWebhook(fields: Record<string, string>, opts: { secret?: string; allowPrivate: boolean }): Promise<WebhookSpec | undefined> {
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
    const events = rawEvents === undefined ? [...WEBHOOK_EVENTS] : rawEvents.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = events.filter((e) => !(WEBHOOK_EVENTS as readonly string[]).includes(e));
    if (unknown.length || events.length === 0) {
      throw new WebhookRefused('invalid-events', `"webhookEvents" must be a comma list of ${WEBHOOK_EVENTS.join(', ')}; received ${JSON.stringify(rawEvents)}`);
    }
    return { url, events: [...new Set(events)] as WebhookEvent[] };
  } catch (err) {
    if (err instanceof WebhookRefused) throw refusal(err, url);
    throw err;
  }
}
