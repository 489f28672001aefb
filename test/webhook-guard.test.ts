import { describe, expect, it } from 'vitest';
import { ApiError } from '@photoenhance/contracts';
import { guardedLookup, specialRange, takeWebhook } from '../apps/gateway/src/webhooks/url-guard.js';

/** One address in every special-purpose range (IANA IPv4 and IPv6 registries) and every IPv4-carrying form. */
const REFUSED: Array<[string, RegExp]> = [
  // IPv4
  ['0.1.2.3', /unspecified/],
  ['10.1.2.3', /private/],
  ['100.64.0.1', /carrierGradeNat/],
  ['127.0.0.1', /loopback/],
  ['127.255.255.254', /loopback/],
  ['169.254.169.254', /linkLocal/],
  ['172.16.0.1', /private/],
  ['172.31.255.255', /private/],
  ['192.0.0.8', /reserved/],
  ['192.0.2.1', /reserved/],
  ['192.31.196.1', /as112/],
  ['192.52.193.1', /amt/],
  ['192.88.99.1', /reserved/],
  ['192.168.1.1', /private/],
  ['192.175.48.1', /as112/],
  ['198.18.0.1', /reserved/],
  ['198.51.100.1', /reserved/],
  ['203.0.113.1', /reserved/],
  ['224.0.0.1', /multicast/],
  ['240.0.0.1', /reserved/],
  ['255.255.255.255', /broadcast/],
  // IPv6
  ['::', /unspecified/],
  ['::1', /loopback/],
  ['::7f00:1', /ipv4Compatible/],
  ['::8.8.8.8', /ipv4Compatible/],
  ['::ffff:127.0.0.1', /ipv4Mapped to 127\.0\.0\.1 \(loopback\)/],
  ['::ffff:10.0.0.1', /ipv4Mapped to 10\.0\.0\.1 \(private\)/],
  ['::ffff:0:7f00:1', /rfc6145 to 127\.0\.0\.1/],
  ['64:ff9b::7f00:1', /rfc6052 to 127\.0\.0\.1/],
  ['64:ff9b::a9fe:a9fe', /rfc6052 to 169\.254\.169\.254/],
  ['64:ff9b:1::808:808', /rfc8215/],
  ['100::1', /discard/],
  ['2001::1', /teredo/], // server 0.0.0.0
  ['2001:0:4136:e378:8000:63bf:80ff:fffe', /teredo to 127\.0\.0\.1/], // client 127.0.0.1, inverted
  ['2001:1::1', /reserved/],
  ['2001:2::1', /benchmarking/],
  ['2001:3::1', /amt/],
  ['2001:4:112::1', /as112v6/],
  ['2001:10::1', /deprecatedOrchid/],
  ['2001:20::1', /orchid2/],
  ['2001:30::1', /droneRemoteIdProtocolEntityTags/],
  ['2001:db8::1', /reserved/],
  ['2002:7f00:1::', /6to4 to 127\.0\.0\.1/],
  ['2002:c0a8:101::1', /6to4 to 192\.168\.1\.1/],
  ['2620:4f:8000::1', /as112v6/],
  ['3fff::1', /reserved/],
  ['5f00::1', /segmentRouting/],
  ['fc00::1', /uniqueLocal/],
  ['fd12:3456::1', /uniqueLocal/],
  ['fe80::1', /linkLocal/],
  ['fec0::1', /deprecatedSiteLocal/],
  ['ff02::1', /multicast/],
  ['not-an-ip', /not an IP address/],
];

const PUBLIC = [
  '8.8.8.8',
  '1.1.1.1',
  '93.184.216.34',
  '2606:4700:4700::1111',
  '2001:4860:4860::8888',
  '::ffff:8.8.8.8',
  '64:ff9b::808:808',
  '2002:808:808::1',
  '2001:0:4136:e378:8000:63bf:f7f7:f7f7',
];

describe('webhook address guard', () => {
  it.each(REFUSED)('refuses %s', (address, why) => {
    expect(specialRange(address)).toMatch(why);
  });

  it.each(PUBLIC)('allows the public address %s', (address) => {
    expect(specialRange(address)).toBeUndefined();
  });

  it('refuses literal special-purpose hosts in submitted webhook URLs with WEBHOOK_URL_REFUSED', async () => {
    for (const url of [
      'http://[::7f00:1]/hook',
      'http://[::ffff:0:7f00:1]/',
      'http://[2002:7f00:1::]/',
      'http://[64:ff9b::7f00:1]/',
      'http://[fec0::1]/',
      'http://[100::1]/',
      'http://2130706433/',
      'http://0x7f.1/',
    ]) {
      const err = await takeWebhook({ webhook: url }, { secret: 'a-secret-of-16-chars', allowPrivate: false }).catch((e: unknown) => e);
      expect(err, url).toBeInstanceOf(ApiError);
      expect((err as ApiError).code).toBe('WEBHOOK_URL_REFUSED');
      expect((err as ApiError).extensions.reason).toBe('private-address');
    }
  });

  it('refuses at connection time when a name resolves to loopback', async () => {
    const err = await new Promise<Error | null>((resolve) => guardedLookup(false)('localhost', { all: false }, (e) => resolve(e)));
    expect(err?.message).toMatch(/localhost resolves to/);
  });
});
