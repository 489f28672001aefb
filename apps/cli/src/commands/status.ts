import type { Command } from 'commander';
import type { JobView } from '@photoenhance/contracts';
import { PhotoEnhanceClient } from '@photoenhance/client';
import { EXIT } from '../exit.js';
import { gatewayUrl } from '../paths.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('Show a job: status, progress, options, result or error.')
    .argument('<jobId>', 'the id from the 202 answer (j_…)')
    .option('--json', 'print the raw JobView JSON')
    .option('--url <url>', 'gateway URL (env PHOTOENHANCE_URL, default http://127.0.0.1:8080)')
    .option('--api-key <key>', 'API key (env PHOTOENHANCE_API_KEY)')
    .action(async (id: string, flags: { json?: boolean; url?: string; apiKey?: string }) => {
      const client = new PhotoEnhanceClient({ baseUrl: gatewayUrl(flags.url), apiKey: flags.apiKey ?? process.env.PHOTOENHANCE_API_KEY });
      const view = await client.get(id);
      process.stdout.write(flags.json ? `${JSON.stringify(view, null, 2)}\n` : formatJob(view, client.baseUrl));
      process.exitCode = view.status === 'failed' ? EXIT.FAILED : EXIT.OK;
    });
}

export function formatJob(v: JobView, base: string): string {
  const rows: Array<[string, string]> = [
    ['job', v.id],
    ['status', `${v.status}${v.status === 'active' ? ` ${Math.round(v.progress * 100)}%` : ''}`],
    ['engine', v.engine],
    ['input', `${v.input.name} ${v.input.width}x${v.input.height} ${v.input.format}, ${kib(v.input.bytes)}`],
    ['options', Object.entries(v.options).map(([k, x]) => `${k}=${String(x)}`).join(' ')],
  ];
  if (v.result) rows.push(['result', `${v.result.width}x${v.result.height} ${v.result.format}, ${kib(v.result.bytes)}  ${absolute(v.result.url, base)}`]);
  if (v.error) rows.push(['error', `${v.error.code}: ${v.error.message}`]);
  rows.push(['attempts', String(v.attempts)], ['created', v.createdAt]);
  if (v.startedAt) rows.push(['started', v.startedAt]);
  if (v.finishedAt) rows.push(['finished', v.finishedAt]);
  if (v.timings) rows.push(['timings', `queued ${v.timings.queuedMs} ms${v.timings.runMs !== undefined ? `, ran ${v.timings.runMs} ms` : ''}`]);
  return rows.map(([k, x]) => `${k.padEnd(9)} ${x}\n`).join('');
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.max(1, Math.round(bytes / 1024))} KiB`;
}

function absolute(url: string, base: string): string {
  return /^https?:/.test(url) ? url : base + url;
}
