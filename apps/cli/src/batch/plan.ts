import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobView, OutputFormat } from '@photoenhance/contracts';
import { planOutputs, type Photo } from './inputs.js';
import type { Manifest, ManifestEntry } from './manifest.js';

/** One photo on its way through a run: its manifest entry and what this run knows about it. */
export interface Item {
  photo: Photo;
  entry: ManifestEntry;
  /** Planned output path (relative), from the expected format. */
  planned: string;
  notBefore: number;
  /** Transient failures (5xx, download errors) of the current attempt. */
  retries: number;
  /** Fresh submissions after the gateway lost the job. */
  resubmits: number;
  /** 409 answers (same key still being accepted) for the current key. */
  inFlightAnswers: number;
  reattached: boolean;
  view?: JobView;
}

/** What the manifest says this run has to do. */
export interface RunPlan {
  /** Never sent, changed since, or failed before: submit with a new key. */
  fresh: Item[];
  /** Sent by an earlier run with no answer recorded: send again with the same key. */
  resend: Item[];
  /** Submitted by an earlier run: wait for that job (or fetch its result again). */
  reattached: Item[];
  /** Done by an earlier run, the result still in the output folder. */
  alreadyDone: number;
  /** Output path (lower case) -> the photo that owns it, so two photos never write one file. */
  claims: Map<string, string>;
}

/** A manifest entry for a fresh attempt at a photo (not recorded yet). */
export function newEntry(manifest: Manifest, photo: Photo, attempt: number): ManifestEntry {
  return {
    rel: photo.rel,
    size: photo.size,
    mtimeMs: photo.mtimeMs,
    attempt,
    key: manifest.keyFor(photo.rel, photo.size, photo.mtimeMs, attempt),
    state: 'submitting',
    at: new Date().toISOString(),
  };
}

/** Sort every photo of the source by what the manifest of an earlier run says about it. */
export async function planRun(
  manifest: Manifest,
  photos: readonly Photo[],
  outDir: string,
  format: 'auto' | OutputFormat | undefined,
): Promise<RunPlan> {
  const plan: RunPlan = { fresh: [], resend: [], reattached: [], alreadyDone: 0, claims: new Map() };
  const planned = planOutputs(photos, format);
  for (const [rel, out] of planned) plan.claims.set(out.toLowerCase(), rel);
  for (const photo of photos) {
    const prev = manifest.get(photo.rel);
    const sameVersion = prev !== undefined && prev.size === photo.size && prev.mtimeMs === photo.mtimeMs;
    const item = (entry: ManifestEntry): Item => ({
      photo,
      entry,
      planned: planned.get(photo.rel)!,
      notBefore: 0,
      retries: 0,
      resubmits: 0,
      inFlightAnswers: 0,
      reattached: false,
    });
    if (!prev || !sameVersion) {
      plan.fresh.push(item(newEntry(manifest, photo, prev ? prev.attempt + 1 : 0)));
      continue;
    }
    if (prev.state === 'done' && prev.output) {
      if (
        await stat(join(outDir, prev.output)).then(
          (s) => s.isFile(),
          () => false,
        )
      ) {
        plan.alreadyDone++;
        plan.claims.set(prev.output.toLowerCase(), photo.rel);
        continue;
      }
    }
    if ((prev.state === 'queued' || prev.state === 'done') && prev.jobId) {
      const it = item(prev);
      it.reattached = true;
      plan.reattached.push(it);
    } else if (prev.state === 'submitting') {
      // The answer was lost: send again with the same key, so a gateway that saw it returns the same job.
      plan.resend.push(item(prev));
    } else {
      plan.fresh.push(item(newEntry(manifest, photo, prev.attempt + 1)));
    }
  }
  return plan;
}
