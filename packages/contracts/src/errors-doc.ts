import { ERRORS, type ErrorEntry } from './errors.js';

/** The error catalogue as the Markdown table in docs/errors.md (a test keeps the file equal to this). */
export function renderErrorCatalogue(): string {
  const rows = (Object.entries(ERRORS) as Array<[string, ErrorEntry]>).map(
    ([code, e]) =>
      `| \`${code}\` | ${e.kind === 'http' ? e.status : '—'} | ${e.kind}${e.retryable === undefined ? '' : e.retryable ? ', retried' : ', not retried'} | ${e.title} | ${e.hint} |`,
  );
  return [
    '# Error catalogue',
    '',
    'Every error the API returns is `application/problem+json` (RFC 9457) with a stable `code` from this table; the',
    '`detail` says what happened and then what to do (the last column). Job failures (`kind: job`) appear on a failed job',
    "as `error: {code, message}` in `GET /v1/jobs/:id`. A problem's `type` is `/docs/errors#CODE`: the gateway serves this",
    'catalogue there as a page with one anchor per code. This file is generated from `packages/contracts/src/errors.ts`;',
    '`npm test` fails when they differ (regenerate with `npx tsx packages/contracts/src/errors-doc.ts > docs/errors.md`).',
    '',
    '| code | HTTP | kind | title | what to do |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

const escapeHtml = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The catalogue as the HTML page the gateway serves at /docs/errors: each code is an anchor, the target of a problem's `type`. */
export function renderErrorCatalogueHtml(): string {
  const rows = (Object.entries(ERRORS) as Array<[string, ErrorEntry]>).map(
    ([code, e]) =>
      `<tr id="${code}"><td><a href="#${code}"><code>${code}</code></a></td><td>${e.kind === 'http' ? e.status : '—'}</td><td>${e.kind}${e.retryable === undefined ? '' : e.retryable ? ', retried' : ', not retried'}</td><td>${escapeHtml(e.title)}</td><td>${escapeHtml(e.hint)}</td></tr>`,
  );
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
    '<title>Error catalogue · PhotoEnhance Gateway</title>',
    '<style>body{font:14px/1.5 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.4em .6em;text-align:left;vertical-align:top}tr:target{background:#fff3c4}code{white-space:nowrap}</style>',
    '</head><body><h1>Error catalogue</h1>',
    '<p>Every error the API returns is <code>application/problem+json</code> (RFC 9457) with a stable <code>code</code> from this table; its <code>type</code> links here. The <code>detail</code> says what happened and then what to do (the last column). Job failures appear on a failed job as <code>error: {code, message}</code>. The API reference is at <a href="/docs">/docs</a>.</p>',
    '<table><thead><tr><th>code</th><th>HTTP</th><th>kind</th><th>title</th><th>what to do</th></tr></thead><tbody>',
    ...rows,
    '</tbody></table></body></html>',
    '',
  ].join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\u0000')) {
  process.stdout.write(renderErrorCatalogue());
}
