import { copyFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type sharp from 'sharp';
import {
  OUTPUT_FORMATS,
  SCALES,
  type DoneMessage,
  type EngineOffer,
  type EngineProcessState,
  type OutputFormat,
} from '@photoenhance/contracts';
import { engineFailure } from './child-failure.js';
import { memoryLimitError, MEMORY_GRACE_MS } from './engine-process.js';
import { governorClosed, PendingJobs, PoolBase } from './pool-base.js';
import { SupervisedChild, type ChildExit } from './supervised-child.js';
import { EngineJobError, type RunHooks, type RunRequest, type RunResult } from './types.js';

/** Job options a oneshot command may name as {placeholders}; those it names are reported as applied. */
const OPTION_PLACEHOLDERS = ['scale', 'version', 'bgTile', 'weight', 'quality', 'format'] as const;

/** How long a oneshot start holds the host-wide start queue: until it exits or this long (its start-up peak). */
export const ONESHOT_START_WINDOW_MS = 1_000;

/** Substitute {name} in one argument; unknown names stay as written. Each argument stays one argument. */
export function substitute(arg: string, vars: Record<string, string>): string {
  return arg.replace(/\{(\w+)\}/g, (m, k: string) => (Object.hasOwn(vars, k) ? vars[k]! : m));
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|\\]/g, '\\$&')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}

/** The output a oneshot run wrote: a path, or a glob on the file name (newest match wins). */
async function findOutput(pattern: string): Promise<string | undefined> {
  if (!/[*?]/.test(pattern)) return (await stat(pattern).catch(() => undefined))?.isFile() ? pattern : undefined;
  const dir = dirname(pattern);
  const re = globToRegExp(basename(pattern));
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => re.test(n));
  const stats = await Promise.all(names.map(async (n) => ({ p: join(dir, n), s: await stat(join(dir, n)).catch(() => undefined) })));
  return stats.filter((x) => x.s?.isFile()).sort((a, b) => b.s!.mtimeMs - a.s!.mtimeMs)[0]?.p;
}

/**
 * One-shot engines: one process per job from an argv template ({input} {output} … substituted per argument, never a
 * shell), at most poolSize at once, each started through the host-wide start queue and watched like a resident one.
 */
export class OneshotPool extends PoolBase {
  private readonly pending = new PendingJobs(this.profile.name);
  private running = new Set<SupervisedChild>();
  // prewarm stays false: nothing to pre-warm, every job is a cold start

  /** Holding for this engine only while its backoff lasts; the next job is the next try. */
  failing(): boolean {
    return this.failures >= this.ctx.startFailureLimit && Date.now() < this.backoffUntil;
  }

  demandSince(now: number): number | undefined {
    if (this.closed || now < this.backoffUntil || this.running.size >= this.profile.poolSize) return undefined;
    return this.pending.oldestSince;
  }

  run(req: RunRequest, hooks: RunHooks = {}): Promise<RunResult> {
    const refused = this.refusal(hooks) ?? (this.failing() ? this.startFailedError() : undefined);
    if (refused) return Promise.reject(refused);
    return this.pending.add(req, hooks, () => this.ctx.pump());
  }

  async startOne(): Promise<{ pid: number | undefined; ok: boolean }> {
    const [job] = this.pending.take(1);
    if (!job) return { pid: undefined, ok: false };
    const { req, hooks } = job;
    const p = this.profile;
    const vars: Record<string, string> = {
      id: req.id,
      input: req.input,
      output: req.output,
      outputDir: dirname(req.output),
      scale: String(req.options.scale),
      version: String(req.options.version),
      bgTile: String(req.options.bgTile),
      weight: String(req.options.weight),
      quality: String(req.options.quality),
      format: req.options.format,
    };
    const child = new SupervisedChild({
      label: p.name,
      slotName: this.ctx.slotName(p.name),
      argv: p.command.map((a) => substitute(a, vars)),
      env: p.env,
      ...(p.cwd ? { cwd: p.cwd } : {}),
      limitBytes: p.memoryLimitBytes,
      ...(p.cpuQuota ? { cpuQuota: p.cpuQuota } : {}),
      ...(p.maxOpenFiles ? { maxOpenFiles: p.maxOpenFiles } : {}),
      plan: this.ctx.plan(),
      memoryGraceMs: Math.min(MEMORY_GRACE_MS, p.stopGraceMs),
      logger: this.ctx.logger.child({ profile: p.name }),
    });
    const t0 = Date.now();
    let stopped: 'timeout' | 'cancel' | undefined;
    const timer = setTimeout(() => {
      stopped ??= 'timeout';
      void child.terminate('timeout', p.stopGraceMs);
    }, p.jobTimeoutMs);
    const onAbort = (): void => {
      stopped ??= 'cancel';
      void child.terminate('cancel', p.stopGraceMs);
    };
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('stderr', (l: string) => hooks.onLog?.(l));
    child.on('stdout', (l: string) => hooks.onLog?.(l));
    this.running.add(child);
    child.spawn();
    void child.exited.then(async (exit) => {
      clearTimeout(timer);
      hooks.signal?.removeEventListener('abort', onAbort);
      this.running.delete(child);
      try {
        const done = await this.finish(child, exit, stopped, req, vars);
        job.resolve({
          done,
          engine: { name: p.name, version: 'oneshot', pid: child.pid },
          timings: { waitMs: t0 - job.since, runMs: Date.now() - t0 },
        });
      } catch (e) {
        job.reject(e);
      } finally {
        this.ctx.pump();
      }
    });
    await Promise.race([child.exited, delay(ONESHOT_START_WINDOW_MS)]);
    return { pid: child.pid, ok: !child.exitInfo?.spawnError };
  }

  private async finish(
    child: SupervisedChild,
    exit: ChildExit,
    stopped: 'timeout' | 'cancel' | undefined,
    req: RunRequest,
    vars: Record<string, string>,
  ): Promise<DoneMessage> {
    const p = this.profile;
    const base = { profile: p.name, pid: child.pid, stderrTail: child.stderrTail() };
    if (stopped === 'cancel')
      throw engineFailure('JOB_CANCELED', { ...base, what: `was stopped: job ${req.id} canceled`, retryable: false });
    if (exit.memoryLimit) {
      this.ctx.recycled(p.name, child.pid, 'memory-limit', { peakBytes: exit.peakBytes, limitBytes: exit.memoryLimit.limitBytes });
      throw memoryLimitError(p.name, child.pid, exit.memoryLimit, child.stderrTail());
    }
    if (stopped === 'timeout') {
      this.ctx.recycled(p.name, child.pid, 'timeout', { jobTimeoutMs: p.jobTimeoutMs });
      throw engineFailure('ENGINE_TIMEOUT', { ...base, what: `ran past its job timeout of ${p.jobTimeoutMs} ms on job ${req.id}` });
    }
    if (exit.spawnError) {
      this.noteStartFailure();
      const err = engineFailure('ENGINE_START_FAILED', { ...base, what: exit.words });
      this.lastFailure = err;
      throw err;
    }
    this.failures = 0;
    if (exit.signal)
      throw engineFailure('ENGINE_CRASHED', { ...base, what: `${exit.words} on job ${req.id}`, details: { signal: exit.signal } });
    if (exit.code !== 0)
      throw engineFailure('ENGINE_FAILED', { ...base, what: `${exit.words} on job ${req.id}`, details: { exitCode: exit.code } });
    const found = await findOutput(substitute(p.outputPattern ?? '{output}', vars));
    if (!found)
      throw engineFailure('OUTPUT_MISSING', {
        ...base,
        what: `exited 0 but wrote nothing at ${p.outputPattern ?? '{output}'} for job ${req.id}`,
      });
    return this.describeOutput(found, req, child);
  }

  /** Move the output to req.output in the requested format and read its dimensions. */
  private async describeOutput(found: string, req: RunRequest, child: SupervisedChild): Promise<DoneMessage> {
    const want: OutputFormat = req.options.format;
    // Loaded on first use: libvips is ~10 MB of a worker's idle RSS, and only one-shot engines need it here.
    const { default: sharp } = await import('sharp');
    let meta: sharp.Metadata;
    try {
      meta = await sharp(found).metadata();
    } catch (e) {
      throw engineFailure('OUTPUT_MISSING', {
        profile: this.name,
        pid: child.pid,
        what: `wrote ${found}, which is not a readable image (${(e as Error).message})`,
      });
    }
    if (meta.format !== want) {
      await sharp(found)
        .toFormat(want, want === 'png' ? {} : { quality: req.options.quality })
        .toFile(`${req.output}.tmp`);
      await rename(`${req.output}.tmp`, req.output);
      if (found !== req.output) await unlink(found).catch(() => undefined);
    } else if (found !== req.output) {
      await rename(found, req.output).catch(async () => copyFile(found, req.output));
    }
    const info = await sharp(req.output).metadata();
    const bytes = (await stat(req.output)).size;
    const applied: Record<string, unknown> = {};
    const command = this.profile.command.join('\u0000');
    for (const k of OPTION_PLACEHOLDERS) if (command.includes(`{${k}}`)) applied[k] = req.options[k];
    applied.format = want;
    return { type: 'done', id: req.id, output: { width: info.width ?? 0, height: info.height ?? 0, format: want, bytes }, applied };
  }

  private noteStartFailure(): void {
    this.failures++;
    if (this.failures >= this.ctx.startFailureLimit) {
      const d = this.backoffMs();
      this.backoffUntil = Date.now() + d;
      setTimeout(() => {
        this.ctx.failingChanged();
        this.ctx.pump();
      }, d).unref();
      this.pending.rejectAll(this.startFailedError());
      this.ctx.failingChanged();
    }
  }

  private startFailedError(): EngineJobError {
    return new EngineJobError(
      'ENGINE_START_FAILED',
      `engine ${this.name} failed to start ${this.failures} times in a row. Last: ${this.lastFailure?.message ?? 'unknown'}`,
      {
        retryable: true,
        details: { profile: this.name, failures: this.failures, backoffUntil: this.backoffUntil },
      },
    );
  }

  offer(): EngineOffer {
    const command = this.profile.command.join('\u0000');
    return {
      name: this.name,
      kind: 'oneshot',
      poolSize: this.profile.poolSize,
      // Output is converted with sharp, so every output format is offered; the scale is whatever the command does.
      capabilities: {
        options: OPTION_PLACEHOLDERS.filter((k) => command.includes(`{${k}}`)),
        scales: [...SCALES],
        formats: [...OUTPUT_FORMATS],
      },
      memoryLimitBytes: this.profile.memoryLimitBytes,
      expectedMemoryBytes: this.profile.expectedMemoryBytes,
    };
  }

  states(now = Date.now()): EngineProcessState[] {
    return [...this.running].map((c) => ({
      profile: this.name,
      pid: c.pid,
      state: 'busy',
      rssBytes: c.rssBytes,
      limitBytes: this.profile.memoryLimitBytes,
      peakBytes: c.peakBytes,
      jobsDone: 0,
      startedAt: c.startedAt,
      uptimeMs: now - c.startedAt,
      enforcement: c.enforcement,
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pending.rejectAll(governorClosed(this.name));
    await Promise.all([...this.running].map((c) => c.terminate('shutdown', this.profile.stopGraceMs)));
  }
}
