import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { ThemeTokenName } from '@bull-board/api/dist/types.js';
import type { FastifyInstance } from 'fastify';

export const BULL_BOARD_PATH = '/admin/queues';

/**
 * The dashboard's palette (apps/dashboard/web/styles.css) as bull-board design tokens. The dashboard has one, dark,
 * scheme, so both of bull-board's schemes get it: the board looks the same whatever its own light/dark setting says.
 * Fonts are the system ones (bull-board's IBM Plex would come from Google, and nothing is fetched from outside).
 */
const PALETTE = {
  bg: '#0b1120',
  panel: '#111a2e',
  panel2: '#16213a',
  line: '#22304d',
  text: '#e2e8f0',
  muted: '#8b9ab4',
  blue: '#60a5fa',
  green: '#34d399',
  amber: '#fbbf24',
  red: '#f87171',
};
export const BULL_BOARD_THEME: Partial<Record<ThemeTokenName, string>> = {
  background: PALETTE.bg,
  foreground: PALETTE.text,
  card: PALETTE.panel,
  'card-foreground': PALETTE.text,
  popover: PALETTE.panel2,
  'popover-foreground': PALETTE.text,
  primary: PALETTE.blue,
  'primary-foreground': PALETTE.bg,
  secondary: PALETTE.panel2,
  'secondary-foreground': PALETTE.text,
  muted: PALETTE.panel2,
  'muted-foreground': PALETTE.muted,
  accent: PALETTE.panel2,
  'accent-foreground': PALETTE.text,
  'state-hover': PALETTE.panel2,
  'state-selected': PALETTE.line,
  'state-selected-hover': PALETTE.line,
  'state-selected-foreground': PALETTE.text,
  destructive: PALETTE.red,
  'destructive-foreground': PALETTE.bg,
  border: PALETTE.line,
  input: PALETTE.line,
  ring: PALETTE.blue,
  sidebar: PALETTE.panel,
  'sidebar-foreground': PALETTE.text,
  'sidebar-primary': PALETTE.blue,
  'sidebar-primary-foreground': PALETTE.bg,
  'sidebar-accent': PALETTE.panel2,
  'sidebar-accent-foreground': PALETTE.text,
  'sidebar-state-hover': PALETTE.panel2,
  'sidebar-state-selected': PALETTE.line,
  'sidebar-state-selected-hover': PALETTE.line,
  'sidebar-state-selected-foreground': PALETTE.text,
  'sidebar-border': PALETTE.line,
  'sidebar-ring': PALETTE.blue,
  'status-failed': PALETTE.red,
  'status-completed': PALETTE.green,
  'status-waiting': PALETTE.amber,
  'status-active': PALETTE.blue,
  'font-sans': "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  'font-mono': 'ui-monospace, SFMono-Regular, Menlo, monospace',
};

/**
 * bull-board at /admin/queues: the generic BullMQ view of every engine queue, read-only unless BULL_BOARD_READONLY=false.
 * Engine queues that appear later (a new worker announces an engine) are added by `sync`.
 */
export async function mountBullBoard(app: FastifyInstance): Promise<{ sync(engines: string[]): void }> {
  const readOnlyMode = app.config.bullBoardReadOnly;
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  const shown = new Set<string>();
  const initial = (await app.engines.list()).map((e) => e.name);
  const adapter = (engine: string): BullMQAdapter =>
    new BullMQAdapter(app.jobs.queue(engine), { readOnlyMode, allowRetries: !readOnlyMode, displayName: engine });
  for (const e of initial) shown.add(e);
  const board = createBullBoard({
    queues: initial.map(adapter),
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'PhotoEnhance queues',
        miscLinks: [{ text: 'Dashboard', url: '/dashboard/' }],
        hideDocsLink: true,
        theme: { light: BULL_BOARD_THEME, dark: BULL_BOARD_THEME },
      },
    },
  });
  // bull-board's routes carry no schemas of ours: keep them out of the OpenAPI document.
  await app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      route.schema = { ...(route.schema ?? {}), hide: true };
    });
    // bull-board's page links Google's web fonts: nothing is fetched from outside (docs/dashboard.md), so the link is
    // taken out of its HTML and the page falls back to the system fonts.
    scope.addHook('onSend', async (_req, reply, payload) => {
      if (typeof payload !== 'string' || !String(reply.getHeader('content-type') ?? '').includes('text/html')) return payload;
      return payload.replace(/<link[^>]+href="https:\/\/fonts\.(googleapis|gstatic)\.com[^>]*>/g, '');
    });
    await scope.register(serverAdapter.registerPlugin(), { prefix: BULL_BOARD_PATH });
  });
  return {
    sync(engines) {
      for (const e of engines) {
        if (shown.has(e)) continue;
        shown.add(e);
        board.addQueue(adapter(e));
      }
    },
  };
}
