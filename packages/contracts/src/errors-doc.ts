import { ERRORS, type ErrorEntry } from './errors.js';

/** The error catalogue as the Markdown table in docs/errors.md (a test keeps the file equal to this). */
export function renderErrorCatalogue(): string {
  const rows = (Object.entries(ERRORS) as Array<[string, ErrorEntry]>).map(
    ([code, e]) => `| \`${code}\` | ${e.kind === 'http' ? e.status : '—'} | ${e.kind}${e.retryable === undefined ? '' : e.retryable ? ', retried' : ', not retried'} | ${e.title} | ${e.hint} |`,
  );
  return [
    '# Error catalogue',
    '',
    'Every error the API returns is `application/problem+json` (RFC 9457) with a stable `code` from this table; the',
    '`detail` says what happened and then what to do (the last column). Job failures (`kind: job`) appear on a failed job',
    'as `error: {code, message}` in `GET /v1/jobs/:id`. This file is generated from `packages/contracts/src/errors.ts`;',
    '`npm test` fails when they differ (regenerate with `npx tsx packages/contracts/src/errors-doc.ts > docs/errors.md`).',
    '',
    '| code | HTTP | kind | title | what to do |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\u0000')) {
  process.stdout.write(renderErrorCatalogue());
}
