/**
 * `npm run bench -- scale`: the system over separate network hosts (namespaces, test/support/netns.ts), root only.
 *
 * - Throughput with a fixed 100 ms engine (one engine per host) on 1, 2 and 3 worker hosts sharing one Redis: jobs are
 *   queued while every host holds (admission override), then released together; rate = completions / (last − first
 *   completion) from the workers' own log times. Goal ≥ 0.9 × linear.
 * - Failover (Redis master + replica + three sentinels): a steady stream of submissions, the master SIGKILLed; time from
 *   its death to the first completed job accepted after it, accepted jobs lost.
 * - Gateway RSS during a 50 MiB upload to S3 (s3rver): peak VmRSS of the gateway process above its idle RSS. Goal ≤ 8 MiB.
 *   Beside it, to a local folder, the gateway and its honest peer (bench/minimal-gateway.ts) on the same host.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Row } from './spine.js';
import { fixtureEngine, REPO } from '../test/support/stack.js';
import { netnsUnavailable, startMultiHost, type MultiHost, type RoleHost } from '../test/support/netns.js';

const SECTION = 'scale (network namespaces)';
/** The gateway listens on a non-loopback address, so operator calls (admission override) need a token. */
const OPERATOR_TOKEN = 'scale-bench-operator-token-0123456789abcdef';

export async function benchScale(opts: { quick: boolean }): Promise<Row[]> {
  const why = netnsUnavailable();
  if (why) return [{ section: SECTION, metric: 'skipped', value: 0, unit: '', note: why }];
  // SCALE_PARTS=throughput,failover,rss runs some parts only (all by default).
  const parts = new Set((process.env.SCALE_PARTS ?? 'throughput,failover,rss').split(','));
  const rows: Row[] = [];
  if (parts.has('throughput')) {
    // Both storages: one folder shows the queue's own scaling; S3 adds the object-store traffic (on one small machine
    // the s3rver process competes with the workers for the same cores).
    rows.push(...(await throughput(opts.quick ? 30 : 100, false)));
    rows.push(...(await throughput(opts.quick ? 30 : 100, true)));
  }
  if (parts.has('failover')) rows.push(...(await failover(opts.quick)));
  if (parts.has('rss')) rows.push(...(await uploadRss('s3')), ...(await uploadRss('shared-dir')));
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------------

async function throughput(perHost: number, s3: boolean): Promise<Row[]> {
  const mh = await startMultiHost({
    gateways: 1,
    workers: 3,
    redis: 'single',
    storage: s3 ? 's3' : 'shared-dir',
    engines: [fixtureEngine('fixed100', 'sleep', 100)],
    gatewayEnv: {
      KNOWN_ENGINES: 'fixed100',
      DEFAULT_ENGINE: 'fixed100',
      LOG_LEVEL: 'warn',
      HOLDING_GRACE_MS: '600000',
      DASHBOARD_TOKEN: OPERATOR_TOKEN,
    },
    workerEnv: { ADMISSION_CHECK_MS: '50', HEARTBEAT_MS: '250' },
    deferWorkers: true,
  });
  const rows: Row[] = [];
  try {
    const gw = mh.gateways[0]!;
    const photo = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
      .jpeg()
      .toBuffer();
    const rates: number[] = [];
    for (const k of [1, 2, 3]) {
      const hosts = mh.workers.slice(0, k);
      await Promise.all(hosts.map((w) => w.restart()));
      await until(`${k} worker host(s) listed`, async () => (await systemHosts(gw.url)).length === k, 60_000);
      const thresholds = (await systemHosts(gw.url))[0]!.admission.thresholds;
      // Hold every host (no host has 1 PiB free), queue the jobs, then release them all at once.
      await setAdmission(gw.url, { minAvailableBytes: 2 ** 50 });
      await until('every host to hold', async () => (await systemHosts(gw.url)).every((h) => h.admission.state === 'holding'), 30_000);
      const n = perHost * k;
      const { ids, retried } = await submitAll(gw.url, photo, n, 8);
      // Each run starts its hosts afresh, so their logs hold only this run's completions.
      await setAdmission(gw.url, thresholds);
      await until(`${n} jobs completed on ${k} host(s)`, () => completionTimes(hosts).length >= n, 60_000 + n * 200, 100);
      const times = completionTimes(hosts).sort((a, b) => a - b);
      const perHostDone = hosts.map((w) => completionTimes([w]).length);
      const rate = (n - 1) / ((times[times.length - 1]! - times[0]!) / 1000);
      rates.push(rate);
      const linear = k === 1 ? 1 : rate / (k * rates[0]!);
      rows.push({
        section: SECTION,
        metric: `throughput, fixed 100 ms engine, ${k} worker host${k > 1 ? 's' : ''}`,
        value: rate,
        unit: 'jobs/s',
        ...(k > 1 ? { goal: '≥ 0.9 × linear' } : {}),
        note: `${k > 1 ? `${linear.toFixed(2)} × linear; ` : ''}${n} jobs (${ids.length} accepted), per host ${perHostDone.join('/')}${retried.length ? `; ${retried.length} submissions retried after 503 (${[...new Set(retried)].join(', ')})` : ''}; storage ${s3 ? 's3rver' : 'one folder'}`,
      });
      console.error(`scale: ${k} host(s) ${rate.toFixed(2)} jobs/s`);
      for (const w of hosts) await w.proc.stop('SIGTERM', 30_000);
      await until('the stopped hosts to leave /v1/system', async () => (await systemHosts(gw.url)).length === 0, 30_000);
    }
    rows.push({
      section: SECTION,
      metric: `scaling, 3 hosts vs 1 (${s3 ? 's3rver' : 'one folder'})`,
      value: rates[2]! / (3 * rates[0]!),
      unit: '× linear',
      goal: '≥ 0.9',
    });
  } finally {
    await mh.close();
  }
  return rows;
}

async function failover(quick: boolean): Promise<Row[]> {
  const mh = await startMultiHost({
    gateways: 1,
    workers: 2,
    redis: 'sentinel',
    storage: 's3',
    engines: [fixtureEngine('fixed100', 'sleep', 100)],
    gatewayEnv: { KNOWN_ENGINES: 'fixed100', DEFAULT_ENGINE: 'fixed100', LOG_LEVEL: 'warn', JOB_ATTEMPTS: '6', JOB_BACKOFF_MS: '1000' },
  });
  try {
    const gw = mh.gateways[0]!;
    const sentinel = mh.sentinel!;
    const photo = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
      .jpeg()
      .toBuffer();
    const accepted: Array<{ id: string; at: number }> = [];
    const refused: number[] = [];
    let stop = false;
    const lanes = Array.from({ length: 3 }, async () => {
      for (let i = 0; !stop && i < 2000; i++) {
        const at = Date.now();
        const r = await submitOnce(gw.url, photo);
        if (r.id) accepted.push({ id: r.id, at });
        else refused.push(r.status);
        await new Promise((res) => setTimeout(res, 50));
      }
    });
    let killAt = 0;
    let resumeMs = NaN;
    let promotedMs = NaN;
    try {
      await until('jobs flowing before the kill', () => completionTimes(mh.workers).length >= (quick ? 10 : 30), 60_000, 50);
      const old = await sentinel.currentMaster();
      killAt = Date.now();
      await sentinel.nodeAt(old)!.kill('SIGKILL');
      await sentinel.waitForFailover(old, 30_000);
      promotedMs = Date.now() - killAt;
      await until(
        'a job accepted after the kill to complete',
        async () => {
          for (const a of accepted.filter((x) => x.at > killAt).slice(0, 10))
            if ((await jobStatus(gw.url, a.id)) === 'completed') return true;
          return false;
        },
        90_000,
        50,
      );
      resumeMs = Date.now() - killAt;
      await until('more jobs after the failover', () => accepted.filter((a) => a.at > killAt).length >= 30, 30_000, 100);
    } finally {
      stop = true;
      await Promise.all(lanes);
    }
    const statuses = await settle(
      gw.url,
      accepted.map((a) => a.id),
      120_000,
    );
    const lost = statuses.filter((s) => s !== 'completed').length;
    return [
      {
        section: SECTION,
        metric: 'failover: master SIGKILL → first completed job accepted after it',
        value: resumeMs / 1000,
        unit: 's',
        note: `Sentinel promoted the replica after ${(promotedMs / 1000).toFixed(1)} s (down-after 1 s); ${refused.length} submissions refused meanwhile (${[...new Set(refused)].join(', ') || 'none'})`,
      },
      {
        section: SECTION,
        metric: 'failover: accepted jobs lost',
        value: lost,
        unit: 'jobs',
        goal: '0',
        note: `of ${accepted.length} accepted (202) during the run`,
      },
    ];
  } finally {
    await mh.close();
  }
}

async function uploadRss(storage: 's3' | 'shared-dir'): Promise<Row[]> {
  const maxUpload = String(64 * 1024 * 1024);
  const mh = await startMultiHost({
    gateways: 1,
    workers: 0,
    redis: 'single',
    storage,
    engines: [],
    gatewayEnv: {
      LOG_LEVEL: 'warn',
      MAX_UPLOAD_BYTES: maxUpload,
      MAX_PIXELS: String(100_000_000),
      // No worker runs here: accept the job to wait (without this the upload is read, then refused with 503).
      KNOWN_ENGINES: 'classic',
      ACCEPT_WITHOUT_WORKER: 'true',
    },
  });
  const peerDir = mkdtempSync(join(tmpdir(), 'pe-scale-peer-'));
  try {
    const gw = mh.gateways[0]!;
    const targets: Array<{ name: string; pid: number; url: string }> = [{ name: 'gateway', pid: gw.proc.proc.pid!, url: gw.url }];
    if (storage === 'shared-dir') {
      // The honest peer on the same host and network path: Fastify + @fastify/multipart streaming the upload to a file,
      // then queue.add (bench/minimal-gateway.ts, the intake bench's peer).
      const peer = gw.host.spawn(process.execPath, ['--import', 'tsx', join(REPO, 'bench/minimal-gateway.ts')], {
        cwd: REPO,
        env: { ...process.env, ...mh.env, HOST: gw.host.address, PORT: '8081', STORAGE_DIR: peerDir, MAX_UPLOAD_BYTES: maxUpload },
        label: `${gw.host.name}:minimal-gateway`,
      });
      targets.push({ name: 'minimal gateway', pid: peer.proc.pid!, url: (await peer.waitForLine(/^http:\/\/\S+/, 30_000)).trim() });
    }
    const small = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#888' } })
      .jpeg()
      .toBuffer();
    // Warm up (module loading, JIT, the S3 client's first connection) so "idle" is the server as it runs.
    for (const t of targets) for (let i = 0; i < 5; i++) await submitOnce(t.url, small, 'classic');
    const rows: Row[] = [];
    const where = storage === 's3' ? 'S3' : 'a local folder';
    // padded: a 1 MP photo carried in 50 MiB (APP15 segments the decoder skips), so what is measured is the upload path;
    // noise: 23 MP of noise at quality 100, so the gateway's decode check of the pixels is in the figure too.
    for (const kind of storage === 's3' ? (['padded', 'noise'] as const) : (['padded'] as const)) {
      const big = kind === 'padded' ? await paddedJpeg(50 * 1024 * 1024) : await noiseJpeg(50 * 1024 * 1024);
      const added: number[] = [];
      for (const t of targets) {
        const m = await rssDuringUpload(t.pid, t.url, big);
        added.push(m.peak - m.idle);
        rows.push({
          section: SECTION,
          metric:
            kind === 'noise'
              ? "the same with a 23 MP noise JPEG (the decode check's own memory included)"
              : `${t.name === 'gateway' ? 'gateway' : 'peer: minimal gateway'} RSS above idle during a 50 MiB upload to ${where}`,
          value: (m.peak - m.idle) / 1024 / 1024,
          unit: 'MiB',
          ...(storage === 's3' && kind === 'padded' ? { goal: '≤ 8' } : {}),
          note: `idle ${(m.idle / 1024 / 1024).toFixed(1)} MiB, peak ${(m.peak / 1024 / 1024).toFixed(1)} MiB; ${(big.length / 1024 / 1024).toFixed(1)} MiB JPEG answered ${m.status}${m.detail ? ` ${m.detail}` : ''} in ${m.ms} ms`,
        });
      }
      if (added.length === 2) {
        rows.push({
          section: SECTION,
          metric: 'gateway ÷ peer, RSS added by a 50 MiB upload to a local folder',
          value: added[0]! / added[1]!,
          unit: '×',
          note: 'both on the same namespace host, the same upload from the same client, one after the other',
        });
      }
    }
    return rows;
  } finally {
    await mh.close();
    rmSync(peerDir, { recursive: true, force: true });
  }
}

/** Peak VmRSS of `pid` while it takes `body` as one upload, against its idle RSS (the lowest over a second before). */
async function rssDuringUpload(
  pid: number,
  url: string,
  body: Buffer,
): Promise<{ idle: number; peak: number; status: number; detail?: string; ms: number }> {
  await new Promise((r) => setTimeout(r, 1000));
  const idle = Math.min(...(await sampleFor(pid, 1000)));
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, rssOf(pid));
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const t0 = Date.now();
  const r = await submitOnce(url, body, 'classic');
  const ms = Date.now() - t0;
  sampling = false;
  await sampler;
  return { idle, peak, status: r.status, ...(r.detail ? { detail: r.detail } : {}), ms };
}

// ---------------------------------------------------------------------------------------------------------------------

/** A real 1 MP JPEG of exactly `bytes`: APP15 segments (skipped by every decoder) right after SOI carry the bulk. */
async function paddedJpeg(bytes: number): Promise<Buffer> {
  const photo = await sharp({ create: { width: 1280, height: 800, channels: 3, background: '#6a8' } })
    .jpeg({ quality: 90 })
    .toBuffer();
  const segments: Buffer[] = [];
  let left = bytes - photo.length;
  const noise = Buffer.alloc(65_533);
  for (let i = 0; i + 4 <= noise.length; i += 4) noise.writeUInt32LE((Math.random() * 0x100000000) >>> 0, i);
  while (left > 4) {
    const len = Math.min(65_533, left - 4);
    const head = Buffer.from([0xff, 0xef, (len + 2) >> 8, (len + 2) & 0xff]);
    segments.push(head, noise.subarray(0, len));
    left -= len + 4;
  }
  return Buffer.concat([photo.subarray(0, 2), ...segments, photo.subarray(2)]);
}

/** A real JPEG of about `bytes` (noise at quality 100 barely compresses). */
async function noiseJpeg(bytes: number): Promise<Buffer> {
  let side = Math.round(Math.sqrt(bytes / 2.2));
  for (let i = 0; i < 6; i++) {
    const raw = Buffer.alloc(side * side * 3);
    for (let j = 0; j + 4 <= raw.length; j += 4) raw.writeUInt32LE((Math.random() * 0x100000000) >>> 0, j);
    const jpeg = await sharp(raw, { raw: { width: side, height: side, channels: 3 } })
      .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
      .toBuffer();
    if (Math.abs(jpeg.length - bytes) < bytes * 0.03) return jpeg;
    side = Math.round(side * Math.sqrt(bytes / jpeg.length));
  }
  throw new Error('could not make a JPEG of the wanted size');
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function sampleFor(pid: number, ms: number): Promise<number[]> {
  const out: number[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    out.push(rssOf(pid));
    await new Promise((r) => setTimeout(r, 20));
  }
  return out;
}

async function submitOnce(
  url: string,
  photo: Buffer,
  engine?: string,
): Promise<{ id?: string; status: number; detail?: string; retryAfter?: number }> {
  const form = new FormData();
  if (engine) form.append('engine', engine);
  form.append('image', new Blob([photo], { type: 'image/jpeg' }), 'photo.jpg');
  try {
    const res = await fetch(`${url}/v1/jobs`, { method: 'POST', body: form, signal: AbortSignal.timeout(60_000) });
    const body = (await res.json().catch(() => ({}))) as { id?: string; code?: string; detail?: string };
    return res.status === 202
      ? { id: body.id!, status: 202 }
      : { status: res.status, detail: `${body.code}: ${body.detail}`, retryAfter: Number(res.headers.get('retry-after') ?? 1) };
  } catch {
    return { status: 0 };
  }
}

/** Submit `n` jobs as a well-behaved client: a 503 is retried after its Retry-After (bounded), anything else is fatal. */
async function submitAll(url: string, photo: Buffer, n: number, concurrency: number): Promise<{ ids: string[]; retried: string[] }> {
  const ids: string[] = [];
  const retried: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        for (let attempt = 0; ; attempt++) {
          const r = await submitOnce(url, photo);
          if (r.id) {
            ids.push(r.id);
            break;
          }
          if (r.status !== 503 || attempt >= 30) throw new Error(`submission refused with ${r.status} ${r.detail ?? ''}`);
          retried.push(r.detail?.split(':')[0] ?? '503');
          await new Promise((res) => setTimeout(res, Math.min(5, r.retryAfter ?? 1) * 1000));
        }
      }
    }),
  );
  return { ids, retried };
}

async function jobStatus(url: string, id: string): Promise<string | undefined> {
  try {
    const res = await fetch(`${url}/v1/jobs/${id}`, { signal: AbortSignal.timeout(5000) });
    return res.status === 200 ? ((await res.json()) as { status: string }).status : undefined;
  } catch {
    return undefined;
  }
}

async function settle(url: string, ids: string[], timeoutMs: number): Promise<string[]> {
  const last = new Map<string, string>();
  const open = new Set(ids);
  const deadline = Date.now() + timeoutMs;
  while (open.size && Date.now() < deadline) {
    await Promise.all(
      [...open].slice(0, 50).map(async (id) => {
        const s = await jobStatus(url, id);
        if (s) last.set(id, s);
        if (s === 'completed' || s === 'failed') open.delete(id);
      }),
    );
    if (open.size) await new Promise((r) => setTimeout(r, 250));
  }
  return ids.map((id) => last.get(id) ?? 'unknown');
}

interface HostView {
  hostId: string;
  admission: { state: string; thresholds: { minAvailableBytes: number; maxUsedRatio: number; maxPressureSome10: number } };
}

async function systemHosts(url: string): Promise<HostView[]> {
  const res = await fetch(`${url}/v1/system`, { signal: AbortSignal.timeout(5000) });
  return ((await res.json()) as { hosts: HostView[] }).hosts;
}

async function setAdmission(url: string, body: Record<string, number>): Promise<void> {
  const res = await fetch(`${url}/v1/system/hosts/*/admission`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${OPERATOR_TOKEN}` },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`PUT admission answered ${res.status}: ${await res.text()}`);
}

function completionTimes(workers: RoleHost[]): number[] {
  const out: number[] = [];
  for (const w of workers) {
    for (const line of w.proc?.lines ?? []) {
      if (!line.includes('"msg":"job completed"')) continue;
      try {
        out.push(Number((JSON.parse(line) as { time: number }).time));
      } catch {
        // not a record
      }
    }
  }
  return out;
}

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`scale bench: timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export type { MultiHost };
