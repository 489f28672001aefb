import type { FastifyInstance } from 'fastify';
import ipaddr from 'ipaddr.js';
import { ApiError } from '@photoenhance/contracts';
import type { GatewayConfig } from '../config.js';
import { sendProblem } from '../problems.js';

/**
 * The gateway answers only for its own host names, so a web page cannot reach it through DNS rebinding (a name the
 * attacker controls, re-pointed at 127.0.0.1, would make the browser treat the gateway as the attacker's origin).
 *
 * Served: loopback names (`localhost`, `*.localhost`), any IP address literal (a rebinding attack always goes through a
 * DNS name: a page whose origin is an IP address is that address's own), the bound HOST, PUBLIC_URL's host, and
 * ALLOWED_HOSTS (exact names, `.example.com` for a domain and its subdomains, `*` for any). Everything else gets 421
 * HOST_NOT_ALLOWED. Probes stay answerable whatever Host a load balancer sends. Ports are not compared: a proxy may
 * listen on another.
 */

const PROBES = new Set(['/health', '/healthz', '/readyz']);

/** The host name of a Host header, normalised by the WHATWG URL parser (lower case, IPs canonical), or undefined. */
export function hostName(header: string): string | undefined {
  try {
    const h = new URL(`http://${header}`);
    if (h.username || h.password || h.pathname !== '/' || h.search || h.hash) return undefined;
    return h.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
  } catch {
    return undefined;
  }
}

function isIpLiteral(name: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(name) || ipaddr.IPv6.isValid(name);
}

/** A predicate over Host headers for this configuration. */
export function hostPolicy(
  config: Readonly<Pick<GatewayConfig, 'host' | 'publicUrl' | 'allowedHosts'>>,
): (header: string | undefined) => boolean {
  const names = new Set<string>(['localhost']);
  const suffixes: string[] = [];
  let any = false;
  const add = (raw: string): void => {
    const entry = raw.trim().toLowerCase();
    if (!entry) return;
    if (entry === '*') any = true;
    else if (entry.startsWith('.')) suffixes.push(entry);
    else {
      const name = hostName(entry);
      if (name) names.add(name);
    }
  };
  add(config.host);
  if (config.publicUrl) {
    try {
      add(new URL(config.publicUrl).host);
    } catch {
      // PUBLIC_URL is only used for links; an unparsable one adds no name.
    }
  }
  config.allowedHosts.forEach(add);
  return (header) => {
    if (any || header === undefined) return true; // no Host at all (HTTP/1.0) cannot come from a browser page
    const name = hostName(header);
    if (name === undefined) return false;
    if (isIpLiteral(name) || name.endsWith('.localhost') || names.has(name)) return true;
    return suffixes.some((s) => name.endsWith(s) || name === s.slice(1));
  };
}

/** Refuse requests for other host names before anything else runs. Register before any route. */
export function installHostCheck(app: FastifyInstance): void {
  const allowed = hostPolicy(app.config);
  app.addHook('onRequest', async (req, reply) => {
    if (allowed(req.headers.host) || PROBES.has(req.url.split('?')[0] ?? '')) return;
    const shown = (req.headers.host ?? '').slice(0, 100);
    req.log.info({ host: shown }, 'request refused: host name not served');
    await sendProblem(
      reply,
      new ApiError('HOST_NOT_ALLOWED', `This gateway does not serve the host name ${JSON.stringify(shown)}`, {
        extensions: { host: shown },
      }),
      req.url,
    );
  });
}
